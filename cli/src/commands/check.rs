//! `mgc check`: a workflow file or an allocation string, every problem explained.

use std::io::Write;
use std::path::Path;

use mgc_compiler::workflow::{Origin, Placement, Prefetch, Workflow, Workload, toml_to_workflow};
use mgc_grammar::{Allocation, Amount, parse_allocation};

use super::fail;
use crate::Status;
use crate::args::{CheckArgs, Format};
use crate::render::{self, Source};

pub fn run(args: &CheckArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    match (&args.allocation, &args.workflow) {
        (Some(text), _) => allocation(text, args.format, out, err),
        (None, Some(path)) => workflow(path, args.format, out, err),
        (None, None) => Ok(Status::ToolFailed),
    }
}

fn allocation(text: &str, format: Format, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    match (parse_allocation(text), format) {
        (Ok(allocation), Format::Json) => {
            let notes: Vec<String> = allocation.notes().into_iter().map(|n| n.text).collect();
            out.write_all(render::json_text(&Checked { allocation: &allocation, notes }).as_bytes())?;
        }
        (Ok(allocation), Format::Human) => out.write_all(allocation_table(&allocation).as_bytes())?,
        (Err(errors), format) => {
            render::report(format, Some(Source { name: "allocation", text }), &errors, out, err)?;
            return Ok(Status::InputProblem);
        }
    }
    Ok(Status::Ok)
}

/// An allocation as `--format json` shows it: its meaning, and how it was read.
#[derive(serde::Serialize)]
struct Checked<'a> {
    #[serde(flatten)]
    allocation: &'a Allocation,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    notes: Vec<String>,
}

fn allocation_table(allocation: &Allocation) -> String {
    let mut text = format!("{} mode{}\n", allocation.mode, if allocation.bare { " (a bare fraction)" } else { "" });
    let ratio_sum = allocation.ratio_sum();
    for entry in &allocation.entries {
        let amount = match entry.amount.value {
            Amount::Bytes(bytes) => format!("{bytes} ({} bytes)", bytes.get()),
            Amount::Percent(p) if ratio_sum.is_some() => format!("{p} parts of the model"),
            Amount::Percent(p) => format!("{p}% of the model"),
            Amount::Fraction(f) => format!("{f} of the device's memory"),
            Amount::Rest => "the rest of the model".into(),
        };
        text.push_str(&format!("  {:<12} {amount}\n", entry.target.value.to_string()));
    }
    if let Some(virtual_vram) = &allocation.virtual_vram {
        let amount = virtual_vram.amount.value;
        let donors: Vec<String> = virtual_vram.donors.iter().map(|d| format!("`{}`", d.value)).collect();
        text.push_str(&format!(
            "  {amount} ({} bytes) of the model moved off the compute device onto {}, filled in order\n",
            amount.get(),
            donors.join(", then ")
        ));
    }
    if let Some(compute) = &allocation.compute {
        text.push_str(&format!("  compute on   {}\n", compute.value));
    }
    for note in allocation.notes() {
        text.push_str(&format!("note: {}\n", note.text));
    }
    text
}

fn workflow(path: &Path, format: Format, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let source = match super::read_workflow(path, "check") {
        Ok(source) => source,
        Err(error) => return fail(error, format, out, err),
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    match (toml_to_workflow(&source, dir, &mgc_devices::detect), format) {
        (Ok(workflow), Format::Json) => out.write_all(render::json_text(&workflow).as_bytes())?,
        (Ok(workflow), Format::Human) => out.write_all(workflow_summary(path, &workflow).as_bytes())?,
        (Err(errors), format) => {
            let name = path.display().to_string();
            render::report(format, Some(Source { name: &name, text: &source }), &errors, out, err)?;
            return Ok(Status::InputProblem);
        }
    }
    Ok(Status::Ok)
}

fn workflow_summary(path: &Path, workflow: &Workflow) -> String {
    let mut text = format!("{}: ok\n\ndevices\n", path.display());
    for d in &workflow.devices {
        let reserve = if d.reserve.get() > 0 { format!("reserve {}", d.reserve) } else { String::new() };
        text.push_str(&format!(
            "  {:<10} {:>12}  {:<20} {}\n",
            d.device.to_string(),
            d.memory.to_string(),
            reserve,
            match d.origin {
                Origin::Declared => "declared",
                Origin::Detected => "detected",
            }
        ));
    }
    if !workflow.links.is_empty() {
        text.push_str("\nlinks\n");
        for l in &workflow.links {
            let kind = l.kind.map_or("declared", |k| k.name());
            let ends = format!("{} <-> {}", l.between[0], l.between[1]);
            text.push_str(&format!("  {ends:<20} {kind:<12} {}\n", l.bandwidth));
        }
    }
    text.push_str("\nmodels\n");
    for m in &workflow.models {
        let placement = match m.placement {
            Placement::Auto => "auto",
            Placement::Tail => "tail",
            Placement::Head => "head",
        };
        text.push_str(&format!(
            "  {:<12} compute {:<8} allocation {:<28} placement {placement}\n",
            m.name,
            m.compute.to_string(),
            m.allocation.to_string()
        ));
    }
    let workload = match workflow.workload {
        Workload::Tokens { tokens, batch } => format!("{tokens} tokens, batch {batch}"),
        Workload::Resolution { width, height, frames, batch } => {
            format!("{width}x{height}, {frames} frame{}, batch {batch}", if frames == 1 { "" } else { "s" })
        }
    };
    let prefetch = match workflow.schedule.prefetch {
        Prefetch::Auto => "auto".to_owned(),
        Prefetch::Layers(n) => format!("{n} layers"),
    };
    text.push_str(&format!(
        "\nworkload  {workload}\nschedule  prefetch {prefetch}, batch copies below {}\n",
        workflow.schedule.batch_below
    ));
    text
}
