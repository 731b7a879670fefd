//! The workflow file as written: raw serde types that mirror the TOML, every value with its span.
//!
//! Tables are explicit (no flatten, no untagged enums) so that `toml::Spanned` keeps its spans.

use mgc_core::Span;
use serde::Deserialize;
use toml::Spanned;

use crate::workflow::{SpecError, SpecErrorKind};

/// A workflow file: devices, links, models, workload, schedule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkflow {
    /// A hardware profile written by `mgc probe`, relative to the workflow file.
    pub profile: Option<Spanned<String>>,
    #[serde(default)]
    pub device: Vec<Spanned<RawDevice>>,
    #[serde(default)]
    pub link: Vec<Spanned<RawLink>>,
    #[serde(default)]
    pub model: Vec<Spanned<RawModel>>,
    pub workload: Option<Spanned<RawWorkload>>,
    pub schedule: Option<Spanned<RawSchedule>>,
}

/// `[[device]]`: a device the plan may use, and its memory.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDevice {
    pub name: Spanned<String>,
    pub memory: Spanned<String>,
    /// Kept free for other programs and fragmentation, out of `memory`.
    pub reserve: Option<Spanned<String>>,
    /// Compute throughput at the models' dtype, in TFLOP/s (default: by class, then kind).
    pub tflops: Option<Spanned<f64>>,
    /// The class of GPU, such as `rtx4090` or `h100`, for its default throughput.
    pub gpu: Option<Spanned<String>>,
}

/// `[[link]]`: how two devices are connected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLink {
    pub between: Spanned<Vec<Spanned<String>>>,
    pub kind: Option<Spanned<String>>,
    pub bandwidth: Option<Spanned<String>>,
}

/// `[[model]]`: a model file, where it computes and how it is spread.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: Spanned<String>,
    pub file: Spanned<String>,
    pub compute: Spanned<String>,
    pub allocation: Option<Spanned<String>>,
    /// DisTorch's `virtual_vram_gb`: how much of the model the donors hold, as a size (`"4gb"`).
    pub virtual_vram: Option<Spanned<String>>,
    /// The donor device, or a list of them filled in order (default `cpu`).
    pub donor: Option<Spanned<toml::Value>>,
    pub placement: Option<Spanned<String>>,
}

/// `[workload]`: how much work one step does.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWorkload {
    pub tokens: Option<Spanned<i64>>,
    pub resolution: Option<Spanned<Vec<Spanned<i64>>>>,
    pub frames: Option<Spanned<i64>>,
    pub batch: Option<Spanned<i64>>,
    /// The prompt's length in tokens, where the family's default (its tokenizer's padding) is not it.
    pub text_tokens: Option<Spanned<i64>>,
    /// Sampler steps of the whole run.
    pub steps: Option<Spanned<i64>>,
    /// Classifier-free guidance scale: above 1, every step also runs the unconditional pass.
    pub cfg: Option<Spanned<toml::Value>>,
}

/// `[schedule]`: how copies are issued.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// `"auto"` or a number of layers.
    pub prefetch: Option<Spanned<toml::Value>>,
    pub batch_below: Option<Spanned<String>>,
}

/// Parses a workflow file's text into its raw form.
pub fn toml_to_spec(source: &str) -> Result<RawWorkflow, SpecError> {
    toml::from_str(source).map_err(|error| {
        let span = error.span().map_or(Span::new(0, 0), |r| Span::new(r.start, r.end));
        let message = error.message().trim_end_matches('\n').to_owned();
        SpecError::new(SpecErrorKind::Toml { message }, span)
    })
}

/// The span of a value in the file.
pub fn span_of<T>(value: &Spanned<T>) -> Span {
    let range = value.span();
    Span::new(range.start, range.end)
}

/// Where the text of a string value starts in the file, when its characters map one to one (no
/// escapes), so that a span inside the string can be moved to a span inside the file.
pub fn string_content_offset(source: &str, value: &Spanned<String>) -> Option<usize> {
    let span = span_of(value);
    let raw = source.get(span.range())?;
    for quote in ["\"\"\"", "'''", "\"", "'"] {
        if let Some(inner) = raw.strip_prefix(quote).and_then(|r| r.strip_suffix(quote)) {
            let inner_start = span.start + quote.len();
            // A multi-line string drops a newline right after the opening quotes.
            let (inner, inner_start) = match inner.strip_prefix('\n') {
                Some(rest) if quote.len() == 3 => (rest, inner_start + 1),
                _ => (inner, inner_start),
            };
            return (inner == value.get_ref().as_str()).then_some(inner_start);
        }
    }
    None
}
