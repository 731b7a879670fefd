//! The resolved workflow: every name checked, every string turned into its unit, no `Option`s
//! left for later stages to guess about.

mod error;
mod resolve;

use std::path::PathBuf;

use mgc_core::{Bandwidth, Bytes, Device, Span};
use mgc_grammar::Allocation;
use serde::Serialize;

pub use error::{SpecError, SpecErrorKind};
pub use resolve::{spec_to_workflow, toml_to_workflow};

/// A workflow, checked and typed.
#[derive(Clone, Debug, Serialize)]
pub struct Workflow {
    /// Measured figures that replace the defaults of the cost model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<mgc_core::profile::Profile>,
    pub devices: Vec<DeviceSpec>,
    pub links: Vec<Link>,
    pub models: Vec<ModelSpec>,
    pub workload: Workload,
    /// Sampler steps and CFG, when the workflow gives them.
    pub sampling: Sampling,
    pub schedule: Schedule,
}

/// Where a device's figures come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Declared,
    Detected,
}

/// A device the plan may use.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceSpec {
    #[serde(rename = "name")]
    pub device: Device,
    pub memory: Bytes,
    pub reserve: Bytes,
    pub origin: Origin,
    /// Declared compute throughput, FLOP/s.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// The default throughput of its class of GPU (declared with `gpu`, or from the detected name).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class_flops: Option<f64>,
    /// The class of GPU those figures are of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub class: Option<&'static str>,
    /// Where the device is declared in the workflow file.
    #[serde(skip)]
    pub span: Option<Span>,
}

/// The least a GPU keeps back when the workflow gives no `reserve`: ComfyUI's own
/// `EXTRA_RESERVED_VRAM` (400 MiB on Linux), rounded up. The CUDA context and libtorch are not in
/// it: they are the runtime's own memory, which every predicted peak counts apart (measured by
/// `mgc probe`, else a declared default).
pub const MIN_GPU_RESERVE: u64 = 512 << 20;

/// A device's reserve when the workflow gives none: for a GPU, the larger of
/// [`MIN_GPU_RESERVE`] and 2% of its memory (the caching allocator's fragmentation grows with
/// the pool; mistral.rs keeps back max(2%, 512 MiB) for the same reasons); nothing for the CPU.
pub fn default_reserve(device: Device, memory: Bytes) -> Bytes {
    if device.is_accelerator() { Bytes(MIN_GPU_RESERVE.max(memory.get() / 50).min(memory.get())) } else { Bytes(0) }
}

impl DeviceSpec {
    /// The memory plans may use: the total less the reserve.
    pub const fn usable(&self) -> Bytes {
        Bytes(self.memory.get().saturating_sub(self.reserve.get()))
    }
}

/// The kinds of link with a known bandwidth: measured figures from DisTorch's benchmarks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkKind {
    Nvlink,
    Pcie4x16,
    Pcie3x16,
    Pcie3x8,
    Pcie3x4,
    /// GPU to GPU over PCIe 3.0 x8, without NVLink.
    Pcie3x8P2p,
}

impl LinkKind {
    pub const ALL: [Self; 6] =
        [Self::Nvlink, Self::Pcie4x16, Self::Pcie3x16, Self::Pcie3x8, Self::Pcie3x4, Self::Pcie3x8P2p];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Nvlink => "nvlink",
            Self::Pcie4x16 => "pcie4x16",
            Self::Pcie3x16 => "pcie3x16",
            Self::Pcie3x8 => "pcie3x8",
            Self::Pcie3x4 => "pcie3x4",
            Self::Pcie3x8P2p => "pcie3x8-p2p",
        }
    }

    /// The measured bandwidth of this kind of link.
    pub const fn bandwidth(self) -> Bandwidth {
        Bandwidth(match self {
            Self::Nvlink => 50_800_000_000,
            Self::Pcie4x16 => 27_200_000_000,
            Self::Pcie3x16 => 15_800_000_000,
            Self::Pcie3x8 => 6_800_000_000,
            Self::Pcie3x4 => 2_100_000_000,
            Self::Pcie3x8P2p => 4_400_000_000,
        })
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name.to_ascii_lowercase())
    }
}

/// A connection between two devices.
#[derive(Clone, Debug, Serialize)]
pub struct Link {
    pub between: [Device; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<LinkKind>,
    pub bandwidth: Bandwidth,
}

/// How a model's resident layers are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// By the cost model, to minimise the step time.
    #[default]
    Auto,
    /// From the model's tail, as DisTorch does.
    Tail,
    /// From the model's head.
    Head,
}

/// A model of the workflow.
#[derive(Clone, Debug, Serialize)]
pub struct ModelSpec {
    pub name: String,
    /// The path as resolved against the workflow file's folder.
    pub file: PathBuf,
    pub compute: Device,
    #[serde(serialize_with = "serialize_allocation")]
    pub allocation: Allocation,
    pub placement: Placement,
    /// `allocation = "auto"`, or no allocation and no virtual VRAM: the compiler picks the budgets
    /// (the budgets stage, to minimise the step time within every device's memory). `allocation`
    /// is then everything on the compute device, the budgets when it all fits.
    #[serde(skip)]
    pub auto_budgets: bool,
    /// Where the allocation string sits in the workflow file, for errors found later.
    #[serde(skip)]
    pub allocation_span: Span,
    /// The offset of the allocation string's first character in the workflow file, when spans
    /// inside it map to the file one to one.
    #[serde(skip)]
    pub allocation_offset: Option<usize>,
}

fn serialize_allocation<S: serde::Serializer>(allocation: &Allocation, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(allocation)
}

/// How much work one step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Tokens per step, given directly.
    Tokens { tokens: u64, batch: u64 },
    /// An image or video size, turned into tokens per model family by the compiler.
    Resolution { width: u64, height: u64, frames: u64, batch: u64 },
}

/// The sampler's settings, as far as they change the work: steps, and whether CFG doubles each
/// step's batch. Unset, they take ComfyUI's defaults for the diffusion model's family.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Sampling {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cfg: Option<f64>,
    /// Text tokens of the prompt, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_tokens: Option<u64>,
    /// Where `frames` is written, for the checks that need the model's family.
    #[serde(skip)]
    pub frames_span: Option<Span>,
}

/// ComfyUI's KSampler default: 20 steps.
pub const DEFAULT_STEPS: u64 = 20;

impl Sampling {
    /// Steps of the run.
    pub fn steps(&self) -> u64 {
        self.steps.unwrap_or(DEFAULT_STEPS)
    }

    /// The CFG scale: given, or the one of ComfyUI's example workflow for the family — 1 for the
    /// guidance-distilled Flux and HunyuanVideo (their guidance is an input, not a second pass),
    /// Wan 6, Qwen-Image 2.5, SD3.5 4.5, else KSampler's default 8.
    pub fn cfg(&self, family: crate::inventory::Family) -> f64 {
        use crate::inventory::Family;
        self.cfg.unwrap_or(match family {
            Family::Flux | Family::HunyuanVideo => 1.0,
            Family::Wan21 | Family::Wan22 => 6.0,
            Family::QwenImage => 2.5,
            Family::Sd3 => 4.5,
            _ => 8.0,
        })
    }

    /// Passes a step runs: ComfyUI batches the unconditional pass with the conditional one
    /// whenever the scale is not 1.
    pub fn passes(&self, family: crate::inventory::Family) -> u64 {
        if (self.cfg(family) - 1.0).abs() < f64::EPSILON { 1 } else { 2 }
    }
}

/// How many layers ahead copies are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Prefetch {
    Auto,
    Layers(u32),
}

/// How copies are issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Schedule {
    pub prefetch: Prefetch,
    /// Consecutive streamed layers smaller than this are copied together.
    pub batch_below: Bytes,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { prefetch: Prefetch::Auto, batch_below: Bytes(32 << 20) }
    }
}
