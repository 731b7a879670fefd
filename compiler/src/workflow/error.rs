//! Errors in a workflow file: a kind and a span into the file.

use std::fmt;

use mgc_core::Span;
use mgc_grammar::AllocationError;
use miette::{Diagnostic, LabeledSpan};
use thiserror::Error;

/// One problem in a workflow file and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct SpecError {
    pub kind: SpecErrorKind,
    pub span: Span,
}

impl SpecError {
    pub const fn new(kind: SpecErrorKind, span: Span) -> Self {
        Self { kind, span }
    }
}

/// What is wrong. Messages are lowercase and quote the user's text in backticks.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SpecErrorKind {
    #[error("{message}")]
    Toml { message: String },
    #[error("in the allocation of model `{model}`: {error}")]
    Allocation { model: String, error: AllocationError },
    #[error("{error}")]
    Value { error: AllocationError },
    #[error("device `{device}` is declared twice")]
    DuplicateDevice { device: String, first: Span },
    #[error("`disk` is not declared: it is the model file itself")]
    DiskDeclared,
    #[error("reserve {reserve} is more than the memory {memory} of `{device}`")]
    ReserveTooLarge { device: String, reserve: String, memory: String },
    #[error("device `{device}` has no memory")]
    NoMemory { device: String },
    #[error("device `{device}` is not declared")]
    Undeclared { device: String, declared: Vec<String>, also: Vec<Span> },
    #[error("device `{device}` is not on this machine")]
    NotDetected { device: String, detected: Vec<String>, notes: Vec<String>, also: Vec<Span> },
    #[error("`disk` cannot compute")]
    DiskCompute,
    #[error("a link joins two devices, not {count}")]
    LinkArity { count: usize },
    #[error("a link from `{device}` to itself")]
    LinkToItself { device: String },
    #[error("a link to `disk`")]
    LinkToDisk,
    #[error("the link between `{a}` and `{b}` is given twice")]
    DuplicateLink { a: String, b: String, first: Span },
    #[error("a link needs a `kind` or a `bandwidth`")]
    LinkWithoutRate,
    #[error("a link has both a `kind` and a `bandwidth`")]
    LinkWithBoth,
    #[error("unknown link kind `{kind}`")]
    UnknownLinkKind { kind: String, suggestion: Option<String> },
    #[error("model `{name}` is declared twice")]
    DuplicateModel { name: String, first: Span },
    #[error("a model name is empty")]
    EmptyName,
    #[error("model file `{path}` does not exist")]
    MissingFile { path: String },
    #[error("model file `{path}` is not a file")]
    NotAFile { path: String },
    #[error("unknown placement `{placement}`")]
    UnknownPlacement { placement: String },
    #[error("the workflow has no `[[model]]`")]
    NoModels,
    #[error("`{key}` must be positive")]
    NotPositive { key: &'static str },
    #[error("give `tokens` or `resolution`, not both")]
    TokensAndResolution,
    #[error("`resolution` is `[width, height]`")]
    ResolutionShape,
    #[error("prefetch must be `\"auto\"` or a number of layers")]
    BadPrefetch,
    #[error("unknown class of GPU `{gpu}`")]
    UnknownGpu { gpu: String },
    #[error("cannot read the hardware profile `{path}`: {error}")]
    UnreadableProfile { path: String, error: mgc_core::ReadError },
    #[error("cannot read the hardware profile `{path}`: {error}")]
    BadProfile { path: String, error: mgc_core::profile::ProfileError },
    #[error(
        "the allocation of model `{model}` is for compute device `{written}`, but the model computes on `{compute}`"
    )]
    ComputeMismatch { model: String, written: String, compute: String },
    #[error("model `{model}` has both `allocation` and `virtual_vram`")]
    AllocationAndVirtualVram { model: String },
    #[error("`donor` without `virtual_vram`")]
    DonorWithoutVirtualVram,
    #[error("`donor` is a device or a list of devices")]
    BadDonor,
}

impl SpecErrorKind {
    fn label(&self) -> String {
        match self {
            Self::Toml { .. } => "here".into(),
            Self::Allocation { error, .. } | Self::Value { error } => error.kind.label(),
            Self::DuplicateDevice { .. } | Self::DuplicateModel { .. } | Self::DuplicateLink { .. } => {
                "again here".into()
            }
            Self::Undeclared { .. } => "not among the `[[device]]` tables".into(),
            Self::NotDetected { .. } => "not detected".into(),
            Self::MissingFile { .. } | Self::NotAFile { .. } => "this path".into(),
            Self::UnknownLinkKind { .. } => "not a link kind".into(),
            Self::ComputeMismatch { .. } => "this compute device".into(),
            _ => "here".into(),
        }
    }

    fn help(&self) -> Option<String> {
        Some(match self {
            Self::Toml { .. } | Self::LinkToItself { .. } | Self::EmptyName => return None,
            Self::Allocation { error, .. } | Self::Value { error } => return error.kind.help(),
            Self::DuplicateDevice { .. } => "declare each device once".into(),
            Self::DiskDeclared => {
                "remove this `[[device]]`; use `disk` in an allocation to stream layers from the file".into()
            }
            Self::ReserveTooLarge { .. } => "the reserve is kept free out of the device's memory".into(),
            Self::NoMemory { .. } => "give the device's memory, as in `memory = \"24gb\"`".into(),
            Self::Undeclared { device, declared, .. } => {
                format!("declared devices are {}; add a `[[device]]` with `name = \"{device}\"`", quoted_list(declared))
            }
            Self::NotDetected { device, detected, notes, .. } => {
                let mut help = format!("this machine has {}", quoted_list(detected));
                for note in notes {
                    help.push_str(&format!(" ({note})"));
                }
                help.push_str(&format!(
                    "; to plan for another machine, declare its devices: `[[device]]` with `name = \"{device}\"` and `memory`"
                ));
                help
            }
            Self::DiskCompute => "compute on `cuda:N`, `cpu` or another device; `disk` can only hold layers".into(),
            Self::LinkArity { .. } => "write `between = [\"cpu\", \"cuda:0\"]`".into(),
            Self::LinkToDisk => "the disk's read speed is measured by `mgc probe`, not declared as a link".into(),
            Self::DuplicateLink { .. } => "give each pair of devices one link".into(),
            Self::LinkWithoutRate | Self::LinkWithBoth => format!(
                "write `kind = \"pcie4x16\"` (one of {}) or `bandwidth = \"27.2GB/s\"`",
                quoted_list(&crate::workflow::LinkKind::ALL.map(|k| k.name().to_owned()))
            ),
            Self::UnknownLinkKind { suggestion: Some(s), .. } => format!("did you mean `{s}`?"),
            Self::UnknownLinkKind { suggestion: None, .. } => format!(
                "link kinds are {}; or give `bandwidth = \"27.2GB/s\"`",
                quoted_list(&crate::workflow::LinkKind::ALL.map(|k| k.name().to_owned()))
            ),
            Self::DuplicateModel { .. } => "give each model its own name".into(),
            Self::MissingFile { .. } => "paths are relative to the workflow file".into(),
            Self::NotAFile { .. } => "give the path of a `.safetensors` or `.gguf` file".into(),
            Self::UnknownPlacement { .. } => "placement is `\"auto\"`, `\"tail\"` (as DisTorch) or `\"head\"`".into(),
            Self::NoModels => "add a `[[model]]` with `name`, `file` and `compute`".into(),
            Self::NotPositive { .. } => "give a number above zero".into(),
            Self::TokensAndResolution => {
                "`tokens` sets the work per step directly; `resolution` derives it from the model".into()
            }
            Self::ResolutionShape => "write `resolution = [1024, 1024]`".into(),
            Self::BadPrefetch => "write `prefetch = \"auto\"` or `prefetch = 2`".into(),
            Self::UnknownGpu { .. } => format!(
                "known classes: {}; or give `tflops`",
                crate::compile::cost::class_names()
                    .map(|c| format!("`{}`", c.replace(' ', "")))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::ComputeMismatch { written, compute, .. } => {
                format!("write `#{compute}` in the allocation, or `compute = \"{written}\"`")
            }
            Self::AllocationAndVirtualVram { .. } => {
                "`virtual_vram` and `donor` say what `allocation = \"#cuda:0;4.0;cpu\"` says: keep one".into()
            }
            Self::DonorWithoutVirtualVram => {
                "add `virtual_vram = \"4gb\"`, the part of the model the donors hold, or remove `donor`".into()
            }
            Self::BadDonor => {
                "write `donor = \"cpu\"`, or `donor = [\"cuda:1\", \"cpu\"]` to fill them in order".into()
            }
            Self::UnreadableProfile { .. } | Self::BadProfile { .. } => {
                "`mgc probe -o FILE` writes a profile; paths are relative to the workflow file".into()
            }
        })
    }

    fn related(&self) -> Vec<(Span, &'static str)> {
        match self {
            Self::DuplicateDevice { first, .. }
            | Self::DuplicateModel { first, .. }
            | Self::DuplicateLink { first, .. } => {
                vec![(*first, "first here")]
            }
            Self::Allocation { error, .. } | Self::Value { error } => error.related_spans(),
            Self::Undeclared { also, .. } | Self::NotDetected { also, .. } => {
                also.iter().map(|span| (*span, "also used here")).collect()
            }
            _ => Vec::new(),
        }
    }
}

fn quoted_list(items: &[String]) -> String {
    if items.is_empty() {
        return "none".into();
    }
    items.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
}

impl Diagnostic for SpecError {
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind.help().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(Some(self.kind.label()), self.span);
        let related =
            self.kind.related().into_iter().map(|(span, text)| LabeledSpan::new_with_span(Some(text.to_owned()), span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}
