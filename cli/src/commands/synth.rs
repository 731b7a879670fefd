//! `mgc synth-model`: a header-only safetensors file from a tensor inventory.

use std::io::Write;

use mgc_compiler::inventory::synth::{Fill, InventoryFixture, SynthError, write_model};
use mgc_core::read::{PLAN_LIMIT, read_text};

use super::fail;
use crate::Status;
use crate::args::{Format, SynthArgs};
use crate::error::CliError;

pub fn run(args: &SynthArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let text = match read_text(&args.inventory, PLAN_LIMIT, "tensor inventory") {
        Ok(text) => text,
        Err(error) => return fail(CliError::read(error), Format::Human, out, err),
    };
    let fixture: InventoryFixture = match serde_json::from_str(&text) {
        Ok(fixture) => fixture,
        Err(e) => {
            let error = CliError::BadInventory { path: args.inventory.display().to_string(), message: e.to_string() };
            return fail(error, Format::Human, out, err);
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
        Err(SynthError::Write(e)) => {
            let error = CliError::WriteModel { path: args.output.display().to_string(), message: e.to_string() };
            fail(error, Format::Human, out, err)
        }
        Err(e) => {
            let error = CliError::BadInventory { path: args.inventory.display().to_string(), message: e.to_string() };
            fail(error, Format::Human, out, err)
        }
    }
}
