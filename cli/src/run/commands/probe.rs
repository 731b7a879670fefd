//! `mgc-run probe`: measures this machine and writes the hardware profile the compiler reads.

use std::io::Write;
use std::path::PathBuf;

use mgc_cli::Status;
use mgc_core::Output;
use mgc_runtime::exec::probe;

use crate::args::{Format, ProbeArgs};

pub fn run(args: &ProbeArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let output = match args.output.as_deref().map(Output::for_path).transpose() {
        Ok(output) => output,
        Err(e) => {
            writeln!(err, "error: cannot write the profile: {e}")?;
            return Ok(Status::ToolFailed);
        }
    };
    // The disk is measured where the profile goes, when it goes to a folder.
    let scratch = output.as_ref().and_then(Output::folder).map_or_else(std::env::temp_dir, PathBuf::from);
    let measured = match probe::probe(&scratch) {
        Ok(measured) => measured,
        Err(error) => {
            writeln!(err, "error: {error}")?;
            return Ok(if error.exit_code() == 1 { Status::InputProblem } else { Status::ToolFailed });
        }
    };
    // With `-o -` the profile is what stdout holds (its comments list the figures).
    let on_stdout = output == Some(Output::Stdout);
    match args.format {
        _ if on_stdout => {}
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&measured).unwrap_or_default())?,
        Format::Human => write!(out, "{}", measured.human())?,
    }
    if let (Some(path), Some(output)) = (&args.output, output) {
        let written = measured
            .profile_toml()
            .map_err(|e| e.to_string())
            .and_then(|text| output.write(out, |w| w.write_all(text.as_bytes())).map_err(|e| e.to_string()));
        if let Err(e) = written {
            writeln!(err, "error: cannot write the profile: {e}")?;
            return Ok(Status::ToolFailed);
        }
        if args.format == Format::Human && !on_stdout {
            writeln!(out, "wrote {}", path.display())?;
        }
    }
    Ok(Status::Ok)
}
