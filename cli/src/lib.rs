//! The `mgc` command line. Argument types live in [`args`], one file per command in `commands/`,
//! and diagnostics are rendered only here, in [`render`].

pub mod args;
mod commands;
pub mod render;
mod svg;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command};

/// How a command ended: fine, the user's input has problems, or the tool itself failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    InputProblem = 1,
    ToolFailed = 2,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        Self::from(status as u8)
    }
}

/// Runs `mgc` with the process's arguments.
pub fn main() -> ExitCode {
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
    let status = run(cli, &mut out, &mut err);
    let _ = out.flush();
    status.into()
}

/// Runs one command, writing results to `out` and diagnostics to `err`.
pub fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Status {
    let result = match cli.command {
        Command::Check(args) => commands::check::run(&args, out, err),
        Command::Inspect(args) => commands::inspect::run(&args, out, err),
        Command::Import(args) => commands::import::run(&args, out, err),
        Command::SynthModel(args) => commands::synth::run(&args, out, err),
        Command::Compile(args) => commands::compile::run(&args, out, err),
        Command::Explain(args) => commands::explain::run(&args, out, err),
        Command::Run { args } => commands::handover::run("run", &args, err),
        Command::Probe { args } => commands::handover::run("probe", &args, err),
        Command::Schema => out.write_all(render::json_text(&mgc_plan::schema()).as_bytes()).map(|()| Status::Ok),
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            Status::ToolFailed
        }
    }
}
