//! `mgc-run probe`: measures this machine and writes the hardware profile the compiler reads.

use std::io::Write;
use std::path::PathBuf;

use mgc_cli::Status;
use mgc_runtime::exec::probe;

use crate::args::{Format, ProbeArgs};

pub fn run(args: &ProbeArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    // Scratch files go beside the profile, else to the temporary folder.
    let scratch = args
        .output
        .as_ref()
        .and_then(|o| o.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(std::env::temp_dir, PathBuf::from);
    let measured = match probe::probe(&scratch) {
        Ok(measured) => measured,
        Err(error) => {
            writeln!(err, "error: {error}")?;
            return Ok(if error.exit_code() == 1 { Status::InputProblem } else { Status::ToolFailed });
        }
    };
    match args.format {
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&measured).unwrap_or_default())?,
        Format::Human => write!(out, "{}", measured.human())?,
    }
    if let Some(path) = &args.output {
        if let Err(e) = probe::write_atomic(path, &measured.profile_toml()) {
            writeln!(err, "error: cannot write `{}`: {e}", path.display())?;
            return Ok(Status::ToolFailed);
        }
        if args.format == Format::Human {
            writeln!(out, "wrote {}", path.display())?;
        }
    }
    Ok(Status::Ok)
}
