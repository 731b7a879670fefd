//! The cost model: how fast each link copies and each device computes, and what a layer costs.
//!
//! Link bandwidths are DisTorch's measured figures by kind of link, or what the workflow declares;
//! compute time is a layer's FLOPs at the workload's token count over the device's throughput.

use mgc_core::{Device, DeviceKind};

use crate::inventory::{Dtype, Family, PlainType, Role, Tensor};
use crate::workflow::{LinkKind, Workflow, Workload};
use mgc_core::profile::Profile;

/// Assumed sustained throughput of an accelerator at 16-bit weights, FLOP/s, when the workflow
/// gives none (`tflops` on a `[[device]]`): a mid-range current GPU at realistic matmul efficiency.
pub const DEFAULT_ACCELERATOR_FLOPS: f64 = 80e12;
/// Assumed CPU throughput, FLOP/s: a desktop CPU running 16-bit matmuls.
pub const DEFAULT_CPU_FLOPS: f64 = 0.2e12;
/// Assumed read speed of the model file (`disk`), bytes/s: an NVMe drive.
pub const DEFAULT_DISK_READ: u64 = 2_000_000_000;
/// Elements a second through norms and elementwise ops, when no profile measured it.
pub const DEFAULT_CPU_ELEMENTS_PER_SECOND: f64 = 2e9;
pub const DEFAULT_ACCELERATOR_ELEMENTS_PER_SECOND: f64 = 200e9;

/// The fixed cost of applying one weight tensor (kernel launch, bookkeeping), seconds, when no
/// profile measured it.
pub const DEFAULT_SECONDS_PER_TENSOR: f64 = 10e-6;

/// A link's speed and where the figure comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate {
    pub bytes_per_second: f64,
    pub source: String,
}

/// Link speeds and device throughputs for one workflow.
#[derive(Clone, Debug)]
pub struct CostModel {
    links: Vec<(Device, Device, u64, String)>,
    flops: Vec<(Device, f64)>,
    classes: Vec<(Device, f64)>,
    disk_read: u64,
    profile: Option<Profile>,
}

impl CostModel {
    pub fn new(workflow: &Workflow) -> Self {
        let links = workflow
            .links
            .iter()
            .map(|l| {
                let source = l.kind.map_or_else(|| "declared".to_owned(), |k| format!("kind {}", k.name()));
                (l.between[0], l.between[1], l.bandwidth.bytes_per_second(), source)
            })
            .collect();
        let flops = workflow.devices.iter().filter_map(|d| d.flops.map(|f| (d.device, f))).collect();
        let classes = workflow.devices.iter().filter_map(|d| d.class_flops.map(|f| (d.device, f))).collect();
        let profile = workflow.profile.clone();
        let disk_read = profile.as_ref().and_then(Profile::disk_read).map_or(DEFAULT_DISK_READ, |r| r as u64);
        Self { links, flops, classes, disk_read, profile }
    }

    /// Compute throughput of a device, FLOP/s.
    pub fn flops(&self, device: Device) -> f64 {
        self.flops
            .iter()
            .find(|(d, _)| *d == device)
            .map(|(_, f)| *f)
            .or_else(|| self.profile.as_ref().and_then(|p| p.flops(device)))
            .or_else(|| self.classes.iter().find(|(d, _)| *d == device).map(|(_, f)| *f))
            .unwrap_or_else(|| default_flops(device))
    }

    /// The fixed cost of applying one weight tensor on a device, seconds.
    pub fn seconds_per_tensor(&self, device: Device) -> f64 {
        self.profile.as_ref().and_then(|p| p.seconds_per_tensor(device)).unwrap_or(DEFAULT_SECONDS_PER_TENSOR)
    }

    /// Matmul throughput of a device at a problem of `size` (the cube root of m·k·n): measured
    /// by size in a profile (interpolated, log-log), else the device's one figure.
    pub fn flops_at(&self, device: Device, size: f64) -> f64 {
        let curve = self.profile.as_ref().map(|p| p.flops_by_size(device)).unwrap_or_default();
        if self.flops.iter().any(|(d, _)| *d == device) || curve.is_empty() {
            return self.flops(device);
        }
        let (Some(first), Some(last)) = (curve.first(), curve.last()) else { return self.flops(device) };
        if size <= first.0 {
            return first.1;
        }
        if size >= last.0 {
            return last.1;
        }
        for pair in curve.windows(2) {
            if let [(s0, f0), (s1, f1)] = pair
                && size >= *s0
                && size <= *s1
            {
                let t = (size.ln() - s0.ln()) / (s1.ln() - s0.ln());
                return (f0.ln() + t * (f1.ln() - f0.ln())).exp();
            }
        }
        self.flops(device)
    }

    /// Elements a second through norms and elementwise ops on a device.
    pub fn elements_per_second(&self, device: Device) -> f64 {
        self.profile.as_ref().and_then(|p| p.elements_per_second(device)).unwrap_or(match device.kind() {
            DeviceKind::Cpu | DeviceKind::Disk => DEFAULT_CPU_ELEMENTS_PER_SECOND,
            _ => DEFAULT_ACCELERATOR_ELEMENTS_PER_SECOND,
        })
    }

    /// How much slower a CPU computes while a copy thread streams layers: the runtime leaves the
    /// copy thread one of the cores the profile was measured with.
    pub fn sharing_factor(&self, device: Device, streams: bool) -> f64 {
        match (device, streams, self.profile.as_ref().and_then(|p| p.threads(device))) {
            (Device::Cpu, true, Some(threads)) if threads > 1 => f64::from(threads) / f64::from(threads - 1),
            _ => 1.0,
        }
    }

    /// Seconds one layer computes on a device at `tokens`: every weight applied to every token
    /// at the throughput of its problem size, norms and biases at the elementwise rate,
    /// attention's `4·N²·d`, and a fixed cost a tensor. On a CPU the fixed costs add to the
    /// work. A GPU runs its kernels while the host launches the next ones, so a layer takes the
    /// longer of the two and an eighth of the shorter, where they do not overlap: a Wan 2.1 1.3B
    /// block at 4096 tokens took 1.19 and 1.33 ms on two H200s, against 1.12 and 1.11 ms of
    /// kernels and 0.90 and 1.01 ms of launches as their probes predicted.
    pub fn layer_seconds(&self, tensors: &[Tensor], tokens: u64, device: Device) -> f64 {
        let fixed = tensors.len() as f64 * self.seconds_per_tensor(device);
        let work = self.layer_work_seconds(tensors, tokens, device);
        if device.is_accelerator() { fixed.max(work) + fixed.min(work) / 8.0 } else { fixed + work }
    }

    /// The arithmetic of a layer alone, without the fixed cost of its tensors.
    fn layer_work_seconds(&self, tensors: &[Tensor], tokens: u64, device: Device) -> f64 {
        let n = tokens as f64;
        let mut seconds = 0.0;
        let mut attention_width: f64 = 0.0;
        for t in tensors.iter().filter(|t| t.shape.len() == 1) {
            seconds += n * elements(t) / self.elements_per_second(device);
        }
        for t in tensors.iter().filter(|t| !is_lookup(&t.name) && t.shape.len() >= 2) {
            let e = elements(t);
            seconds += 2.0 * n * e / self.flops_at(device, (n * e).cbrt());
            attention_width = attention_width.max(attention_input(t));
        }
        if attention_width > 0.0 {
            seconds += 4.0 * n * n * attention_width / self.flops_at(device, (n * n * attention_width).cbrt());
        }
        seconds
    }

    /// How fast bytes move from `from` to `to`.
    pub fn rate(&self, from: Device, to: Device) -> Rate {
        if let Some((_, _, bw, source)) =
            self.links.iter().find(|(a, b, _, _)| (*a == from && *b == to) || (*a == to && *b == from))
        {
            return Rate { bytes_per_second: *bw as f64, source: source.clone() };
        }
        if let Some(measured) = self.profile.as_ref().and_then(|p| p.rate(from, to)) {
            return Rate { bytes_per_second: measured, source: "profile".into() };
        }
        if from == Device::Disk {
            let disk = self.disk_read as f64;
            let measured = self.profile.as_ref().and_then(Profile::disk_read).is_some();
            let what = if measured { "profile disk read" } else { "default disk read" };
            if to == Device::Cpu {
                return Rate { bytes_per_second: disk, source: what.into() };
            }
            let host = self.rate(Device::Cpu, to);
            return Rate {
                bytes_per_second: disk.min(host.bytes_per_second),
                source: format!("{what}, then {}", host.source),
            };
        }
        let (kind, what) = if from.is_accelerator() && to.is_accelerator() {
            (LinkKind::Pcie3x8P2p, "default pcie3x8-p2p")
        } else {
            (LinkKind::Pcie4x16, "default pcie4x16")
        };
        Rate { bytes_per_second: kind.bandwidth().bytes_per_second() as f64, source: what.into() }
    }
}

/// Sustained 16-bit matmul throughput by class of GPU, FLOP/s: roughly 60% of each card's dense
/// FP16/BF16 tensor-core peak with FP32 accumulation. A `[[device]]` names its class with
/// `gpu = "rtx4090"`; detected devices are matched by their driver name. A profile's measured
/// figure replaces these.
pub const GPU_CLASSES: [(&str, f64); 19] = [
    ("h200", 600e12),
    ("h100", 500e12),
    ("a100", 190e12),
    ("l40s", 220e12),
    ("l40", 110e12),
    ("a6000", 90e12),
    ("rtx 6000 ada", 220e12),
    ("5090", 250e12),
    ("4090", 100e12),
    ("4080", 60e12),
    ("4070", 35e12),
    ("4060", 18e12),
    ("3090", 42e12),
    ("3080", 36e12),
    ("3070", 24e12),
    ("3060", 15e12),
    ("2080", 24e12),
    ("v100", 70e12),
    ("t4", 30e12),
];

/// The throughput of a class of GPU, from a name such as `rtx4090` or `NVIDIA GeForce RTX 4090`.
pub fn class_flops(name: &str) -> Option<f64> {
    let name = name.to_ascii_lowercase().replace(['-', '_'], " ");
    let squeezed = name.replace(' ', "");
    GPU_CLASSES
        .iter()
        .find(|(class, _)| name.contains(class) || squeezed.contains(&class.replace(' ', "")))
        .map(|(_, f)| *f)
}

fn default_flops(device: Device) -> f64 {
    match device.kind() {
        DeviceKind::Cpu | DeviceKind::Disk => DEFAULT_CPU_FLOPS,
        _ => DEFAULT_ACCELERATOR_FLOPS,
    }
}

/// Tokens one step of a model processes: the workload's, or derived from the image size.
pub fn tokens(family: Family, role: Role, workload: &Workload) -> u64 {
    let (width, height, frames, batch, given) = match *workload {
        Workload::Tokens { tokens, batch } => (1024, 1024, 1, batch, Some(tokens)),
        Workload::Resolution { width, height, frames, batch } => (width, height, frames, batch, None),
    };
    let latent_frames = frames.saturating_sub(1) / 4 + 1;
    let per_item = match (role, family) {
        (Role::TextEncoder, Family::ClipL | Family::ClipG | Family::ClipH) => 77,
        (Role::TextEncoder, _) => 512,
        (Role::Vae, _) => (width / 8).max(1) * (height / 8).max(1) * latent_frames,
        (_, _) if given.is_some() => given.unwrap_or(1),
        (_, Family::Sdxl | Family::Sd1) => (width / 8).max(1) * (height / 8).max(1),
        (_, Family::Wan21 | Family::Wan22 | Family::HunyuanVideo) => {
            (width / 16).max(1) * (height / 16).max(1) * latent_frames
        }
        (_, _) => (width / 16).max(1) * (height / 16).max(1) * frames,
    };
    per_item.saturating_mul(batch).max(1)
}

use mgc_plan::is_lookup;

/// The input width of an attention matrix (its `d` in `4·N²·d`), 0 for other tensors.
fn attention_input(t: &Tensor) -> f64 {
    let attention = t.name.contains("attn") || t.name.contains("Attention") || t.name.contains("attention");
    if attention { t.shape.get(1).copied().unwrap_or(0) as f64 } else { 0.0 }
}

fn elements(t: &Tensor) -> f64 {
    t.shape.iter().map(|&d| d as f64).product()
}

/// FLOPs of one layer at `tokens`: every weight applied to every token (2 FLOPs a weight), and
/// attention's `4·N²·d` when the layer has attention.
pub fn layer_flops(tensors: &[&Tensor], tokens: u64) -> f64 {
    let n = tokens as f64;
    let mut flops = 0.0;
    let mut attention_width: f64 = 0.0;
    for t in tensors.iter().filter(|t| !is_lookup(&t.name)) {
        if t.shape.len() >= 2 {
            flops += 2.0 * n * elements(t);
            attention_width = attention_width.max(attention_input(t));
        } else {
            flops += n * elements(t);
        }
    }
    flops + 4.0 * n * n * attention_width
}

/// Bytes of one element as the model computes: 4 for a model stored in F32, 2 otherwise.
fn compute_element_bytes(tensors: &[Tensor]) -> u64 {
    let f32_bytes: u64 = tensors.iter().filter(|t| t.dtype == Dtype::Plain(PlainType::F32)).map(|t| t.bytes).sum();
    let all: u64 = tensors.iter().map(|t| t.bytes).sum();
    if f32_bytes * 2 > all { 4 } else { 2 }
}

/// Weights applied to one conditioning vector, not to every token: they make no activations
/// of token width.
fn is_conditioning(name: &str) -> bool {
    ["mod", "adaLN", "time", "guidance", "vector_in", "y_embedder", "t_embedder", "label_emb"]
        .iter()
        .any(|k| name.contains(k))
}

/// Activations and temporaries of one step on the compute device: the widest per-token layer
/// input or output for every token, three times over (its input, the wide intermediate, its
/// output). A layer's input can be wider than any output (a projection in from a text
/// encoder's width); the runtime holds it all the same.
pub fn activation_bytes(tensors: &[Tensor], tokens: u64) -> u64 {
    // The widest input or output, looking at names only for tensors wider than the widest so far.
    let mut width = 0;
    for t in tensors.iter().filter(|t| t.shape.len() >= 2) {
        let out = t.shape.first().copied().unwrap_or(0);
        let inner = t.shape.get(1).copied().unwrap_or(0);
        let wide = if t.shape.len() == 2 { out.max(inner) } else { out };
        if wide > width && !is_lookup(&t.name) && !is_conditioning(&t.name) {
            width = wide;
        }
    }
    tokens.saturating_mul(width).saturating_mul(compute_element_bytes(tensors)).saturating_mul(3)
}
