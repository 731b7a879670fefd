//! `mgc explain`: a plan as a person reads it — memory per device, placement as layer ranges,
//! the predicted step against its lower bound — and, with `--svg`, as a picture. Given a
//! workflow, it compiles it on the spot; with `--stage`, it prints that stage of the compiler.

use std::io::Write;
use std::path::Path;

use mgc_compiler::compile::{CompileError, Stage, toml_to_plan, workflow_to_stage};
use mgc_compiler::workflow::toml_to_workflow;
use mgc_core::{Bytes, Device, Hardware, Output};
use mgc_plan::{ModelPlan, Plan};

use super::fail;
use crate::Status;
use crate::args::{ExplainArgs, Format};
use crate::error::CliError;
use crate::render::{self, Source};
use crate::svg;

pub fn run(args: &ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let text = match super::read_plan_text(&args.plan) {
        Ok(text) => text,
        Err(error) => return fail(error, Format::Human, out, err),
    };
    let dir = args.plan.parent().unwrap_or(Path::new("."));
    if let Some(stage) = args.stage {
        return match stage_text(&args.plan, &text, dir, stage.into(), &mgc_devices::detect) {
            Ok(form) => out.write_all(form.as_bytes()).map(|()| Status::Ok),
            Err(unexplained) => report(unexplained, &args.plan, &text, out, err),
        };
    }
    let plan = match text_to_plan(&args.plan, &text, dir, &mgc_devices::detect) {
        Ok(plan) => plan,
        Err(unexplained) => return report(unexplained, &args.plan, &text, out, err),
    };
    let picture = match args.svg.as_deref().map(Output::for_path).transpose() {
        Ok(picture) => picture,
        Err(error) => {
            let path = args.svg.as_deref().unwrap_or(Path::new("-")).display().to_string();
            return fail(CliError::WritePicture { path, message: error.to_string() }, Format::Human, out, err);
        }
    };
    // With `--svg -` the picture is what stdout holds; the text would spoil it.
    if picture != Some(Output::Stdout) {
        out.write_all(self::text(&plan).as_bytes())?;
    }
    if let (Some(path), Some(picture)) = (&args.svg, picture) {
        let drawing = svg::draw(&plan);
        if let Err(error) = picture.write(out, |w| w.write_all(drawing.as_bytes())) {
            let error = CliError::WritePicture { path: path.display().to_string(), message: error.to_string() };
            return fail(error, Format::Human, out, err);
        }
        if picture != Output::Stdout {
            writeln!(out, "\ndrew {}", path.display())?;
        }
    }
    Ok(Status::Ok)
}

/// Why `mgc explain` has nothing to show: the file is of the wrong kind, or its workflow has
/// errors.
#[derive(Debug)]
pub(crate) enum Unexplained {
    Cli(CliError),
    Compile(Vec<CompileError>),
}

/// Prints why there is nothing to show, and returns the status.
fn report(
    unexplained: Unexplained,
    path: &Path,
    source: &str,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Status> {
    match unexplained {
        Unexplained::Cli(error) => fail(error, Format::Human, out, err),
        Unexplained::Compile(errors) => {
            let name = path.display().to_string();
            render::report(Format::Human, Some(Source { name: &name, text: source }), &errors, out, err)?;
            Ok(Status::InputProblem)
        }
    }
}

/// The plan that `mgc explain` shows for the text read from `path`: the plan it holds, or the
/// workflow it holds compiled on the spot (its model paths relative to `dir`).
pub(crate) fn text_to_plan(
    path: &Path,
    text: &str,
    dir: &Path,
    detect: &dyn Fn() -> Hardware,
) -> Result<Plan, Unexplained> {
    if super::is_json(text) {
        super::plan_from_text(path, text).map_err(Unexplained::Cli)
    } else {
        toml_to_plan(text, dir, detect).map_err(Unexplained::Compile)
    }
}

/// One stage's form of the workflow in `text` (read from `path`), as `mgc explain --stage`
/// prints it: JSON.
pub(crate) fn stage_text(
    path: &Path,
    text: &str,
    dir: &Path,
    stage: Stage,
    detect: &dyn Fn() -> Hardware,
) -> Result<String, Unexplained> {
    if super::is_json(text) {
        return Err(Unexplained::Cli(CliError::StageOfPlan { path: path.display().to_string() }));
    }
    toml_to_workflow(text, dir, detect)
        .map_err(|errors| errors.into_iter().map(CompileError::Spec).collect::<Vec<_>>())
        .and_then(|workflow| workflow_to_stage(&workflow, stage))
        .map(|value| render::json_lines(&value))
        .map_err(Unexplained::Compile)
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "-".into() } else { format!("{:.0}%", part as f64 * 100.0 / whole as f64) }
}

pub fn seconds(s: f64) -> String {
    if s <= 0.0 {
        "0 s".to_owned()
    } else if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.1} µs", s * 1e6)
    }
}

/// The whole run, and how far its figures may be off.
fn run_text(run: &mgc_plan::RunPrediction) -> String {
    let passes = if run.passes > 1 { format!("{} passes a step", run.passes) } else { "1 pass a step".into() };
    let mut t = format!(
        "predicted run   {}: encode {}, {} steps {} (cfg {}: {passes}), decode {}\n",
        seconds(run.total_seconds),
        seconds(run.encode_seconds),
        run.steps,
        seconds(run.sampling_seconds),
        run.cfg,
        seconds(run.decode_seconds),
    );
    match run.uncertainty {
        Some(u) => {
            t.push_str(&format!("                {} (±{:.0}%); run `mgc probe` for ±10%\n", run.basis, u * 100.0))
        }
        None => t.push_str(&format!("                {}\n", run.basis)),
    }
    t.push('\n');
    t
}

/// The explanation of a plan, as text.
pub fn text(plan: &Plan) -> String {
    let mut t = String::new();
    let p = &plan.predicted;
    t.push_str(&format!(
        "predicted step  {} (lower bound {}: compute {}, copies {}; {:.0}% of copy time hidden behind compute)\n",
        seconds(p.step_seconds),
        seconds(p.lower_bound_seconds),
        seconds(p.compute_seconds),
        seconds(p.copy_seconds),
        p.hidden_copy_fraction * 100.0
    ));
    match &plan.run {
        Some(run) => t.push_str(&run_text(run)),
        None => t.push('\n'),
    }
    t.push_str(&format!(
        "{:<8} {:>11} {:>11} {:>11} {:>11} {:>6}  {}\n",
        "device", "memory", "reserve", "resident", "peak", "peak%", "budgets (model: given / used)"
    ));
    for d in &plan.devices {
        let budgets: Vec<String> = plan
            .models
            .iter()
            .filter_map(|m| m.budgets.iter().find(|b| b.device == d.name).map(|b| (m, b)))
            .map(|(m, b)| format!("{}: {} / {}", m.name, Bytes(b.bytes), Bytes(b.used_bytes)))
            .collect();
        let memory = if d.name == Device::Disk { "file".to_owned() } else { Bytes(d.memory_bytes).to_string() };
        t.push_str(&format!(
            "{:<8} {:>11} {:>11} {:>11} {:>11} {:>6}  {}\n",
            d.name,
            memory,
            Bytes(d.reserve_bytes).to_string(),
            Bytes(d.resident_bytes).to_string(),
            Bytes(d.peak_bytes).to_string(),
            percent(d.peak_bytes, d.memory_bytes),
            budgets.join(", ")
        ));
    }
    let runtime: Vec<String> = plan
        .devices
        .iter()
        .filter(|d| d.runtime_bytes > 0)
        .map(|d| {
            let products = match (d.distinct_products, d.product_bytes) {
                (Some(n), Some(each)) if each > 0 => {
                    format!(", with the kernels of {n} distinct products at {} each", Bytes(each))
                }
                _ => String::new(),
            };
            let workspace = match d.workspace_bytes {
                Some(bytes) if bytes > 0 => format!(", and {} for its largest op's temporaries", Bytes(bytes)),
                _ => String::new(),
            };
            format!(
                "{} {} ({}{products}{workspace})",
                d.name,
                Bytes(d.runtime_bytes),
                runtime_source(&d.runtime_source)
            )
        })
        .collect();
    if !runtime.is_empty() {
        t.push_str(&format!("each peak holds the runtime's own memory: {}\n", runtime.join(", ")));
        if plan.models.iter().any(|m| matches!(m.compute, Device::Cuda(_))) {
            t.push_str("  (on cpu with the host memory of the CUDA driver and libtorch's CUDA side)\n");
        }
    }
    if !plan.links.is_empty() {
        t.push_str("\nlinks\n");
        for l in &plan.links {
            t.push_str(&format!(
                "  {:<18} {:>6.1} GB/s  {}\n",
                format!("{} -> {}", l.from, l.to),
                l.bandwidth_bytes_per_second as f64 / 1e9,
                l.source
            ));
        }
    }
    for (m, model) in plan.models.iter().enumerate() {
        t.push('\n');
        t.push_str(&model_text(plan, m, model));
    }
    t
}

fn model_text(plan: &Plan, index: usize, m: &ModelPlan) -> String {
    let mut t = format!(
        "model `{}` ({} {}, {}), computes on {}, allocation `{}`\n  {}\n",
        m.name,
        m.family,
        m.role,
        Bytes(m.bytes),
        m.compute,
        m.allocation,
        m.placement_reason
    );
    if let Some(reason) = &m.budgets_reason {
        t.push_str(&format!("  budgets {reason}\n"));
    }
    t.push_str(&format!("  {:<9} {:<40} {:<8} {:>11}  {}\n", "layers", "", "home", "bytes", ""));
    let mut i = 0;
    while let Some(first) = m.layers.get(i) {
        let mut j = i;
        while m.layers.get(j + 1).is_some_and(|l| l.home == first.home) {
            j += 1;
        }
        let last = m.layers.get(j).unwrap_or(first);
        let bytes: u64 = m.layers.iter().skip(i).take(j - i + 1).map(|l| l.bytes).sum();
        let range = if i == j { format!("{i}") } else { format!("{i}-{j}") };
        let names = if i == j { first.name.clone() } else { format!("{} .. {}", first.name, last.name) };
        let how = if first.streamed { "streamed" } else { "resident" };
        t.push_str(&format!("  {range:<9} {names:<40} {:<8} {:>11}  {how}\n", first.home, Bytes(bytes).to_string()));
        i = j + 1;
    }
    let copies: Vec<&mgc_plan::Transfer> = plan.transfers.iter().filter(|x| x.model == index).collect();
    let streamed: u64 = copies.iter().map(|x| x.bytes).sum();
    let batched = copies.iter().filter(|x| x.batched).count();
    let p = &m.predicted;
    let decode = match m.decode {
        Some(mgc_plan::DecodeMode::Tiled) => "; decodes in tiles (the whole latent does not fit)",
        _ => "",
    };
    t.push_str(&format!(
        "  {} tokens{decode}; {} copies a step ({} batched), {} streamed, prefetch {}\n  step {} (lower bound {}: compute {}, copies {}; {:.0}% hidden)\n",
        m.tokens,
        copies.len(),
        batched,
        Bytes(streamed),
        m.prefetch,
        seconds(p.step_seconds),
        seconds(p.lower_bound_seconds),
        seconds(p.compute_seconds),
        seconds(p.copy_seconds),
        p.hidden_copy_fraction * 100.0
    ));
    t
}

/// Where a device's runtime memory figure comes from, in words.
fn runtime_source(source: &str) -> &str {
    match source {
        "profile" => "measured by `mgc probe`",
        "default" => "a conservative default: `mgc probe` measures it",
        "profile and default" => "measured by `mgc probe`, with a default for the GPU side's host memory",
        other => other,
    }
}
