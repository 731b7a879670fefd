//! `mgc run` and `mgc probe` hand over to `mgc-run`, the binary that links libtorch, so that every
//! other command starts in milliseconds.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

use crate::Status;

/// `mgc-run` beside this executable, or on the `PATH`.
fn runner() -> PathBuf {
    let beside = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("mgc-run")));
    beside.filter(|p| p.exists()).unwrap_or_else(|| PathBuf::from("mgc-run"))
}

pub fn run(command: &str, args: &[OsString], err: &mut dyn Write) -> std::io::Result<Status> {
    let runner = runner();
    match Command::new(&runner).arg(command).args(args).status() {
        Ok(status) => Ok(match status.code() {
            Some(0) => Status::Ok,
            Some(1) => Status::InputProblem,
            _ => Status::ToolFailed,
        }),
        Err(error) => {
            writeln!(
                err,
                "error: cannot start `{}`: {error}\n  help: `mgc {command}` needs the runtime; build it with `cargo build --release -p mgc --features torch` (it sits beside `mgc`)",
                runner.display()
            )?;
            Ok(Status::ToolFailed)
        }
    }
}
