//! `mgc-run run`: executes a plan and reports measured against predicted.

use std::io::Write;

use mgc_cli::Status;
use mgc_runtime::exec::{self, Copies, Options, RunError};

use crate::args::{CopiesArg, Format, RunArgs};

pub fn run(args: &RunArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let copies = match args.copies {
        CopiesArg::Streams => Copies::Streams,
        CopiesArg::Torch => Copies::Torch,
    };
    let options = Options { steps: args.steps as usize, progress: args.format == Format::Human, copies };
    match exec::run(&args.plan, &options) {
        Ok(report) => {
            match args.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&report).unwrap_or_default())?,
                Format::Human => write!(out, "{}", exec::human(&report))?,
            }
            Ok(Status::Ok)
        }
        Err(error) => {
            refusal(&error, args.format, out, err)?;
            Ok(if error.exit_code() == 1 { Status::InputProblem } else { Status::ToolFailed })
        }
    }
}

/// The error, with its help: as JSON on stdout, or for people on stderr.
fn refusal(error: &RunError, format: Format, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<()> {
    match format {
        Format::Json => {
            let json = serde_json::json!({ "errors": [{ "message": error.to_string(), "help": error.help() }] });
            writeln!(out, "{}", serde_json::to_string_pretty(&json).unwrap_or_default())
        }
        Format::Human => {
            writeln!(err, "error: {error}")?;
            match error.help() {
                Some(help) => writeln!(err, "  help: {help}"),
                None => Ok(()),
            }
        }
    }
}
