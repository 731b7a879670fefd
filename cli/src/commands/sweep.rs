//! `mgc sweep`: a model's predicted step and peak as its compute device holds more of it — the
//! curve that says how much VRAM buys how much speed, and where it stops paying.

use std::io::Write;
use std::path::Path;

use mgc_compiler::compile::CompileError;
use mgc_compiler::compile::sweep::{Range, Sweep, workflow_to_sweep};
use mgc_compiler::workflow::toml_to_workflow;
use mgc_core::{Bytes, Output};

use super::fail;
use crate::Status;
use crate::args::{Format, SweepArgs};
use crate::commands::explain::seconds;
use crate::error::CliError;
use crate::render::{self, Source};
use crate::svg;

pub fn run(args: &SweepArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let source = match super::read_workflow(&args.workflow, "sweep") {
        Ok(source) => source,
        Err(error) => return fail(error, args.format, out, err),
    };
    let dir = args.workflow.parent().unwrap_or(Path::new("."));
    let result = toml_to_workflow(&source, dir, &mgc_devices::detect)
        .map_err(|errors| errors.into_iter().map(CompileError::Spec).collect::<Vec<_>>())
        .and_then(|workflow| {
            let range =
                Range { from: args.from.map_or(0, Bytes::get), to: args.to.map(Bytes::get), points: args.points };
            workflow_to_sweep(&workflow, &args.model, range)
        });
    let sweep = match result {
        Ok(Some(sweep)) => sweep,
        Ok(None) => {
            let error = CliError::NoSuchModel { model: args.model.clone(), path: args.workflow.display().to_string() };
            return fail(error, args.format, out, err);
        }
        Err(errors) => {
            let name = args.workflow.display().to_string();
            render::report(args.format, Some(Source { name: &name, text: &source }), &errors, out, err)?;
            return Ok(Status::InputProblem);
        }
    };
    match args.format {
        Format::Json => out.write_all(render::json_text(&sweep).as_bytes())?,
        Format::Human => out.write_all(table(&sweep).as_bytes())?,
    }
    if let Some(path) = &args.svg {
        let drawing = svg::draw_sweep(&sweep);
        let written =
            Output::for_path(path).and_then(|picture| picture.write(out, |w| w.write_all(drawing.as_bytes())));
        if let Err(error) = written {
            let error = CliError::WritePicture { path: path.display().to_string(), message: error.to_string() };
            return fail(error, args.format, out, err);
        }
    }
    Ok(Status::Ok)
}

/// The sweep as a table, with the knee in words.
pub fn table(sweep: &Sweep) -> String {
    let mut t = format!(
        "sweep of `{}` ({}) on {}, the rest on {}\n\n{:>11} {:>11} {:>11} {:>12} {:>7} {:>11}\n",
        sweep.model,
        Bytes(sweep.model_bytes),
        sweep.compute,
        sweep.rest,
        "budget",
        "resident",
        "step",
        "lower bound",
        "hidden",
        "peak"
    );
    for p in &sweep.points {
        let line = match (p.step_seconds, p.lower_bound_seconds, p.hidden_copy_fraction, p.peak_bytes) {
            (Some(step), Some(bound), Some(hidden), Some(peak)) => format!(
                "{:>11} {:>11} {:>11} {:>12} {:>6.0}% {:>11}",
                Bytes(p.budget_bytes).to_string(),
                Bytes(p.resident_bytes).to_string(),
                seconds(step),
                seconds(bound),
                hidden * 100.0,
                Bytes(peak).to_string()
            ),
            _ => format!(
                "{:>11}  does not fit: {}",
                Bytes(p.budget_bytes).to_string(),
                p.problem.as_deref().unwrap_or("the plan cannot work")
            ),
        };
        t.push_str(line.trim_end());
        t.push('\n');
    }
    if let Some(knee) = sweep.knee_text() {
        t.push_str(&format!("\n{knee}\n"));
    }
    t
}
