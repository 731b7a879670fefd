//! A small GGUF model with quantized weights, written by llama.cpp's reference writer (the `gguf`
//! package) in the project's Python environment. Shared by the runtime's GGUF tests and the
//! `mgc-run` tests in `cli/`; both crates sit one folder below the repository root.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Python with `gguf`: `MGC_PYTHON`, else the repository's `.venv`.
pub fn python() -> PathBuf {
    // `MGC_PYTHON` names another Python with `gguf` (this test run where it was not built).
    if let Ok(python) = std::env::var("MGC_PYTHON") {
        return PathBuf::from(python);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    assert!(venv.exists(), "{} is missing: run `scripts/setup-python.sh` first", venv.display());
    venv
}

/// A folder with the fixture model and what the reference reader makes of it.
pub fn gguf_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
    let script = Path::new(&root).join("../tests/gguf/dequant_fixture.py");
    let out = Command::new(python()).arg(script).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}
