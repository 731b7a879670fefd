//! Compile errors: the workflow's own, a model file's, or a plan that cannot work — each of the
//! last kind with a span into the workflow file.

use std::fmt;

use mgc_core::{Bytes, Span};
use miette::{Diagnostic, LabeledSpan};
use thiserror::Error;

use crate::inventory::InventoryError;
use crate::workflow::SpecError;

/// Anything that stops a workflow from becoming a plan: a diagnostic of its own stage, spans into
/// the workflow file (a model file's errors name their file and have no span).
#[derive(Clone, Debug, PartialEq, Eq, Error, Diagnostic)]
#[non_exhaustive]
pub enum CompileError {
    #[error(transparent)]
    #[diagnostic(transparent)]
    Spec(SpecError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Inventory(InventoryError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Problem(Problem),
}

/// A plan that cannot work, and the place in the workflow that asks for it.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct Problem {
    pub kind: ProblemKind,
    pub span: Span,
}

impl Problem {
    pub const fn new(kind: ProblemKind, span: Span) -> Self {
        Self { kind, span }
    }
}

/// What cannot work. Sizes are written exactly and in binary units.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ProblemKind {
    #[error("model `{model}`: `{file}` holds no tensors")]
    NoTensors { model: String, file: String },
    #[error("model `{model}` ({}) does not fit its allocation: the devices take {}, {} short", Bytes(*model_bytes), Bytes(*budgets), Bytes(*short))]
    DoesNotFit { model: String, model_bytes: u64, budgets: u64, short: u64 },
    #[error("model `{model}`: its layers do not pack into the budgets; {} of layers are left over (the largest {})", Bytes(*left), Bytes(*largest))]
    DoesNotPack { model: String, left: u64, largest: u64 },
    #[error("model `{model}` gives `{device}` {}, but `{device}` has {} to give", Bytes(*budget), Bytes(*usable))]
    BudgetOverDevice { model: String, device: String, budget: u64, usable: u64 },
    #[error("model `{model}`: a fraction of `disk` has no meaning")]
    FractionOfDisk { model: String },
    #[error("`frames` on an image model: `{family}` makes one image")]
    FramesOnImageModel { family: &'static str },
    #[error("`{family}` takes 4n+1 frames, not {frames}")]
    FramesNot4nPlus1 { family: &'static str, frames: u64, below: u64, above: u64 },
    #[error("`{device}` needs {} at its peak but has {}: {} short", Bytes(*peak), Bytes(*usable), Bytes(*short))]
    DeviceOverMemory { device: String, peak: u64, usable: u64, short: u64, parts: String },
}

impl ProblemKind {
    fn label(&self) -> String {
        match self {
            Self::DeviceOverMemory { .. } => "this device".into(),
            Self::FramesOnImageModel { .. } | Self::FramesNot4nPlus1 { .. } => "these frames".into(),
            _ => "this allocation".into(),
        }
    }

    fn help(&self) -> Option<String> {
        Some(match self {
            Self::NoTensors { .. } => "give the path of a model file".into(),
            Self::DoesNotFit { short, .. } => format!(
                "add `cpu,*` to keep the remaining {} in RAM (DisTorch did this silently), or give the devices {} more",
                Bytes(*short),
                Bytes(*short)
            ),
            Self::DoesNotPack { .. } => "layers are indivisible: give one device `*`, or a little more room".into(),
            Self::BudgetOverDevice { .. } => "lower the amount, or lower the device's `reserve`".into(),
            Self::FractionOfDisk { .. } => "give `disk` a size, a share, or `*`".into(),
            Self::FramesOnImageModel { .. } => "remove `frames`, or use `batch` for several images".into(),
            Self::FramesNot4nPlus1 { below, above, .. } => {
                format!(
                    "its VAE packs 4 frames into each latent frame after the first: write `frames = {below}` or `frames = {above}`"
                )
            }
            Self::DeviceOverMemory { parts, .. } => {
                format!("{parts}; keep fewer layers there, lower `prefetch`, or lower the `reserve`")
            }
        })
    }
}

impl Diagnostic for Problem {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind.help().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        Some(Box::new(std::iter::once(LabeledSpan::new_primary_with_span(Some(self.kind.label()), self.span))))
    }
}
