//! safetensors headers: whatever the bytes, a clear error or an inventory — never a panic, never
//! an allocation beyond the file (libFuzzer's `-rss_limit_mb` watches).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("mgc-fuzz-{}.safetensors", std::process::id()));
    std::fs::write(&path, data).expect("temp file");
    if let Ok(inventory) = mgc_compiler::inventory::file_to_inventory(&path) {
        assert!(inventory.data_bytes() <= inventory.file_size);
        let _ = mgc_compiler::inventory::inventory_to_models(&inventory);
    }
});
