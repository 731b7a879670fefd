//! The cost model: how fast each link copies and each device computes, and what a layer costs.
//!
//! Link bandwidths are DisTorch's measured figures by kind of link, or what the workflow declares;
//! compute time is a layer's FLOPs at the workload's token count over the device's throughput.

use mgc_core::{Device, DeviceKind};

use super::work::{LayerWork, Pass};
use crate::inventory::{Dtype, Model, PlainType, Tensor};
use crate::workflow::{LinkKind, Workflow};
use mgc_core::profile::Profile;
use mgc_plan::is_lookup;

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
    class_names: Vec<(Device, &'static str)>,
    disk_read: u64,
    /// Whether the disk tier is read from the device itself: the profile's cold figure, for a
    /// workflow whose models do not all fit in RAM beside each other (the page cache cannot keep
    /// what a step reads until the next).
    disk_cold: bool,
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
        let class_names = workflow.devices.iter().filter_map(|d| d.class.map(|c| (d.device, c))).collect();
        let profile = workflow.profile.clone();
        let disk_read = profile.as_ref().and_then(Profile::disk_read).map_or(DEFAULT_DISK_READ, |r| r as u64);
        Self { links, flops, classes, class_names, disk_read, disk_cold: false, profile }
    }

    /// The cost model of a workflow whose models hold `model_bytes` in all: the disk tier is read
    /// at the profile's cold speed when they exceed the CPU's usable memory (the weights kept in
    /// RAM and the file's pages cached for the next step cannot all stay), else through the page
    /// cache (warm), as a file read again each step is once RAM holds it.
    pub fn for_models(workflow: &Workflow, model_bytes: u64) -> Self {
        let mut cost = Self::new(workflow);
        let ram = workflow
            .devices
            .iter()
            .find(|d| d.device == Device::Cpu)
            .map(|d| d.memory.get().saturating_sub(d.reserve.get()));
        let cold = cost.profile.as_ref().and_then(Profile::disk_read_cold);
        if let (Some(ram), Some(cold)) = (ram, cold)
            && model_bytes > ram
        {
            cost.disk_read = cold as u64;
            cost.disk_cold = true;
        }
        cost
    }

    /// Where [`Self::flops`] takes a device's figure from.
    pub fn flops_basis(&self, device: Device) -> FlopsBasis {
        if self.flops.iter().any(|(d, _)| *d == device) {
            FlopsBasis::Declared
        } else if self.profile.as_ref().and_then(|p| p.flops(device)).is_some() {
            FlopsBasis::Profile
        } else if let Some((_, class)) = self.class_names.iter().find(|(d, _)| *d == device) {
            FlopsBasis::Class(class)
        } else {
            FlopsBasis::Default
        }
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

    /// The fixed cost of applying one weight tensor on a device, seconds: as measured with one
    /// core fewer when the device computes while streaming and the profile has that figure.
    pub fn seconds_per_tensor(&self, device: Device, streaming: bool) -> f64 {
        self.profile
            .as_ref()
            .and_then(|p| p.seconds_per_tensor(device, streaming))
            .unwrap_or(DEFAULT_SECONDS_PER_TENSOR)
    }

    /// Seconds of one matrix product: `rows` vectors of `inner` through a weight of `outputs ×
    /// inner`. From the profile's table of shapes where it has one (measured with one core fewer
    /// when streaming), else the throughput at the problem's size.
    pub fn matmul_seconds(&self, device: Device, streaming: bool, rows: f64, inner: f64, outputs: f64) -> f64 {
        let flops = 2.0 * rows * inner * outputs;
        let declared = self.flops.iter().any(|(d, _)| *d == device);
        let table = self.profile.as_ref().and_then(|p| p.matmul(device, streaming));
        let rate = match table.and_then(|t| t.at(inner, rows * outputs)) {
            Some(rate) if !declared => rate,
            _ => self.flops_at(device, (rows * inner * outputs).cbrt()),
        };
        flops / rate
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
    pub fn elements_per_second(&self, device: Device, streaming: bool) -> f64 {
        self.profile.as_ref().and_then(|p| p.elements_per_second(device, streaming)).unwrap_or(match device.kind() {
            DeviceKind::Cpu | DeviceKind::Disk => DEFAULT_CPU_ELEMENTS_PER_SECOND,
            _ => DEFAULT_ACCELERATOR_ELEMENTS_PER_SECOND,
        })
    }

    /// Elements a second through a bias add on a device: the profile's figure, else the norm's.
    pub fn adds_per_second(&self, device: Device, streaming: bool) -> f64 {
        self.profile
            .as_ref()
            .and_then(|p| p.adds_per_second(device, streaming))
            .unwrap_or_else(|| self.elements_per_second(device, streaming))
    }

    /// How much slower a CPU computes while a copy thread streams layers: the runtime leaves the
    /// copy thread one of the cores the profile was measured with. 1 where the profile measured
    /// the CPU with one core fewer too ([`Self::layer_seconds`] uses those figures).
    pub fn sharing_factor(&self, device: Device, streams: bool) -> f64 {
        if self.profile.as_ref().and_then(|p| p.streaming(device)).is_some() {
            return 1.0;
        }
        match (device, streams, self.profile.as_ref().and_then(|p| p.threads(device))) {
            (Device::Cpu, true, Some(threads)) if threads > 1 => f64::from(threads) / f64::from(threads - 1),
            _ => 1.0,
        }
    }

    /// How much slower `device`'s kernels run while a copy to it runs beside them, as the
    /// profile measured it; none where it did not (a CPU's sharing is [`Self::sharing_factor`]).
    pub fn copy_slowdown(&self, device: Device) -> Option<f64> {
        self.profile.as_ref().and_then(|p| p.copy_slowdown(device)).filter(|_| device.is_accelerator())
    }

    /// Seconds one layer computes on a device: every matrix product at the throughput of its
    /// problem size, norms and biases at the elementwise rate, every attention's `4·q·k·d`, and
    /// a fixed cost a tensor. On a CPU the fixed costs add to the work. A GPU runs its kernels
    /// while the host launches the next ones, so a layer takes the longer of the two and an
    /// eighth of the shorter, where they do not overlap: a Wan 2.1 1.3B block at 4096 tokens
    /// took 1.19 and 1.33 ms on two H200s, against 1.12 and 1.11 ms of kernels and 0.90 and
    /// 1.01 ms of launches as their probes predicted.
    /// `streaming`: the device computes while a copy thread streams layers to it.
    pub fn layer_seconds(&self, work: &LayerWork, device: Device, streaming: bool) -> f64 {
        let fixed = work.tensors as f64 * self.seconds_per_tensor(device, streaming);
        let work = self.layer_work_seconds(work, device, streaming);
        if device.is_accelerator() { fixed.max(work) + fixed.min(work) / 8.0 } else { fixed + work }
    }

    /// The arithmetic of a layer alone, without the fixed cost of its tensors. An attention is
    /// two products: `QKᵀ` (queries × width through a keys × width matrix) and `AV` (queries ×
    /// keys through a width × keys one).
    fn layer_work_seconds(&self, work: &LayerWork, device: Device, streaming: bool) -> f64 {
        let norms = (work.elementwise - work.adds).max(0.0);
        let mut seconds =
            norms / self.elements_per_second(device, streaming) + work.adds / self.adds_per_second(device, streaming);
        for &(rows, inner, outputs) in work.matmuls.iter().filter(|(rows, _, _)| *rows > 0.0) {
            seconds += self.matmul_seconds(device, streaming, rows, inner, outputs);
        }
        for &(q, k, d) in &work.attention {
            seconds +=
                self.matmul_seconds(device, streaming, q, d, k) + self.matmul_seconds(device, streaming, q, k, d);
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
            let what = match (measured, self.disk_cold) {
                (true, true) => "profile disk read, cold (the models exceed RAM)",
                (true, false) => "profile disk read",
                (false, _) => "default disk read",
            };
            if to == Device::Cpu {
                return Rate { bytes_per_second: disk, source: what.into() };
            }
            // A GPU's transfers are gathered into its staging buffer on several threads, where a
            // CPU's are read on one: the probe measures both from a warm page cache.
            let staged = self.profile.as_ref().and_then(Profile::disk_read_staged).filter(|_| !self.disk_cold);
            let (disk, what) = match staged {
                Some(staged) => (staged, "profile disk read into the staging buffer"),
                None => (disk, what),
            };
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

/// The share of its dense 16-bit tensor peak (FP32 accumulation, as torch computes) that a GPU
/// sustains through a diffusion transformer's step, measured: an RTX 3090 runs Flux-dev (Q8_0
/// GGUF, 1024×1024, 20 steps, cfg 1, ComfyUI's example workflow, everything on the GPU) at 1.29
/// s/it (the measurement quoted in issue #13); the cost model counts 69.5 TFLOP in that step
/// (the test `flux_dev_step_flops_by_hand`), so 53.9 TFLOP/s of the card's 71 TFLOP/s, 76%. An
/// RTX 4090 at Flux-dev FP16, 1024×1024, reported at 0.55 s/it in ComfyUI with `--highvram`
/// (gigagpu.com's ComfyUI guide for the RTX 4090), sustains 126 TFLOP/s of 165: 76% again.
pub const MEASURED_EFFICIENCY: f64 = 0.76;

/// Dense FP16/BF16 tensor-core peaks with FP32 accumulation, TFLOP/s, from NVIDIA's
/// architecture whitepapers and datasheets (GeForce cards accumulate in FP32 at half their FP16
/// rate); the class's sustained figure is [`MEASURED_EFFICIENCY`] of it. A `[[device]]` names
/// its class with `gpu = "rtx4090"`; detected devices are matched by their driver name. A
/// profile's measured figure replaces these.
pub const GPU_PEAKS: [(&str, f64); 19] = [
    ("h200", 989.0),
    ("h100", 989.0),
    ("a100", 312.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("a6000", 155.0),
    ("rtx 6000 ada", 364.0),
    ("5090", 209.5),
    ("4090", 165.2),
    ("4080", 97.5),
    ("4070", 58.3),
    ("4060", 30.2),
    ("3090", 71.0),
    ("3080", 59.5),
    ("3070", 40.6),
    ("3060", 25.6),
    ("2080", 20.1),
    ("v100", 125.0),
    ("t4", 65.0),
];

/// How far the default figures of a GPU class are from a measured step: the spread of the two
/// calibrations above and of the efficiency across cards and resolutions.
pub const CLASS_UNCERTAINTY: f64 = 0.3;

/// The known classes of GPU, for messages.
pub fn class_names() -> impl Iterator<Item = &'static str> {
    GPU_PEAKS.iter().map(|(name, _)| *name)
}

/// The throughput of a class of GPU, from a name such as `rtx4090` or `NVIDIA GeForce RTX 4090`.
pub fn class_flops(name: &str) -> Option<f64> {
    class_of(name).map(|(_, flops)| flops)
}

/// The class of GPU a name matches, and its sustained throughput, FLOP/s.
pub fn class_of(name: &str) -> Option<(&'static str, f64)> {
    let name = name.to_ascii_lowercase().replace(['-', '_'], " ");
    let squeezed = name.replace(' ', "");
    GPU_PEAKS
        .iter()
        .find(|(class, _)| name.contains(class) || squeezed.contains(&class.replace(' ', "")))
        .map(|(class, peak)| (*class, peak * 1e12 * MEASURED_EFFICIENCY))
}

/// Where a device's compute figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlopsBasis {
    /// `tflops` in the workflow.
    Declared,
    Profile,
    /// The defaults of a class of GPU.
    Class(&'static str),
    /// The defaults of any GPU or CPU.
    Default,
}

fn default_flops(device: Device) -> f64 {
    match device.kind() {
        DeviceKind::Cpu | DeviceKind::Disk => DEFAULT_CPU_FLOPS,
        _ => DEFAULT_ACCELERATOR_FLOPS,
    }
}

pub fn elements(t: &Tensor) -> f64 {
    t.shape.iter().map(|&d| d as f64).product()
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

/// Activations and temporaries of one pass on the compute device: the widest per-token layer
/// input or output for every token of the pass (without CFG's second half, which ComfyUI runs
/// apart when memory is short), three times over (its input, the wide intermediate, its output).
/// A layer's input can be wider than any output (a projection in from a text encoder's width);
/// the runtime holds it all the same. A VAE's decode is ComfyUI's own estimate
/// ([`super::work::vae_decode`]).
pub fn activation_bytes(model: &Model, pass: &Pass) -> u64 {
    // The widest input or output, looking at names only for tensors wider than the widest so far.
    let mut width = 0;
    for t in model.tensors.iter().filter(|t| t.shape.len() >= 2) {
        let out = t.shape.first().copied().unwrap_or(0);
        let inner = t.shape.get(1).copied().unwrap_or(0);
        let wide = if t.shape.len() == 2 { out.max(inner) } else { out };
        if wide > width && !is_lookup(&t.name) && !is_conditioning(&t.name) && !t.name.starts_with("visual.") {
            width = wide;
        }
    }
    pass.tokens_without_cfg()
        .saturating_mul(width)
        .saturating_mul(compute_element_bytes(&model.tensors))
        .saturating_mul(3)
}
