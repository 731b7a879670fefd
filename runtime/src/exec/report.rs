//! Measured against predicted.

use mgc_plan::{Device, Plan, Role};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::memory::Baseline;
use super::probe::Timing;
use super::step::ModelRun;

#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeviceReport {
    pub name: Device,
    pub peak_bytes_measured: Option<u64>,
    pub peak_bytes_predicted: u64,
    /// The distinct matrix products the run computed here (each leaves its kernels in the
    /// runtime's memory), and as many as the plan counted where it counted them.
    pub distinct_products: u64,
    pub distinct_products_predicted: Option<u64>,
    /// The input of the largest norm the run computed here, in bytes (its temporaries stay in
    /// the runtime's memory), and the plan's where it counted it.
    pub largest_norm_bytes: u64,
    pub largest_norm_bytes_predicted: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LinkReport {
    pub from: Device,
    pub to: Device,
    pub bytes: u64,
    pub seconds: f64,
    pub gbps: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ModelReport {
    pub name: String,
    /// Every step run, the first (the warm-up) included.
    pub steps: Vec<StepReport>,
    /// The first step: caches, libtorch's allocator and thread pool warming up. Not in the
    /// measured step time unless it is the only step.
    pub warmup_seconds: f64,
    /// The mean of the steps after the first, less their fastest and slowest tenth (the first
    /// when it is the only one).
    pub measured_step_seconds: f64,
    pub predicted_step_seconds: f64,
    pub hidden_copy_fraction: f64,
    pub hidden_copy_fraction_predicted: f64,
    pub waited_for_copies_seconds: f64,
    /// SHA-256 over the per-layer checksums of the last step: equal for equal weights and shapes,
    /// wherever the plan put them.
    pub checksum: String,
    /// Each layer's compute, measured (as the step is, over the steps after the first) and
    /// predicted.
    pub layers: Vec<LayerReport>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub name: String,
    pub measured_seconds: f64,
    pub predicted_seconds: f64,
}

/// A compute device's matmul figure measured again right after the steps, against the figure
/// the plan gave it: a machine slower than its plan's figures makes every prediction miss alike.
#[derive(Clone, Debug, Serialize)]
pub struct MachineCheck {
    pub device: Device,
    /// What the product was: its size and dtype.
    pub what: String,
    pub planned_flops_per_second: f64,
    /// Whether the plan's figure is a built-in default (a GPU class's, a generic device's), not
    /// measured or declared.
    pub planned_from_defaults: bool,
    pub measured_flops_per_second: f64,
    /// How well the measured figure is known, as a fraction of it either way.
    pub within: f64,
}

impl MachineCheck {
    /// Measured over planned; 0 where the plan gave the device no figure.
    pub fn ratio(&self) -> f64 {
        if self.planned_flops_per_second > 0.0 {
            self.measured_flops_per_second / self.planned_flops_per_second
        } else {
            0.0
        }
    }

    /// Whether the device computes as the plan's figure says, within [`MACHINE_TOLERANCE`].
    pub fn as_planned(&self) -> bool {
        (self.ratio() - 1.0).abs() <= MACHINE_TOLERANCE
    }

    /// What a person should know when the device does not compute as planned.
    pub fn note(&self) -> Option<String> {
        if self.as_planned() {
            return None;
        }
        let ratio = self.ratio();
        let how = if ratio < 1.0 { "slower" } else { "faster" };
        let what = format!(
            "{} computed {} at {ratio:.2}× the plan's figure right after the steps ({} against {})",
            self.device,
            self.what,
            flops(self.measured_flops_per_second),
            flops(self.planned_flops_per_second),
        );
        Some(if self.planned_from_defaults {
            format!(
                "{what}: the plan's figures for it are built-in defaults, not this machine's, and its predictions \
                 miss by about as much: `mgc probe` measures this machine, and a plan compiled with its profile \
                 (`profile = \"FILE\"`) predicts it"
            )
        } else {
            format!(
                "{what}: this machine is {how} now than the one the plan's figures describe, and its predictions \
                 miss by as much (something else using it, or figures not measured here: `mgc probe` measures them)"
            )
        })
    }
}

/// How far a device's matmul figure may be from its plan's before a run says so: the 10% a
/// prediction is held to.
pub const MACHINE_TOLERANCE: f64 = 0.1;

fn flops(f: f64) -> String {
    if f >= 1e12 { format!("{:.1} TFLOP/s", f / 1e12) } else { format!("{:.2} GFLOP/s", f / 1e9) }
}

/// A run's report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub note: &'static str,
    /// Steps asked for (`--steps`).
    pub steps_asked: usize,
    /// What the figures leave out or count differently from what was asked: models that ran
    /// fewer steps than asked and why, a step time that includes the warm-up.
    pub notes: Vec<String>,
    pub measured_step_seconds: f64,
    pub predicted_step_seconds: f64,
    /// The headline model's steps, the first (its warm-up) included.
    pub steps: Vec<StepReport>,
    /// The headline model's first step.
    pub warmup_seconds: f64,
    pub devices: Vec<DeviceReport>,
    pub links: Vec<LinkReport>,
    pub hidden_copy_fraction: f64,
    pub hidden_copy_fraction_predicted: f64,
    pub load_seconds: f64,
    pub total_seconds: f64,
    pub models: Vec<ModelReport>,
    /// Each compute device's matmul figure measured after the steps, against the plan's.
    pub machine: Vec<MachineCheck>,
}

impl Report {
    /// Adds the machine's check of a device, and a note where it is not as planned.
    pub fn add_machine_check(&mut self, check: MachineCheck) {
        if let Some(note) = check.note() {
            self.notes.push(note);
        }
        self.machine.push(check);
    }
}

/// The step time of a run: the mean of the steps after the first (which warms caches up), less
/// their fastest and slowest tenth. The mean is what a long run takes a step, the machine's fast
/// and slow spells included; the tenths leave out a step that something else interrupted. The
/// probe's figures taken in rounds are the same mean ([`Timing::of_rounds`]).
fn measured(steps: &[f64]) -> f64 {
    let warm = if steps.len() > 1 { steps.get(1..).unwrap_or(steps) } else { steps };
    Timing::of_rounds(warm).seconds
}

/// Copy seconds that ran while compute was busy, over all copy seconds.
fn hidden(run: &ModelRun) -> f64 {
    let total: f64 = run.copies.iter().map(|c| c.end - c.start).sum();
    if total <= 0.0 {
        return 1.0;
    }
    let mut covered = 0.0;
    for c in &run.copies {
        for &(s, e) in &run.compute {
            if e > c.start && s < c.end {
                covered += e.min(c.end) - s.max(c.start);
            }
        }
    }
    (covered / total).clamp(0.0, 1.0)
}

/// Why a model ran fewer steps than `asked`, or why its step time includes the warm-up.
fn step_notes(plan: &Plan, runs: &[ModelRun], asked: usize) -> Vec<String> {
    let mut notes = Vec::new();
    for (m, r) in plan.models.iter().zip(runs) {
        let ran = r.steps.len();
        if ran < asked {
            let why = match m.role {
                Role::TextEncoder => "a text encoder runs once per prompt",
                Role::Vae => "a VAE runs once per image",
                Role::Diffusion | Role::Unknown => "the run stopped early",
            };
            notes.push(format!("`{}` ran {ran} of the {asked} steps asked: {why}", m.name));
        }
        if ran == 1 && !super::runs_once(m.role) {
            notes.push(format!(
                "`{}` ran one step: its step time includes the first step's warm-up; `--steps 2` or more measures a step apart from it",
                m.name
            ));
        }
    }
    notes
}

pub fn report(
    plan: &Plan,
    runs: &[ModelRun],
    asked: usize,
    baseline: &Baseline,
    load_seconds: f64,
    total_seconds: f64,
) -> Report {
    let models: Vec<ModelReport> = plan
        .models
        .iter()
        .zip(runs)
        .map(|(m, r)| {
            let mut hasher = Sha256::new();
            for c in &r.checksums {
                hasher.update(c.to_le_bytes());
            }
            ModelReport {
                name: m.name.clone(),
                steps: r.steps.iter().map(|&seconds| StepReport { seconds }).collect(),
                warmup_seconds: r.steps.first().copied().unwrap_or(0.0),
                measured_step_seconds: measured(&r.steps),
                predicted_step_seconds: m.predicted.step_seconds,
                hidden_copy_fraction: hidden(r),
                hidden_copy_fraction_predicted: m.predicted.hidden_copy_fraction,
                waited_for_copies_seconds: r.waited,
                checksum: hasher.finalize().iter().map(|b| format!("{b:02x}")).collect(),
                layers: m
                    .layers
                    .iter()
                    .enumerate()
                    .map(|(l, layer)| {
                        let n = m.layers.len();
                        let times: Vec<f64> =
                            r.compute.iter().skip(l).step_by(n.max(1)).map(|(start, end)| end - start).collect();
                        LayerReport {
                            name: layer.name.clone(),
                            measured_seconds: measured(&times),
                            predicted_seconds: layer.compute_seconds,
                        }
                    })
                    .collect(),
            }
        })
        .collect();
    // The headline is the model the plan's step is about: the slowest diffusion model.
    let headline = mgc_plan::step_model(&plan.models).unwrap_or(0);
    let head = models.get(headline);
    let mut links: Vec<LinkReport> = Vec::new();
    for run in runs {
        for c in &run.copies {
            let seconds = c.end - c.start;
            match links.iter_mut().find(|l| l.from == c.from && l.to == c.to) {
                Some(l) => {
                    l.bytes += c.bytes;
                    l.seconds += seconds;
                }
                None => links.push(LinkReport { from: c.from, to: c.to, bytes: c.bytes, seconds, gbps: 0.0 }),
            }
        }
    }
    for l in &mut links {
        l.gbps = if l.seconds > 0.0 { l.bytes as f64 / l.seconds / 1e9 } else { 0.0 };
    }
    let cpu_peak = baseline.peak_above();
    let devices = plan
        .devices
        .iter()
        .map(|d| {
            // The device as libtorch names it, where the run computed what it counts.
            let torch = super::load::torch_device(d.name).ok().flatten();
            DeviceReport {
                name: d.name,
                peak_bytes_measured: match d.name {
                    Device::Cpu => Some(cpu_peak),
                    Device::Disk => Some(0),
                    Device::Cuda(n) => runs
                        .iter()
                        .filter_map(|r| r.device_low)
                        .filter(|(device, _)| *device == d.name)
                        .filter_map(|(_, low)| baseline.cuda_above(n as usize, low))
                        .max(),
                    _ => None,
                },
                peak_bytes_predicted: d.peak_bytes,
                distinct_products: torch.map_or(0, super::compute::distinct_products),
                distinct_products_predicted: d.distinct_products,
                largest_norm_bytes: torch.map_or(0, super::compute::largest_norm),
                largest_norm_bytes_predicted: d.largest_norm_bytes,
            }
        })
        .collect();
    Report {
        note: "measures the plan (placement, copies, memory, time) with the model's real weights and shapes, not the model's numerics",
        steps_asked: asked,
        notes: step_notes(plan, runs, asked),
        measured_step_seconds: head.map_or(0.0, |m| m.measured_step_seconds),
        predicted_step_seconds: plan.predicted.step_seconds,
        steps: head.map(|m| m.steps.clone()).unwrap_or_default(),
        warmup_seconds: head.map_or(0.0, |m| m.warmup_seconds),
        devices,
        links,
        hidden_copy_fraction: head.map_or(1.0, |m| m.hidden_copy_fraction),
        hidden_copy_fraction_predicted: plan.predicted.hidden_copy_fraction,
        load_seconds,
        total_seconds,
        models,
        machine: Vec::new(),
    }
}

fn seconds(s: f64) -> String {
    if s >= 1.0 { format!("{s:.3} s") } else { format!("{:.2} ms", s * 1e3) }
}

fn bytes(b: u64) -> String {
    mgc_core::Bytes(b).to_string()
}

/// The report as a person reads it.
pub fn human(report: &Report) -> String {
    let ratio = if report.predicted_step_seconds > 0.0 {
        report.measured_step_seconds / report.predicted_step_seconds
    } else {
        0.0
    };
    let mut t = format!(
        "step      measured {}  predicted {}  (measured/predicted {:.2})\n",
        seconds(report.measured_step_seconds),
        seconds(report.predicted_step_seconds),
        ratio
    );
    t.push_str(&format!(
        "copies    {:.0}% hidden behind compute (predicted {:.0}%)\nloading   {}\n\n",
        report.hidden_copy_fraction * 100.0,
        report.hidden_copy_fraction_predicted * 100.0,
        seconds(report.load_seconds)
    ));
    t.push_str(&format!(
        "{:<12} {:>6} {:>12} {:>12} {:>12}  {}\n",
        "model", "steps", "warm-up", "measured", "predicted", "the steps after the first"
    ));
    for m in &report.models {
        let after: Vec<String> = m.steps.iter().skip(1).map(|s| seconds(s.seconds)).collect();
        t.push_str(&format!(
            "{:<12} {:>6} {:>12} {:>12} {:>12}  {}\n",
            m.name,
            m.steps.len(),
            seconds(m.warmup_seconds),
            seconds(m.measured_step_seconds),
            seconds(m.predicted_step_seconds),
            if after.is_empty() { "-".to_owned() } else { after.join(", ") }
        ));
    }
    for note in &report.notes {
        t.push_str(&format!("note: {note}\n"));
    }
    t.push_str(&format!("\n{:<8} {:>16} {:>16}\n", "device", "peak measured", "peak predicted"));
    for d in &report.devices {
        let measured = d.peak_bytes_measured.map_or_else(|| "-".to_owned(), bytes);
        t.push_str(&format!("{:<8} {:>16} {:>16}\n", d.name, measured, bytes(d.peak_bytes_predicted)));
    }
    if !report.machine.is_empty() {
        t.push_str(&format!(
            "\n{:<8} {:<32} {:>16} {:>16} {:>6}\n",
            "device", "timed after the steps", "measured", "plan's figure", "ratio"
        ));
    }
    for m in &report.machine {
        t.push_str(&format!(
            "{:<8} {:<32} {:>16} {:>16} {:>6.2}\n",
            m.device,
            m.what,
            flops(m.measured_flops_per_second),
            flops(m.planned_flops_per_second),
            m.ratio()
        ));
    }
    if !report.links.is_empty() {
        t.push_str(&format!("\n{:<20} {:>12} {:>10}\n", "link", "copied", "GB/s"));
        for l in &report.links {
            t.push_str(&format!("{:<20} {:>12} {:>10.2}\n", format!("{} -> {}", l.from, l.to), bytes(l.bytes), l.gbps));
        }
    }
    t.push_str(&format!("\n{}\n", report.note));
    t
}

#[cfg(test)]
mod tests {
    use super::measured;

    #[test]
    fn a_step_is_the_mean_after_the_warm_up_without_the_outer_tenths() {
        assert_eq!(measured(&[]), 0.0);
        assert_eq!(measured(&[5.0]), 5.0, "the only step, warm-up or not");
        assert_eq!(measured(&[9.0, 1.0, 2.0]), 1.5, "the warm-up left out, the mean of the rest");
        // A slow spell of three steps of ten counts as it does on a clock (the median would be
        // 1); one step interrupted (the slowest tenth) and the fastest tenth do not.
        let mut steps = vec![9.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 0.5, 20.0];
        assert_eq!(measured(&steps), 11.0 / 8.0);
        steps.truncate(6);
        assert_eq!(measured(&steps), 1.0);
    }
}
