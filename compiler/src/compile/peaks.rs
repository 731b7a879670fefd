//! `schedule_to_peaks`: every device's peak memory, checked against what it has.
//!
//! A device holds the weights the graph homes there for the whole workflow, plus, while a model
//! runs, that model's transients: copies in flight and activations on its compute device, pinned
//! staging on `cpu`. Which models can run at once comes from the graph
//! ([`LayerGraph::live_together`]); the peak takes the largest group. Every device that computes
//! also holds the runtime's own memory (libtorch's thread pool and allocator, a GPU's workspaces
//! and allocator slack): measured by `mgc probe` into the profile, or a conservative default.

use mgc_core::{Bytes, Device, Span};
use serde::Serialize;

use super::cost::CostModel;
use super::error::{Problem, ProblemKind};
use super::graph::{LayerGraph, Node};
use super::schedule::Schedule;
use crate::workflow::Workflow;

/// The kernels a device's distinct matrix products leave in the runtime's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Products {
    pub distinct: u64,
    /// Bytes each, measured by `mgc probe`.
    pub bytes_each: u64,
}

/// The temporaries of a device's largest ops, which the allocator keeps once freed: its largest
/// norm's and what making its largest quantized or 8-bit weight computable holds. One op runs
/// at a time, so the device holds the larger of the two.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Workspace {
    /// Bytes of the largest norm's input (as much of it as the runtime norms at once).
    pub largest_norm: u64,
    /// Weights (elements) of the largest weight dequantized or converted to compute.
    pub largest_dequantized: u64,
    /// The larger of the two ops' temporaries, at the profile's figures.
    pub bytes: u64,
}

/// The schedule, with every device's memory at its peak.
#[derive(Clone, Debug)]
pub struct Peaks {
    pub schedule: Schedule,
    pub devices: Vec<DevicePeak>,
}

/// One device at its peak.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DevicePeak {
    pub device: Device,
    /// Total memory; 0 for `disk`.
    pub memory: u64,
    pub reserve: u64,
    /// Weights that live here for the whole workflow.
    pub resident: u64,
    /// Copies in flight and activations of the models that run here at once, at their largest.
    pub transient: u64,
    /// Pinned host memory for copies (on `cpu`).
    pub staging: u64,
    /// The runtime's own memory here, apart from weights, copies and activations.
    pub runtime: u64,
    /// Where `runtime` comes from: `profile` (measured by `mgc probe`) or `default`.
    pub runtime_source: &'static str,
    /// The distinct matrix products computed here and what each adds to `runtime`, where the
    /// profile measured that.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub products: Option<Products>,
    /// The temporaries of the largest ops computed here, in `runtime`, where the profile
    /// measured what they hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    pub peak: u64,
    /// Assumed compute throughput, FLOP/s.
    pub flops_per_second: f64,
    /// What the transient is made of, in words.
    #[serde(skip)]
    transient_parts: String,
    #[serde(skip)]
    span: Option<Span>,
}

impl DevicePeak {
    const fn usable(&self) -> u64 {
        self.memory.saturating_sub(self.reserve)
    }

    /// The device runs out of memory: by how much, and of what its peak is made.
    fn over_memory(&self) -> Option<ProblemKind> {
        let usable = self.usable();
        if self.device == Device::Disk || self.peak <= usable {
            return None;
        }
        let mut parts = format!("{} of resident weights", Bytes(self.resident));
        if self.transient > 0 {
            parts.push_str(&format!(", {}", self.transient_parts));
        }
        if self.staging > 0 {
            parts.push_str(&format!(", {} of pinned staging", Bytes(self.staging)));
        }
        if self.runtime > 0 {
            parts.push_str(&format!(", {} of the runtime's own ({})", Bytes(self.runtime), self.runtime_source));
        }
        Some(ProblemKind::DeviceOverMemory {
            device: self.device.to_string(),
            peak: self.peak,
            usable,
            short: self.peak - usable,
            parts,
        })
    }
}

/// Each device's peak, or which devices would run out of memory and by how much.
pub fn schedule_to_peaks(schedule: Schedule, workflow: &Workflow, cost: &CostModel) -> Result<Peaks, Vec<Problem>> {
    let mut list: Vec<(Device, u64, u64, Option<Span>)> =
        workflow.devices.iter().map(|d| (d.device, d.memory.get(), d.reserve.get(), d.span)).collect();
    if homes_any(&schedule.graph, Device::Disk) {
        list.push((Device::Disk, 0, 0, None));
    }
    let groups = schedule.graph.live_together();
    let devices: Vec<DevicePeak> = list
        .into_iter()
        .map(|(device, memory, reserve, span)| {
            let mut peak = device_peak(&schedule, &groups, device);
            let runtime = runtime_memory(workflow, &schedule.graph, device);
            (peak.runtime, peak.runtime_source, peak.products) = (runtime.bytes, runtime.source, runtime.products);
            peak.workspace = runtime.workspace;
            if device != Device::Disk {
                peak.peak += peak.runtime;
            }
            peak.memory = memory;
            peak.reserve = reserve;
            peak.span = span;
            peak.flops_per_second = if device == Device::Disk { 0.0 } else { cost.flops(device) };
            peak
        })
        .collect();
    // A device declared nowhere in the file is blamed on the first model's allocation.
    let fallback = schedule.graph.models.first().map_or_else(Span::default, |m| m.spec.allocation_span);
    let problems: Vec<Problem> = devices
        .iter()
        .filter_map(|d| d.over_memory().map(|kind| Problem::new(kind, d.span.unwrap_or(fallback))))
        .collect();
    if problems.is_empty() { Ok(Peaks { schedule, devices }) } else { Err(problems) }
}

/// The runtime's default memory on a CPU: libtorch's thread pool (a stack and an allocator arena
/// per thread) and the copy thread. Generous: a many-core machine has more threads than the
/// 2 to 16 cores this was measured on; a probe's figure replaces it.
const DEFAULT_CPU_RUNTIME: u64 = 64 << 20;

/// The runtime's default memory on a GPU, not counting the CUDA context itself (which the driver
/// holds before any plan's memory is measured): libtorch's cuBLAS workspaces and the caching
/// allocator's rounding and slack. A probe's figure replaces it.
const DEFAULT_GPU_RUNTIME: u64 = 512 << 20;

/// The host memory the runtime adds once a model computes on a GPU: the CUDA driver's context
/// and libtorch's CUDA side (cuBLAS, the caching allocator's bookkeeping). On an H200 machine
/// (driver 580, torch 2.11 with CUDA 13), a plan computing on the GPU alone held 194 MiB on the
/// host, 182 MiB beyond the CPU runtime's own figure; rounded up. A probe's figure replaces it.
const DEFAULT_GPU_HOST: u64 = 256 << 20;

/// The runtime's own memory on a device, of which the kernels of its products and its largest
/// ops' temporaries.
pub(super) struct RuntimeMemory {
    pub bytes: u64,
    /// Where the figure comes from: `profile`, `default`, `profile and default`, or `none`.
    pub source: &'static str,
    pub products: Option<Products>,
    pub workspace: Option<Workspace>,
}

/// The runtime's own memory on `device`: its base figure ([`runtime_base`]), the kernels of the
/// products computed there ([`products`]) and what its largest ops hold while they run
/// ([`workspace`]), the last two where the profile measured them.
pub(super) fn runtime_memory(workflow: &Workflow, graph: &LayerGraph, device: Device) -> RuntimeMemory {
    let (base, source) = runtime_base(workflow, device);
    let products = products(workflow, graph, device);
    let kernels = products.map_or(0, |p| p.distinct.saturating_mul(p.bytes_each));
    let workspace = workspace(workflow, graph, device);
    let bytes = base.saturating_add(kernels).saturating_add(workspace.map_or(0, |w| w.bytes));
    RuntimeMemory { bytes, source, products, workspace }
}

/// What the largest ops of the models computing on `device` hold while they run, where the
/// profile measured what a norm holds a byte of its input and what making a weight computable
/// holds a weight: the allocator keeps those temporaries once freed, for the next op (a CPU with
/// native BF16 held 1 byte a byte of a BF16 norm's input, and 26 bytes a weight of a GGUF block
/// type dequantized). The larger of the two, rounded up to 4 KiB pages. Without a profile, the
/// default runtime figure covers it.
fn workspace(workflow: &Workflow, graph: &LayerGraph, device: Device) -> Option<Workspace> {
    let profile = workflow.profile.as_ref()?;
    let (per_byte, per_weight) = (profile.norm_workspace(device)?, profile.dequantize_workspace(device).unwrap_or(0.0));
    let largest_norm = super::products::largest_norm(graph, device);
    let largest_dequantized = super::products::largest_dequantized(graph, device);
    #[expect(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss, reason = "bytes")]
    let held = |count: u64, each: f64| (count as f64 * each).ceil() as u64;
    let bytes = held(largest_norm, per_byte).max(held(largest_dequantized, per_weight));
    Some(Workspace { largest_norm, largest_dequantized, bytes: bytes.div_ceil(4096) * 4096 })
}

/// The runtime's own memory on `device` apart from its products' kernels, and where the figure
/// comes from: the profile's measurement, or a conservative default. On the CPU, with the host
/// memory of the CUDA side when a model computes on a GPU. None on `disk`.
fn runtime_base(workflow: &Workflow, device: Device) -> (u64, &'static str) {
    if device == Device::Disk {
        return (0, "none");
    }
    let profile = workflow.profile.as_ref();
    let (own, measured) = match profile.and_then(|p| p.runtime_bytes(device)) {
        Some(bytes) => (bytes, true),
        None if device == Device::Cpu => (DEFAULT_CPU_RUNTIME, false),
        None => (DEFAULT_GPU_RUNTIME, false),
    };
    let on_gpu = workflow.models.iter().any(|m| matches!(m.compute, Device::Cuda(_)));
    if device != Device::Cpu || !on_gpu {
        return (own, if measured { "profile" } else { "default" });
    }
    let (host, host_measured) =
        profile.and_then(|p| p.gpu_host_bytes()).map_or((DEFAULT_GPU_HOST, false), |b| (b, true));
    let source = match (measured, host_measured) {
        (true, true) => "profile",
        (false, false) => "default",
        _ => "profile and default",
    };
    (own + host, source)
}

/// The kernels of the distinct products the models computing on `device` compute, where the
/// profile measured what each adds (see [`super::products`]). Without a profile, the default
/// runtime figure covers them: 64 MiB is some hundred products' kernels at the 0.6 MiB each a CPU
/// with native BF16 held.
fn products(workflow: &Workflow, graph: &LayerGraph, device: Device) -> Option<Products> {
    let bytes_each = workflow.profile.as_ref()?.product_bytes(device)?;
    Some(Products { distinct: super::products::distinct_products(graph, device), bytes_each })
}

/// Whether any layer lives on `device`.
fn homes_any(graph: &LayerGraph, device: Device) -> bool {
    graph.graph.node_weights().any(|n| matches!(n, Node::Layer(l) if l.home == Some(device)))
}

/// Resident weights on a device, and the largest transient of any group of models that run
/// together.
fn device_peak(schedule: &Schedule, groups: &[Vec<usize>], device: Device) -> DevicePeak {
    let graph = &schedule.graph;
    let resident: u64 = graph
        .graph
        .node_weights()
        .filter_map(|n| match n {
            Node::Layer(l) if l.home == Some(device) => {
                graph.models.get(l.model).and_then(|m| m.layers.get(l.layer)).map(|layer| layer.bytes)
            }
            _ => None,
        })
        .sum();
    let (mut transient, mut transient_parts, mut staging) = (0u64, String::new(), 0u64);
    for group in groups {
        let mut here = 0u64;
        let mut parts = Vec::new();
        let mut group_staging = 0u64;
        for &m in group {
            let (Some(model), Some(timing)) = (graph.models.get(m), schedule.timings.get(m)) else {
                continue;
            };
            if model.spec.compute == device {
                here += timing.step.inflight_peak + model.activation_bytes;
                parts.push(format!(
                    "{} in flight and {} of activations while `{}` runs",
                    Bytes(timing.step.inflight_peak),
                    Bytes(model.activation_bytes),
                    model.spec.name
                ));
            }
            if device == Device::Cpu {
                group_staging += timing.step.staging;
            }
        }
        if here > transient {
            transient = here;
            transient_parts = parts.join(", ");
        }
        staging = staging.max(group_staging);
    }
    let peak = if device == Device::Disk { 0 } else { resident + transient + staging };
    DevicePeak {
        device,
        memory: 0,
        reserve: 0,
        resident,
        transient,
        staging,
        runtime: 0,
        runtime_source: "none",
        products: None,
        workspace: None,
        peak,
        flops_per_second: 0.0,
        transient_parts,
        span: None,
    }
}
