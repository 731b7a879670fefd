//! The `mgc` command line. Argument types live in [`args`], one file per command in `commands/`,
//! and diagnostics are rendered only here, in [`render`].

pub mod api;
pub mod args;
mod commands;
pub mod error;
pub mod render;
mod svg;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser as _;

use crate::args::{Cli, Command, Format};
use crate::error::CliError;

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
    ExitCode::from(main_with_args(std::env::args_os().collect()))
}

/// Runs `mgc` with `args` (the program's name first), printing on this process's stdout and
/// stderr, and returns the exit code. The Python package's `mgc` command calls this.
pub fn main_with_args(args: Vec<std::ffi::OsString>) -> u8 {
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(error) if error.use_stderr() && format_of(&args) == Format::Json => {
            // Programs that asked for JSON get JSON, even about the arguments.
            let rendered = error.render().to_string();
            let first: Vec<&str> = rendered.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            let message = first.join(" ").trim_start_matches("error: ").to_owned();
            let _ = render::report(
                Format::Json,
                None,
                &[CliError::Usage { message }],
                &mut std::io::stdout(),
                &mut std::io::stderr(),
            );
            return Status::ToolFailed as u8;
        }
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { Status::ToolFailed as u8 } else { Status::Ok as u8 };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let mut out = stdout.lock();
    let mut err = stderr.lock();
    let status = run(cli, &mut out, &mut err);
    let _ = out.flush();
    let _ = err.flush();
    status as u8
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
        Command::Sweep(args) => commands::sweep::run(&args, out, err),
        Command::Run { args } => commands::handover::run("run", &args, out, err),
        Command::Probe { args } => commands::handover::run("probe", &args, out, err),
        Command::Schema => out.write_all(api::schema().as_bytes()).map(|()| Status::Ok),
    };
    match result {
        Ok(status) => status,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            Status::ToolFailed
        }
    }
}

/// `--format json` (or `--format=json`) among raw arguments: how a failure before or outside the
/// parsed arguments is reported.
pub fn format_of(args: &[std::ffi::OsString]) -> Format {
    let json = args
        .iter()
        .zip(args.iter().skip(1).map(Some).chain([None]))
        .any(|(arg, next)| arg == "--format=json" || (arg == "--format" && next.is_some_and(|n| n == "json")));
    if json { Format::Json } else { Format::Human }
}
