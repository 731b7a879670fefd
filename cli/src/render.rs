//! Diagnostics for people (miette, colour only on a terminal) and for programs (JSON).

use std::io::IsTerminal as _;

use miette::{Diagnostic, GraphicalReportHandler, GraphicalTheme, NamedSource};
use serde::Serialize;

/// Renders each diagnostic against its source text, as a person reads it.
pub fn human<D>(name: &str, source: &str, errors: &[D]) -> String
where
    D: Diagnostic + Clone + Send + Sync + 'static,
{
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if colour { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut text = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let report = miette::Report::new(error.clone()).with_source_code(NamedSource::new(name, source.to_owned()));
        if handler.render_report(&mut text, report.as_ref()).is_err() {
            text.push_str(&format!("error: {error}\n"));
        }
    }
    let count = errors.len();
    text.push_str(&format!("{count} problem{} in {name}\n", if count == 1 { "" } else { "s" }));
    text
}

/// One error as JSON: what, where (byte offsets into the input), and what to do.
#[derive(Debug, Serialize)]
pub struct JsonError {
    pub message: String,
    pub span: [usize; 2],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl JsonError {
    pub fn from_diagnostic<D: Diagnostic>(error: &D) -> Self {
        let primary = error
            .labels()
            .and_then(|mut labels| labels.find(miette::LabeledSpan::primary).or_else(|| error.labels()?.next()));
        let span = primary.as_ref().map_or([0, 0], |l| [l.offset(), l.offset() + l.len()]);
        Self {
            message: error.to_string(),
            span,
            label: primary.and_then(|l| l.label().map(str::to_owned)),
            help: error.help().map(|h| h.to_string()),
        }
    }
}

/// `{"errors": [...]}`.
pub fn json_errors<D: Diagnostic>(errors: &[D]) -> serde_json::Value {
    let list: Vec<JsonError> = errors.iter().map(JsonError::from_diagnostic).collect();
    serde_json::json!({ "errors": list })
}

/// Pretty JSON with a final newline.
pub fn json_text<T: Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// JSON for people who read long lists: the outer two levels broken across lines, each element
/// below them on one line of its own. Still JSON.
pub fn json_lines(value: &serde_json::Value) -> String {
    let mut text = String::new();
    layout(value, 0, &mut text);
    text.push('\n');
    text
}

fn layout(value: &serde_json::Value, depth: usize, text: &mut String) {
    use serde_json::Value;
    let compact = |v: &Value| serde_json::to_string(v).unwrap_or_default();
    let indent = "  ".repeat(depth + 1);
    let close = "  ".repeat(depth);
    match value {
        Value::Object(map) if depth < 2 && !map.is_empty() => {
            text.push_str("{\n");
            for (i, (key, v)) in map.iter().enumerate() {
                text.push_str(&format!("{indent}{}: ", compact(&Value::String(key.clone()))));
                layout(v, depth + 1, text);
                text.push_str(if i + 1 < map.len() { ",\n" } else { "\n" });
            }
            text.push_str(&format!("{close}}}"));
        }
        Value::Array(items) if depth < 2 && !items.is_empty() => {
            text.push_str("[\n");
            for (i, v) in items.iter().enumerate() {
                text.push_str(&indent);
                layout(v, depth + 1, text);
                text.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            text.push_str(&format!("{close}]"));
        }
        other => text.push_str(&compact(other)),
    }
}

/// A diagnostic with a span into a workflow file, of either stage.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Spanned {
    #[error(transparent)]
    Spec(mgc_compiler::workflow::SpecError),
    #[error(transparent)]
    Problem(mgc_compiler::compile::Problem),
}

impl Diagnostic for Spanned {
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        match self {
            Self::Spec(e) => e.help(),
            Self::Problem(e) => e.help(),
        }
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = miette::LabeledSpan> + '_>> {
        match self {
            Self::Spec(e) => e.labels(),
            Self::Problem(e) => e.labels(),
        }
    }
}
