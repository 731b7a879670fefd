//! GGUF headers: whatever follows the magic, a clear error or an inventory — never a panic, never
//! an allocation beyond the file.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("mgc-fuzz-{}.gguf", std::process::id()));
    let mut bytes = b"GGUF".to_vec();
    bytes.extend_from_slice(data.get(4..).unwrap_or_default());
    std::fs::write(&path, &bytes).expect("temp file");
    if let Ok(inventory) = mgc_compiler::inventory::file_to_inventory(&path) {
        assert!(inventory.data_bytes() <= inventory.file_size);
        let _ = mgc_compiler::inventory::inventory_to_models(&inventory);
    }
});
