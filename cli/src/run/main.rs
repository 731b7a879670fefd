//! `mgc-run`: executes plans with libtorch, and probes the machine. `mgc run` and `mgc probe`
//! hand over to it, so that the light `mgc` binary never loads libtorch. Argument types live in
//! [`args`], one file per command in `commands/`.

mod args;
mod commands;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser as _;
use mgc_cli::Status;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    mgc_runtime::exec::steady_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { Status::ToolFailed.into() } else { Status::Ok.into() };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let result = match cli.command {
        Command::Run(args) => commands::run::run(&args, &mut out, &mut err),
        Command::Probe(args) => commands::probe::run(&args, &mut out, &mut err),
    };
    let status = result.unwrap_or_else(|error| {
        // A closed pipe (`| head`) is not a failure worth reporting.
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            return Status::Ok;
        }
        let _ = writeln!(err, "error: {error}");
        Status::ToolFailed
    });
    let _ = out.flush();
    status.into()
}
