//! A plan as a picture: one bar per device (resident weights per model, peak, memory), and one
//! step of the slowest diffusion model as a timeline — the compute lane, and a lane per copy stream.

use std::fmt::Write as _;

use mgc_core::{Bytes, Device};
use mgc_plan::{ModelPlan, Plan, Transfer};

use crate::commands::explain::seconds;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 150.0;
const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The picture as it is drawn, top to bottom.
struct Canvas {
    body: String,
    y: f64,
}

/// The width of the bars and of the timeline.
const BAR: f64 = WIDTH - LEFT - 20.0;

fn model_color(m: usize) -> &'static str {
    PALETTE.get(m % PALETTE.len()).copied().unwrap_or("#888")
}

/// The SVG text of a plan.
pub fn draw(plan: &Plan) -> String {
    let mut canvas = Canvas { body: String::new(), y: 20.0 };
    let _ = writeln!(canvas.body, r#"<text x="10" y="{}" class="title">Memory per device</text>"#, canvas.y);
    canvas.y += 15.0;
    for d in plan.devices.iter().filter(|d| d.name != Device::Disk) {
        memory_bar(&mut canvas, plan, d);
    }
    model_legend(&mut canvas, plan);
    // One step of the model the plan's step time is about.
    if let Some((index, model)) = mgc_plan::step_model(&plan.models).and_then(|i| plan.models.get(i).map(|m| (i, m))) {
        step_timeline(&mut canvas, plan, index, model);
    }
    let (body, y) = (canvas.body, canvas.y);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" font-family="sans-serif">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>
<style>.title {{ font-size: 14px; font-weight: bold; }} .label {{ font-size: 12px; }} .small {{ font-size: 11px; fill: #333; }}</style>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}

/// A device's bar: its memory, each model's resident weights, the reserve, and the peak. Each
/// bar is its own device's memory: how full it is reads at a glance.
fn memory_bar(canvas: &mut Canvas, plan: &Plan, d: &mgc_plan::DevicePlan) {
    let (body, y) = (&mut canvas.body, canvas.y);
    let bar = BAR - 220.0;
    let scale_max = d.memory_bytes.max(d.peak_bytes).max(1) as f64;
    let _ = writeln!(body, r#"<text x="10" y="{}" class="label">{}</text>"#, y + 14.0, escape(&d.name.to_string()));
    let full = bar * d.memory_bytes as f64 / scale_max;
    let _ = writeln!(
        body,
        r##"<rect x="{LEFT}" y="{y}" width="{full:.1}" height="20" fill="#eeeeee" stroke="#999"><title>{} memory</title></rect>"##,
        Bytes(d.memory_bytes)
    );
    let mut x = LEFT;
    for (m, model) in plan.models.iter().enumerate() {
        let bytes: u64 = model.layers.iter().filter(|l| l.home == d.name).map(|l| l.bytes).sum();
        if bytes == 0 {
            continue;
        }
        let w = bar * bytes as f64 / scale_max;
        let _ = writeln!(
            body,
            r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="20" fill="{}"><title>{}: {} resident</title></rect>"#,
            model_color(m),
            escape(&model.name),
            Bytes(bytes)
        );
        x += w;
    }
    let peak = LEFT + bar * d.peak_bytes as f64 / scale_max;
    let _ = writeln!(
        body,
        r##"<line x1="{peak:.1}" y1="{}" x2="{peak:.1}" y2="{}" stroke="#d62728" stroke-width="2"><title>peak {}</title></line>"##,
        y - 3.0,
        y + 23.0,
        Bytes(d.peak_bytes)
    );
    let reserve = LEFT + full - bar * d.reserve_bytes as f64 / scale_max;
    if d.reserve_bytes > 0 {
        let _ = writeln!(
            body,
            r##"<rect x="{reserve:.1}" y="{y}" width="{:.1}" height="20" fill="url(#hatch)"><title>reserve {}</title></rect>"##,
            LEFT + full - reserve,
            Bytes(d.reserve_bytes)
        );
    }
    let _ = writeln!(
        body,
        r#"<text x="{:.1}" y="{}" class="small">peak {} of {}</text>"#,
        LEFT + full + 6.0,
        y + 14.0,
        Bytes(d.peak_bytes),
        Bytes(d.memory_bytes)
    );
    canvas.y += 30.0;
}

/// The models' colours.
fn model_legend(canvas: &mut Canvas, plan: &Plan) {
    let mut x = LEFT;
    for (m, model) in plan.models.iter().enumerate() {
        let _ = writeln!(
            canvas.body,
            r#"<rect x="{x:.1}" y="{}" width="12" height="12" fill="{}"/><text x="{:.1}" y="{}" class="small">{}</text>"#,
            canvas.y,
            model_color(m),
            x + 16.0,
            canvas.y + 10.0,
            escape(&model.name)
        );
        x += 30.0 + 8.0 * model.name.len() as f64;
    }
    canvas.y += 40.0;
}

/// A model's step as lanes: compute, then one per copy stream, on one time axis.
fn step_timeline(canvas: &mut Canvas, plan: &Plan, index: usize, model: &ModelPlan) {
    let p = &model.predicted;
    let copies: Vec<&Transfer> = plan.transfers.iter().filter(|t| t.model == index).collect();
    let t_min = copies.iter().map(|t| t.start_seconds).fold(0.0_f64, f64::min);
    let t_max = p.step_seconds.max(copies.iter().map(|t| t.end_seconds).fold(0.0, f64::max)).max(1e-9);
    let axis = Axis { t_min, span: t_max - t_min };
    let _ = writeln!(
        canvas.body,
        r#"<text x="10" y="{}" class="title">One step of `{}` on {}: {} predicted, lower bound {}</text>"#,
        canvas.y,
        escape(&model.name),
        escape(&model.compute.to_string()),
        seconds(p.step_seconds),
        seconds(p.lower_bound_seconds)
    );
    canvas.y += 15.0;
    compute_lane(canvas, model, &axis);
    // Lanes in the order of the devices' names.
    let mut streams: Vec<Device> = copies.iter().map(|t| t.from).collect();
    streams.sort_by_key(ToString::to_string);
    streams.dedup();
    for stream in streams {
        copy_lane(canvas, model, &copies, stream, &axis);
    }
    step_marks(canvas, p.step_seconds, &axis);
    timeline_legend(canvas);
}

/// Seconds to x.
struct Axis {
    t_min: f64,
    span: f64,
}

impl Axis {
    fn x(&self, t: f64) -> f64 {
        LEFT + BAR * (t - self.t_min) / self.span
    }
}

fn compute_lane(canvas: &mut Canvas, model: &ModelPlan, axis: &Axis) {
    let y = canvas.y;
    let _ = writeln!(canvas.body, r#"<text x="10" y="{}" class="label">compute</text>"#, y + 14.0);
    for layer in &model.layers {
        let (x0, x1) = (axis.x(layer.start_seconds), axis.x(layer.end_seconds));
        let color = if layer.streamed { "#f28e2b" } else { "#4e79a7" };
        let _ = writeln!(
            canvas.body,
            r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="20" fill="{color}" stroke="white" stroke-width="0.3"><title>{} ({}, {})</title></rect>"#,
            (x1 - x0).max(0.2),
            escape(&layer.name),
            if layer.streamed { "streamed" } else { "resident" },
            seconds(layer.compute_seconds)
        );
    }
    canvas.y += 28.0;
}

fn copy_lane(canvas: &mut Canvas, model: &ModelPlan, copies: &[&Transfer], stream: Device, axis: &Axis) {
    let y = canvas.y;
    let _ = writeln!(
        canvas.body,
        r#"<text x="10" y="{}" class="label">copy {} → {}</text>"#,
        y + 14.0,
        escape(&stream.to_string()),
        escape(&model.compute.to_string())
    );
    for t in copies.iter().filter(|t| t.from == stream) {
        let (x0, x1) = (axis.x(t.start_seconds), axis.x(t.end_seconds));
        let color = if t.batched { "#59a14f" } else { "#e15759" };
        let names = match (model.layers.get(t.first_layer), model.layers.get(t.last_layer)) {
            (Some(a), Some(b)) if t.first_layer != t.last_layer => format!("{} .. {}", a.name, b.name),
            (Some(a), _) => a.name.clone(),
            _ => String::new(),
        };
        let _ = writeln!(
            canvas.body,
            r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="20" fill="{color}" stroke="white" stroke-width="0.3"><title>{} ({}){}</title></rect>"#,
            (x1 - x0).max(0.2),
            escape(&names),
            Bytes(t.bytes),
            if t.from_previous_step { ", issued during the previous step" } else { "" }
        );
    }
    canvas.y += 28.0;
}

/// The step's start and end, across the lanes above.
fn step_marks(canvas: &mut Canvas, step_seconds: f64, axis: &Axis) {
    let y = canvas.y;
    for (t, label) in [(0.0, "step start".to_owned()), (step_seconds, seconds(step_seconds))] {
        let x = axis.x(t);
        let _ = writeln!(
            canvas.body,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{y}" stroke="#333" stroke-dasharray="4 3"/><text x="{x:.1}" y="{}" class="small" text-anchor="middle">{label}</text>"##,
            y - 28.0 * 2.0 - 10.0,
            y + 12.0
        );
    }
    canvas.y += 24.0;
}

fn timeline_legend(canvas: &mut Canvas) {
    let legend = [
        ("#4e79a7", "resident layer"),
        ("#f28e2b", "streamed layer"),
        ("#e15759", "copy"),
        ("#59a14f", "batched copy"),
    ];
    let mut x = LEFT;
    for (color, what) in legend {
        let _ = writeln!(
            canvas.body,
            r#"<rect x="{x:.1}" y="{}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{}" class="small">{what}</text>"#,
            canvas.y,
            x + 16.0,
            canvas.y + 10.0
        );
        x += 140.0;
    }
    canvas.y += 30.0;
}

/// A sweep as a curve: the predicted step (solid) and its lower bound (dashed) against the
/// model's budget on its compute device, the knee marked, budgets that do not fit left out.
pub fn draw_sweep(sweep: &mgc_compiler::compile::sweep::Sweep) -> String {
    const HEIGHT: f64 = 420.0;
    const TOP: f64 = 50.0;
    const BOTTOM: f64 = 360.0;
    let fits: Vec<(f64, f64, f64)> = sweep
        .points
        .iter()
        .filter_map(|p| Some((p.budget_bytes as f64, p.step_seconds?, p.lower_bound_seconds?)))
        .collect();
    let x_max = sweep.points.iter().map(|p| p.budget_bytes).max().unwrap_or(0).max(1) as f64;
    let y_max = fits.iter().map(|&(_, step, _)| step).fold(0.0, f64::max).max(1e-9) * 1.1;
    let x = |bytes: f64| LEFT + BAR * bytes / x_max;
    let y = |s: f64| BOTTOM - (BOTTOM - TOP) * s / y_max;
    let mut body = String::new();
    let _ = writeln!(
        body,
        r#"<text x="10" y="24" class="title">`{}` on {}: predicted step against its budget there (the rest on {})</text>"#,
        escape(&sweep.model),
        sweep.compute,
        sweep.rest
    );
    let _ = writeln!(body, r##"<line x1="{LEFT}" y1="{BOTTOM}" x2="{}" y2="{BOTTOM}" stroke="#333"/>"##, LEFT + BAR);
    let _ = writeln!(body, r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}" stroke="#333"/>"##);
    for (fraction, anchor) in [(0.0, "start"), (0.5, "middle"), (1.0, "end")] {
        let _ = writeln!(
            body,
            r#"<text x="{:.1}" y="{}" class="small" text-anchor="{anchor}">{}</text>"#,
            x(x_max * fraction),
            BOTTOM + 16.0,
            Bytes((x_max * fraction) as u64)
        );
        let _ = writeln!(
            body,
            r#"<text x="{}" y="{:.1}" class="small" text-anchor="end">{}</text>"#,
            LEFT - 6.0,
            y(y_max * fraction) + 4.0,
            seconds(y_max * fraction)
        );
    }
    let line = |pick: &dyn Fn(&(f64, f64, f64)) -> f64| {
        fits.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(pick(p)))).collect::<Vec<_>>().join(" ")
    };
    let _ = writeln!(
        body,
        r##"<polyline points="{}" fill="none" stroke="#999" stroke-width="1.5" stroke-dasharray="5 4"/>"##,
        line(&|p| p.2)
    );
    let _ =
        writeln!(body, r##"<polyline points="{}" fill="none" stroke="#4e79a7" stroke-width="2.5"/>"##, line(&|p| p.1));
    for &(bytes, step, _) in &fits {
        let _ = writeln!(
            body,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#4e79a7"><title>{}: {}</title></circle>"##,
            x(bytes),
            y(step),
            Bytes(bytes as u64),
            seconds(step)
        );
    }
    if let (Some(knee), Some(text)) = (sweep.knee_bytes, sweep.knee_text()) {
        let kx = x(knee as f64);
        let _ = writeln!(
            body,
            r##"<line x1="{kx:.1}" y1="{TOP}" x2="{kx:.1}" y2="{BOTTOM}" stroke="#d62728" stroke-dasharray="3 3"/><text x="{kx:.1}" y="{}" class="small" fill="#d62728">{}</text>"##,
            TOP - 6.0,
            escape(&text)
        );
    }
    let _ = writeln!(
        body,
        r##"<text x="{LEFT}" y="{}" class="small">solid: predicted step; dashed: its lower bound (compute, or the busiest copy stream)</text>"##,
        HEIGHT - 20.0
    );
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif">
<style>.title {{ font-size: 14px; font-weight: bold; }} .small {{ font-size: 11px; fill: #333; }}</style>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"#
    )
}
