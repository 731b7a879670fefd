//! A plan as a picture: one bar per device (resident weights per model, peak, memory), and one
//! step of the slowest diffusion model as a timeline — the compute lane, and a lane per copy stream.

use std::fmt::Write as _;

use mgc_core::{Bytes, Device};
use mgc_plan::Plan;

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 150.0;
const PALETTE: [&str; 6] = ["#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948"];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The SVG text of a plan.
pub fn draw(plan: &Plan) -> String {
    let mut body = String::new();
    let mut y = 20.0;
    let _ = writeln!(body, r#"<text x="10" y="{y}" class="title">Memory per device</text>"#);
    y += 15.0;
    let devices: Vec<&mgc_plan::DevicePlan> = plan.devices.iter().filter(|d| d.name != Device::Disk).collect();
    let bar = WIDTH - LEFT - 20.0;
    let memory_bar = bar - 220.0;
    for d in &devices {
        // Each bar is its own device's memory: how full it is reads at a glance.
        let scale_max = d.memory_bytes.max(d.peak_bytes).max(1) as f64;
        let bar = memory_bar;
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
            let color = PALETTE.get(m % PALETTE.len()).copied().unwrap_or("#888");
            let _ = writeln!(
                body,
                r#"<rect x="{x:.1}" y="{y}" width="{w:.1}" height="20" fill="{color}"><title>{}: {} resident</title></rect>"#,
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
        y += 30.0;
    }
    // Legend of models.
    let mut x = LEFT;
    for (m, model) in plan.models.iter().enumerate() {
        let color = PALETTE.get(m % PALETTE.len()).copied().unwrap_or("#888");
        let _ = writeln!(
            body,
            r#"<rect x="{x:.1}" y="{y}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{}" class="small">{}</text>"#,
            x + 16.0,
            y + 10.0,
            escape(&model.name)
        );
        x += 30.0 + 8.0 * model.name.len() as f64;
    }
    y += 40.0;

    // One step of the model the plan's step time is about.
    let step_model = mgc_plan::step_model(&plan.models).and_then(|i| plan.models.get(i).map(|m| (i, m)));
    if let Some((index, model)) = step_model {
        let p = &model.predicted;
        let copies: Vec<&mgc_plan::Transfer> = plan.transfers.iter().filter(|t| t.model == index).collect();
        let t_min = copies.iter().map(|t| t.start_seconds).fold(0.0_f64, f64::min);
        let t_max = p.step_seconds.max(copies.iter().map(|t| t.end_seconds).fold(0.0, f64::max)).max(1e-9);
        let span = t_max - t_min;
        let sx = |t: f64| LEFT + bar * (t - t_min) / span;
        let _ = writeln!(
            body,
            r#"<text x="10" y="{y}" class="title">One step of `{}` on {}: {} predicted, lower bound {}</text>"#,
            escape(&model.name),
            escape(&model.compute.to_string()),
            crate::commands::explain::seconds(p.step_seconds),
            crate::commands::explain::seconds(p.lower_bound_seconds)
        );
        y += 15.0;
        let _ = writeln!(body, r#"<text x="10" y="{}" class="label">compute</text>"#, y + 14.0);
        for layer in &model.layers {
            let (x0, x1) = (sx(layer.start_seconds), sx(layer.end_seconds));
            let color = if layer.streamed { "#f28e2b" } else { "#4e79a7" };
            let _ = writeln!(
                body,
                r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="20" fill="{color}" stroke="white" stroke-width="0.3"><title>{} ({}, {})</title></rect>"#,
                (x1 - x0).max(0.2),
                escape(&layer.name),
                if layer.streamed { "streamed" } else { "resident" },
                crate::commands::explain::seconds(layer.compute_seconds)
            );
        }
        y += 28.0;
        // In the order of their names, as the picture has always drawn them.
        let mut streams: Vec<String> = copies.iter().map(|t| t.from.to_string()).collect();
        streams.dedup();
        streams.sort_unstable();
        streams.dedup();
        for stream in streams {
            let _ = writeln!(
                body,
                r#"<text x="10" y="{}" class="label">copy {} → {}</text>"#,
                y + 14.0,
                escape(&stream),
                escape(&model.compute.to_string())
            );
            for t in copies.iter().filter(|t| t.from.to_string() == stream) {
                let (x0, x1) = (sx(t.start_seconds), sx(t.end_seconds));
                let color = if t.batched { "#59a14f" } else { "#e15759" };
                let names = match (model.layers.get(t.first_layer), model.layers.get(t.last_layer)) {
                    (Some(a), Some(b)) if t.first_layer != t.last_layer => {
                        format!("{} .. {}", a.name, b.name)
                    }
                    (Some(a), _) => a.name.clone(),
                    _ => String::new(),
                };
                let _ = writeln!(
                    body,
                    r#"<rect x="{x0:.2}" y="{y}" width="{:.2}" height="20" fill="{color}" stroke="white" stroke-width="0.3"><title>{} ({}){}</title></rect>"#,
                    (x1 - x0).max(0.2),
                    escape(&names),
                    Bytes(t.bytes),
                    if t.from_previous_step { ", issued during the previous step" } else { "" }
                );
            }
            y += 28.0;
        }
        // Step boundaries and the time axis.
        for (t, label) in
            [(0.0, "step start".to_owned()), (p.step_seconds, crate::commands::explain::seconds(p.step_seconds))]
        {
            let x = sx(t);
            let _ = writeln!(
                body,
                r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{y}" stroke="#333" stroke-dasharray="4 3"/><text x="{x:.1}" y="{}" class="small" text-anchor="middle">{label}</text>"##,
                y - 28.0 * 2.0 - 10.0,
                y + 12.0
            );
        }
        y += 24.0;
        let legend = [
            ("#4e79a7", "resident layer"),
            ("#f28e2b", "streamed layer"),
            ("#e15759", "copy"),
            ("#59a14f", "batched copy"),
        ];
        let mut x = LEFT;
        for (color, what) in legend {
            let _ = writeln!(
                body,
                r#"<rect x="{x:.1}" y="{y}" width="12" height="12" fill="{color}"/><text x="{:.1}" y="{}" class="small">{what}</text>"#,
                x + 16.0,
                y + 10.0
            );
            x += 140.0;
        }
        y += 30.0;
    }
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{y}" viewBox="0 0 {WIDTH} {y}" font-family="sans-serif">
<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#999" stroke-width="2"/></pattern></defs>
<style>.title {{ font-size: 14px; font-weight: bold; }} .label {{ font-size: 12px; }} .small {{ font-size: 11px; fill: #333; }}</style>
<rect width="100%" height="100%" fill="white"/>
{body}</svg>
"##
    )
}
