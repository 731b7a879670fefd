//! GGUF files written by llama.cpp's reference writer (PyPI `gguf`), read by mgc: every tensor's
//! type, shape, offset and bytes equal what that package's own reader reports.
#![expect(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic, reason = "tests")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mgc_compiler::inventory::{Dtype, Family, GGML_TYPES, file_to_inventory, inventory_to_models};
use serde_json::Value;

/// The project's Python (set up by `scripts/setup-python.sh`).
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MGC_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `scripts/setup-python.sh` first", venv.display());
    venv
}

fn generate() -> (tempfile::TempDir, Value) {
    let dir = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/gguf/make_gguf.py");
    let output = Command::new(python()).arg(&script).arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "make_gguf.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let expected = serde_json::from_str(&std::fs::read_to_string(dir.path().join("expected.json")).unwrap()).unwrap();
    (dir, expected)
}

#[test]
fn gguf_headers_match_the_reference_reader() {
    let (dir, expected) = generate();

    // Our block layouts cover every type the reference package knows, with the same sizes.
    for (name, spec) in expected["types"].as_object().unwrap() {
        let id = spec[0].as_u64().unwrap() as u32;
        let ours = GGML_TYPES.iter().find(|t| t.id == id).unwrap_or_else(|| panic!("ggml type {name} ({id}) unknown"));
        assert_eq!(
            (ours.name, ours.block_size, ours.type_size),
            (name.as_str(), spec[1].as_u64().unwrap(), spec[2].as_u64().unwrap())
        );
    }

    let files = expected["files"].as_object().unwrap();
    assert_eq!(files.len(), 3);
    for (file, want) in files {
        let inventory = file_to_inventory(&dir.path().join(file)).unwrap();
        assert_eq!(inventory.version, Some(3));
        assert_eq!(inventory.file_size, want["file_bytes"].as_u64().unwrap());
        let ours: BTreeMap<&str, (&str, u64, Vec<u64>, u64)> = inventory
            .tensors
            .iter()
            .map(|t| (t.name.as_str(), (t.dtype.name(), t.bytes, t.shape.clone(), t.offset)))
            .collect();
        let theirs: BTreeMap<&str, (&str, u64, Vec<u64>, u64)> = want["tensors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let shape = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap()).collect();
                (
                    t["name"].as_str().unwrap(),
                    (t["type"].as_str().unwrap(), t["bytes"].as_u64().unwrap(), shape, t["offset"].as_u64().unwrap()),
                )
            })
            .collect();
        assert_eq!(ours, theirs, "{file}");
        let keys: Vec<&str> = inventory.metadata.iter().map(|(k, _)| k.as_str()).collect();
        let want_keys: Vec<&str> =
            want["metadata_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
        assert_eq!(keys, want_keys, "{file}");
    }

    // The quant types the issue names are all present in the mixed file, and it is seen as Flux.
    let inventory = file_to_inventory(&dir.path().join("flux-mixed.gguf")).unwrap();
    for quant in ["F16", "Q8_0", "Q4_K", "Q6_K", "BF16", "F32"] {
        assert!(inventory.tensors.iter().any(|t| t.dtype.name() == quant), "no {quant} tensor");
    }
    assert!(inventory.tensors.iter().any(|t| matches!(t.dtype, Dtype::Ggml(g) if g.is_quantized())));
    let models = inventory_to_models(&inventory);
    assert_eq!(models.len(), 1);
    assert_eq!(models[0].family, Family::Flux);
    let blocks: Vec<&str> =
        models[0].layers.iter().map(|l| l.name.as_str()).filter(|n| n.starts_with("single_blocks.")).collect();
    let want: Vec<String> = (0..12).map(|i| format!("single_blocks.{i}")).collect();
    assert_eq!(blocks, want);

    // Tokenizer arrays are summarised, not kept.
    let tokens = inventory.metadata.iter().find(|(k, _)| k == "tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.1, "[string; 3000]");
}
