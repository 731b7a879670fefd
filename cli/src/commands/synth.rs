//! `mgc synth-model`: a header-only safetensors file from a tensor inventory.

use std::io::Write;

use mgc_compiler::inventory::synth::{Fill, InventoryFixture, SynthError, write_model};

use crate::Status;
use crate::args::SynthArgs;

pub fn run(args: &SynthArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let text = match fs_err::read_to_string(&args.inventory) {
        Ok(text) => text,
        Err(e) => {
            writeln!(err, "error: {e}")?;
            return Ok(Status::InputProblem);
        }
    };
    let fixture: InventoryFixture = match serde_json::from_str(&text) {
        Ok(fixture) => fixture,
        Err(e) => {
            writeln!(err, "error: `{}` is not a tensor inventory: {e}", args.inventory.display())?;
            return Ok(Status::InputProblem);
        }
    };
    let prefix = args.prefix.clone().or_else(|| fixture.prefix.clone()).unwrap_or_default();
    let fill = if args.random { Fill::Random { seed: args.seed } } else { Fill::Hole };
    match write_model(&fixture, &prefix, &args.output, fill) {
        Ok(size) => {
            let what = if args.random { "random weights" } else { "header only" };
            writeln!(out, "{}: {} tensors, {size} bytes ({what})", args.output.display(), fixture.tensors.len())?;
            Ok(Status::Ok)
        }
        Err(e @ SynthError::Write(_)) => {
            writeln!(err, "error: {e}")?;
            Ok(Status::InputProblem)
        }
        Err(e) => {
            writeln!(err, "error: `{}`: {e}", args.output.display())?;
            Ok(Status::InputProblem)
        }
    }
}
