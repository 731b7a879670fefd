//! Running the `mgc` binary as a user does.
#![expect(clippy::unwrap_used, reason = "test helpers")]

use std::path::Path;
use std::process::Command;

/// Runs `mgc` in `dir` without colour and returns the exit code, stdout and stderr.
pub fn mgc(args: &[&str], dir: &Path) -> (i32, String, String) {
    let output =
        Command::new(env!("CARGO_BIN_EXE_mgc")).args(args).current_dir(dir).env("NO_COLOR", "1").output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (output.status.code().unwrap_or(-1), text(&output.stdout), text(&output.stderr))
}

/// A folder holding `flux.safetensors`: a header-only Flux dev (23,802,816,640 bytes of tensors)
/// made by `mgc synth-model` from its inventory.
#[allow(dead_code, reason = "each test file includes these helpers; not every one makes a Flux")]
pub fn with_flux() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let inventory = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models/flux1-dev.json");
    let (code, _, err) = mgc(&["synth-model", inventory.to_str().unwrap(), "-o", "flux.safetensors"], dir.path());
    assert_eq!(code, 0, "{err}");
    dir
}
