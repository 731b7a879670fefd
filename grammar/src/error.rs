//! Errors of the allocation language: plain data, a kind and a span, rendered at the edge.

use std::fmt;

use miette::{Diagnostic, LabeledSpan};
use thiserror::Error;

use crate::ast::Mode;
use mgc_core::Span;

/// One mistake in an allocation string (or a size or bandwidth), and where it is.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("{kind}")]
pub struct AllocationError {
    pub kind: AllocationErrorKind,
    pub span: Span,
}

impl AllocationError {
    pub const fn new(kind: AllocationErrorKind, span: Span) -> Self {
        Self { kind, span }
    }

    /// The same error, with every span moved `by` bytes: for a string inside a larger file.
    #[must_use]
    pub fn shifted(mut self, by: usize) -> Self {
        self.span = self.span.shifted(by);
        self.kind = self.kind.shifted(by);
        self
    }

    /// The same error with every span, secondary ones included, set to `span`: for a string whose
    /// characters cannot be mapped into the file one to one (it has escapes).
    #[must_use]
    pub fn collapsed_to(mut self, span: Span) -> Self {
        self.span = span;
        self.kind = match self.kind {
            AllocationErrorKind::DuplicateDevice { device, .. } => {
                AllocationErrorKind::DuplicateDevice { device, first: span }
            }
            AllocationErrorKind::MultipleRest { .. } => AllocationErrorKind::MultipleRest { first: span },
            AllocationErrorKind::MixedModes { this, first, .. } => {
                AllocationErrorKind::MixedModes { this, first, first_span: span }
            }
            other => other,
        };
        self
    }

    /// The secondary places the error refers to, such as the first mention of a duplicate.
    pub fn related_spans(&self) -> Vec<(Span, &'static str)> {
        let mut related = match &self.kind {
            AllocationErrorKind::DuplicateDevice { first, .. } => {
                vec![(*first, "first given here")]
            }
            AllocationErrorKind::MultipleRest { first } => vec![(*first, "first `*` here")],
            AllocationErrorKind::MixedModes { first_span, .. } => {
                vec![(*first_span, "the first amount sets the mode")]
            }
            _ => Vec::new(),
        };
        related.retain(|(span, _)| *span != self.span);
        related
    }
}

/// What is wrong. Messages are lowercase and quote the user's text in backticks.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AllocationErrorKind {
    #[error("the allocation string is empty")]
    Empty,
    #[error("empty entry")]
    EmptyEntry,
    #[error("`{text}` has no device")]
    MissingDevice { text: String },
    #[error("unknown device `{name}`")]
    UnknownDevice { name: String, suggestion: Option<String> },
    #[error("device `{name}` needs a number")]
    MissingOrdinal { name: String },
    #[error("device `{name}` takes no number")]
    UnexpectedOrdinal { name: String },
    #[error("device `{name}` must be written in lowercase")]
    UppercaseDevice { name: String },
    #[error("device number `{text}` is too large")]
    OrdinalTooLarge { text: String },
    #[error("`{device}` has no amount")]
    MissingAmount { device: String },
    #[error("`=` between device and amount")]
    EqualsSeparator,
    #[error("no `,` between device `{device}` and `{amount}`")]
    MissingComma { device: String, amount: String },
    #[error("unknown unit `{unit}`")]
    UnknownUnit { unit: String, suggestion: Option<String> },
    #[error("a size needs a unit: `{text}`")]
    MissingUnit { text: String },
    #[error("amount `{text}` is not positive")]
    NotPositive { text: String },
    #[error("`{text}` is less than one byte")]
    LessThanOneByte { text: String },
    #[error("amount `{text}` is too large")]
    TooLarge { text: String },
    #[error("fraction `{text}` is outside (0, 1]")]
    FractionOutOfRange { text: String, as_bytes: Option<String> },
    #[error("a share of `{text}` is more than the whole model")]
    PercentOver100 { text: String },
    #[error("stray characters `{text}`")]
    Stray { text: String },
    #[error("entries are separated by `;`, not `,`")]
    CommaBetweenEntries { text: String },
    #[error("device `{device}` appears twice")]
    DuplicateDevice { device: String, first: Span },
    #[error("more than one `*`")]
    MultipleRest { first: Span },
    #[error("{this} mixed with {first}")]
    MixedModes { this: Mode, first: Mode, first_span: Span },
    #[error("shares add up to {sum}%, leaving nothing for `*`")]
    SharesLeaveNothing { sum: String },
    #[error("no compute device after `#`")]
    MissingCompute,
    #[error("nothing before `#` and no virtual vram after the compute device")]
    NothingAroundHash,
    #[error("no virtual vram amount")]
    MissingVirtualVram,
    #[error("no donor device for the virtual vram")]
    MissingDonor,
    #[error("donor `{device}` is the compute device")]
    DonorIsCompute { device: String },
    #[error("virtual vram `{text}` is not an amount of memory")]
    BadVirtualVram { text: String },
    #[error("a `*` entry has no share to take in a bare fraction")]
    BareWithRest,
    #[error("cannot read `{text}` as a bandwidth")]
    BadBandwidth { text: String },
    #[error("unknown bandwidth unit `{unit}`")]
    UnknownRateUnit { unit: String },
    #[error("cannot read `{text}` as a size")]
    BadSize { text: String },
}

impl AllocationErrorKind {
    fn shifted(self, by: usize) -> Self {
        match self {
            Self::DuplicateDevice { device, first } => Self::DuplicateDevice { device, first: first.shifted(by) },
            Self::MultipleRest { first } => Self::MultipleRest { first: first.shifted(by) },
            Self::MixedModes { this, first, first_span } => {
                Self::MixedModes { this, first, first_span: first_span.shifted(by) }
            }
            other => other,
        }
    }

    /// The short text under the caret.
    pub fn label(&self) -> String {
        match self {
            Self::Empty => "nothing here".into(),
            Self::EmptyEntry => "nothing between these `;`".into(),
            Self::MissingDevice { .. } => "which device?".into(),
            Self::UnknownDevice { .. } => "not a device".into(),
            Self::MissingOrdinal { .. } | Self::UnexpectedOrdinal { .. } | Self::UppercaseDevice { .. } => {
                "this device".into()
            }
            Self::OrdinalTooLarge { .. } => "this number".into(),
            Self::MissingAmount { .. } => "how much?".into(),
            Self::EqualsSeparator => "use `,` here".into(),
            Self::MissingComma { .. } => "`,` missing here".into(),
            Self::UnknownUnit { .. } => "not a unit".into(),
            Self::MissingUnit { .. } => "bytes? megabytes? gigabytes?".into(),
            Self::NotPositive { .. } | Self::LessThanOneByte { .. } | Self::TooLarge { .. } => "this amount".into(),
            Self::FractionOutOfRange { .. } => "a fraction of the device's memory".into(),
            Self::PercentOver100 { .. } => "this share".into(),
            Self::Stray { .. } => "not understood".into(),
            Self::CommaBetweenEntries { .. } => "a new entry starts here".into(),
            Self::DuplicateDevice { .. } => "given again here".into(),
            Self::MultipleRest { .. } => "second `*`".into(),
            Self::MixedModes { this, .. } => format!("{this} here"),
            Self::SharesLeaveNothing { .. } => "these shares".into(),
            Self::MissingCompute => "which device computes?".into(),
            Self::NothingAroundHash => "a compute device alone".into(),
            Self::MissingVirtualVram => "how many gigabytes?".into(),
            Self::MissingDonor => "which device holds them?".into(),
            Self::DonorIsCompute { .. } => "this donor".into(),
            Self::BadVirtualVram { .. } => "this amount".into(),
            Self::BareWithRest => "here".into(),
            Self::BadBandwidth { .. } | Self::BadSize { .. } => "here".into(),
            Self::UnknownRateUnit { .. } => "not a bandwidth unit".into(),
        }
    }

    /// What to write instead.
    pub fn help(&self) -> Option<String> {
        let units = "units are `b`, `kb`, `mb`, `gb`, `tb` (binary: `1gb` is 1024 mb), also `k`/`kib`, `m`/`mib`, `g`/`gib`, `t`/`tib`";
        Some(match self {
            Self::Empty => "write entries like `cuda:0,8gb;cpu,*`".into(),
            Self::EmptyEntry => "remove the extra `;`".into(),
            Self::MissingDevice { text } => format!("write the device first, as in `cuda:0,{}`", text.trim()),
            Self::UnknownDevice { suggestion: Some(s), .. } => format!("did you mean `{s}`?"),
            Self::UnknownDevice { suggestion: None, .. } => {
                "devices are `cpu`, `cuda:N`, `mps`, `xpu:N`, `npu:N`, `hip:N`, `directml:N` and `disk`".into()
            }
            Self::MissingOrdinal { name } => format!("write `{name}:0` for the first one"),
            Self::UnexpectedOrdinal { name } => format!("write `{name}`"),
            Self::UppercaseDevice { name } => format!("write `{}`", name.to_ascii_lowercase()),
            Self::OrdinalTooLarge { .. } => return None,
            Self::MissingAmount { device } => format!("write `{device},8gb` for bytes, `{device},50%` for a share, or `{device},*` for the rest"),
            Self::EqualsSeparator => "write `device,amount`, as in `cuda:0,8gb`".into(),
            Self::MissingComma { device, amount } => format!("write `{device},{amount}`"),
            Self::UnknownUnit { suggestion: Some(s), .. } => format!("did you mean `{s}`? {units}"),
            Self::UnknownUnit { suggestion: None, .. } => units.into(),
            Self::MissingUnit { text } => format!("write `{text}gb` for gigabytes or `{text}b` for bytes"),
            Self::NotPositive { .. } => "give the device a positive amount, or leave it out".into(),
            Self::LessThanOneByte { .. } => "give at least one byte, or leave the device out".into(),
            Self::TooLarge { .. } => "no device holds that much".into(),
            Self::FractionOutOfRange { as_bytes: Some(b), .. } => {
                format!("a number without unit is a fraction of the device's memory; for gigabytes write `{b}`")
            }
            Self::FractionOutOfRange { as_bytes: None, .. } => {
                "a number without unit is a fraction of the device's memory, above 0 and at most 1".into()
            }
            Self::PercentOver100 { .. } => "shares are of the whole model: at most 100%".into(),
            Self::Stray { .. } => "an entry is `device,amount`, as in `cuda:0,8gb`; entries are separated by `;`".into(),
            Self::CommaBetweenEntries { text } => format!("write `;{}`", text.trim_start_matches(',').trim()),
            Self::DuplicateDevice { .. } => "give each device one entry".into(),
            Self::MultipleRest { .. } => "only one device can take the rest of the model".into(),
            Self::MixedModes { .. } => {
                "one string uses one kind of amount: bytes (`8gb`), shares of the model (`25%`) or fractions of device memory (`0.5`); `*` goes with any".into()
            }
            Self::MissingCompute => "write the device the model computes on after `#`, as in `cuda:0,8gb;cpu,*#cuda:0`".into(),
            Self::NothingAroundHash => {
                "write entries before `#`, as in `cuda:0,8gb;cpu,*#cuda:0`, or virtual vram after it, as in `#cuda:0;4.0;cpu`".into()
            }
            Self::MissingVirtualVram => {
                "write the gigabytes to move off the compute device, as in `#cuda:0;4.0;cpu`".into()
            }
            Self::MissingDonor => "write the devices that hold the virtual vram, in order, as in `#cuda:0;4.0;cpu`".into(),
            Self::DonorIsCompute { .. } => "the donors hold what the compute device gives up: name other devices".into(),
            Self::BadVirtualVram { .. } => "write gigabytes, as in `4.0`, or a size, as in `4gb`".into(),
            Self::SharesLeaveNothing { .. } => "lower a share, or remove the `*` entry".into(),
            Self::BareWithRest => return None,
            Self::BadBandwidth { .. } | Self::UnknownRateUnit { .. } => {
                "write a bandwidth like `27.2GB/s` (decimal gigabytes per second); `MB/s`, `GiB/s` and `Gbit/s` work too".into()
            }
            Self::BadSize { .. } => format!("write a size like `24gb`; {units}"),
        })
    }
}

impl Diagnostic for AllocationError {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        None
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.kind.help().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(Some(self.kind.label()), self.span);
        let related = self
            .related_spans()
            .into_iter()
            .map(|(span, text)| LabeledSpan::new_with_span(Some(text.to_owned()), span));
        Some(Box::new(std::iter::once(primary).chain(related)))
    }
}
