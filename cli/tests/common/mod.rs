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
