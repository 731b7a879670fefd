//! `mgc explain`: a plan as a person reads it — memory per device, placement as layer ranges,
//! the predicted step against its lower bound — and, with `--svg`, as a picture.

use std::io::Write;

use mgc_core::{Bytes, Device};
use mgc_plan::{ModelPlan, Plan};

use crate::Status;
use crate::args::ExplainArgs;
use crate::svg;

pub fn run(args: &ExplainArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let text = match mgc_compiler::limits::read_text(&args.plan, mgc_compiler::limits::PLAN_LIMIT, "plan") {
        Ok(text) => text,
        Err(error) => {
            writeln!(err, "error: {error}")?;
            return Ok(Status::InputProblem);
        }
    };
    let plan = match Plan::from_json(&text) {
        Ok(plan) => plan,
        Err(error) => {
            writeln!(err, "error: `{}`: {error}", args.plan.display())?;
            return Ok(Status::InputProblem);
        }
    };
    out.write_all(self::text(&plan).as_bytes())?;
    if let Some(path) = &args.svg {
        let picture = svg::draw(&plan);
        if let Err(error) = mgc_compiler::atomic::write_with(path, |file| file.write_all(picture.as_bytes())) {
            writeln!(err, "error: cannot write the picture: {error}")?;
            return Ok(Status::ToolFailed);
        }
        writeln!(out, "\ndrew {}", path.display())?;
    }
    Ok(Status::Ok)
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

/// The explanation of a plan, as text.
pub fn text(plan: &Plan) -> String {
    let mut t = String::new();
    let p = &plan.predicted;
    t.push_str(&format!(
        "predicted step  {} (lower bound {}: compute {}, copies {}; {:.0}% of copy time hidden behind compute)\n\n",
        seconds(p.step_seconds),
        seconds(p.lower_bound_seconds),
        seconds(p.compute_seconds),
        seconds(p.copy_seconds),
        p.hidden_copy_fraction * 100.0
    ));
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
    t.push_str(&format!(
        "  {} tokens; {} copies a step ({} batched), {} streamed, prefetch {}\n  step {} (lower bound {}: compute {}, copies {}; {:.0}% hidden)\n",
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
