//! Diagnostics for people (miette, colour only on a terminal) and for programs (JSON). Every
//! stage's errors are diagnostics of their own; this is the only place they become text.

use std::fmt;
use std::io::{IsTerminal as _, Write};

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode,
    SourceSpan, SpanContents,
};
use serde::Serialize;

use crate::args::Format;

/// The text errors point into, and its name as the user gave it (`allocation` for a string).
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    pub name: &'a str,
    pub text: &'a str,
}

/// Writes `errors` as `format` asks: JSON on `out`, or diagnostics for people on `err`. Errors
/// that are equal are written once.
pub fn report<D: Diagnostic + PartialEq>(
    format: Format,
    source: Option<Source<'_>>,
    errors: &[D],
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    let errors: Vec<&dyn Diagnostic> = unique(errors).into_iter().map(|e| e as &dyn Diagnostic).collect();
    match format {
        Format::Json => out.write_all(json_text(&json_errors(source, &errors)).as_bytes()),
        Format::Human => err.write_all(human(source, &errors).as_bytes()),
    }
}

/// Renders each diagnostic against its source text, as a person reads it: in colour when stderr
/// is a terminal and `NO_COLOR` is unset.
pub fn human(source: Option<Source<'_>>, errors: &[&dyn Diagnostic]) -> String {
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    human_in(source, errors, colour)
}

/// Errors that are equal, once each, in their order.
pub fn unique<D: PartialEq>(errors: &[D]) -> Vec<&D> {
    let mut unique: Vec<&D> = Vec::new();
    for error in errors {
        if !unique.contains(&error) {
            unique.push(error);
        }
    }
    unique
}

/// [`human`], with or without colour as asked.
pub fn human_in(source: Option<Source<'_>>, errors: &[&dyn Diagnostic], colour: bool) -> String {
    let theme = if colour { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100);
    let mut text = String::new();
    for (i, error) in errors.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let shown = Shown::new(*error, source);
        if handler.render_report(&mut text, &shown).is_err() {
            text.push_str(&format!("error: {error}\n"));
        }
    }
    if let Some(source) = source {
        let count = errors.len();
        text.push_str(&format!("{count} problem{} in {}\n", if count == 1 { "" } else { "s" }, source.name));
    }
    text
}

/// One error as JSON: what, where, and what to do. `span` holds byte offsets into the input;
/// `line` and `column` (1-based, columns in characters) are where the span starts, `end_line` and
/// `end_column` where it ends (exclusive). Errors about no place in a file have none of these.
#[derive(Debug, Serialize)]
pub struct JsonError {
    pub message: String,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub location: Option<JsonLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

/// Where a JSON error is.
#[derive(Debug, Serialize)]
pub struct JsonLocation {
    pub file: String,
    pub span: [usize; 2],
    pub line: usize,
    pub column: usize,
    pub end_line: usize,
    pub end_column: usize,
}

impl JsonError {
    pub fn new(error: &dyn Diagnostic, source: Option<Source<'_>>) -> Self {
        let primary =
            error.labels().and_then(|mut labels| labels.find(LabeledSpan::primary).or_else(|| error.labels()?.next()));
        let location = source.zip(primary.as_ref()).map(|(source, label)| {
            let (start, end) = (label.offset(), label.offset() + label.len());
            let (line, column) = line_column(source.text, start);
            let (end_line, end_column) = line_column(source.text, end);
            JsonLocation { file: source.name.to_owned(), span: [start, end], line, column, end_line, end_column }
        });
        Self {
            message: error.to_string(),
            location,
            label: primary.and_then(|l| l.label().map(str::to_owned)),
            help: error.help().map(|h| h.to_string()),
        }
    }
}

/// `{"errors": [...]}`.
pub fn json_errors(source: Option<Source<'_>>, errors: &[&dyn Diagnostic]) -> serde_json::Value {
    let list: Vec<JsonError> = errors.iter().map(|e| JsonError::new(*e, source)).collect();
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

/// The 1-based line and column (in characters) of a byte offset; an offset inside a character
/// counts as that character.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = text.get(..at).unwrap_or_default();
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).unwrap_or_default().chars().count();
    (before.matches('\n').count() + 1, column + 1)
}

/// The widest source line shown whole, in characters; longer lines are cut around what the
/// labels point at.
const WIDEST_LINE: usize = 120;
/// Characters kept on each side of a label's ends on a cut line.
const AROUND: usize = 40;

/// A diagnostic as it is shown: its labels moved into the source as cut for showing.
struct Shown<'a> {
    inner: &'a dyn Diagnostic,
    labels: Vec<LabeledSpan>,
    source: Option<Cut<'a>>,
}

impl<'a> Shown<'a> {
    fn new(inner: &'a dyn Diagnostic, source: Option<Source<'a>>) -> Self {
        let labels: Vec<LabeledSpan> = inner.labels().map(Iterator::collect).unwrap_or_default();
        let Some(source) = source.filter(|_| !labels.is_empty()) else {
            return Self { inner, labels, source: None };
        };
        let mut ends: Vec<usize> = labels.iter().flat_map(|l| [l.offset(), l.offset() + l.len()]).collect();
        ends.sort_unstable();
        let cut = Cut::new(source, &ends);
        let labels = labels
            .into_iter()
            .map(|l| {
                let start = cut.to_cut(l.offset());
                let end = cut.to_cut(l.offset() + l.len()).max(start);
                let span = SourceSpan::new(start.into(), end - start);
                if l.primary() {
                    LabeledSpan::new_primary_with_span(l.label().map(str::to_owned), span)
                } else {
                    LabeledSpan::new_with_span(l.label().map(str::to_owned), span)
                }
            })
            .collect();
        Self { inner, labels, source: Some(cut) }
    }
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.inner, f)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.inner, f)
    }
}

impl std::error::Error for Shown<'_> {}

impl Diagnostic for Shown<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.code()
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.help()
    }

    fn url<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.inner.url()
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        (!self.labels.is_empty()).then(|| Box::new(self.labels.iter().cloned()) as Box<dyn Iterator<Item = _>>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }
}

/// The source as shown: each line longer than [`WIDEST_LINE`] cut to windows around the labels'
/// ends on it, the cuts marked `…`. Line numbers are the file's, and so are the columns shown.
#[derive(Debug)]
struct Cut<'a> {
    name: String,
    original: &'a str,
    text: String,
    /// Runs of the original kept whole: (original start, original end, start in `text`).
    pieces: Vec<(usize, usize, usize)>,
}

impl<'a> Cut<'a> {
    fn new(source: Source<'a>, ends: &[usize]) -> Self {
        let mut cut =
            Self { name: source.name.to_owned(), original: source.text, text: String::new(), pieces: Vec::new() };
        let mut line_start = 0;
        for line in source.text.split_inclusive('\n') {
            let line_end = line_start + line.len();
            let content = line.trim_end_matches(['\n', '\r']);
            let content_end = line_start + content.len();
            if content.chars().count() <= WIDEST_LINE {
                cut.keep(line_start, line_end);
            } else {
                let mut points: Vec<usize> =
                    ends.iter().copied().filter(|&e| line_start <= e && e <= content_end).collect();
                if points.is_empty() {
                    points.push(line_start);
                }
                let mut windows: Vec<(usize, usize)> = Vec::new();
                for point in points {
                    let from = step_back(content, point - line_start, AROUND) + line_start;
                    let to = step_forward(content, point - line_start, AROUND) + line_start;
                    match windows.last_mut() {
                        Some(last) if from <= last.1 => last.1 = last.1.max(to),
                        _ => windows.push((from, to)),
                    }
                }
                let mut at = line_start;
                for (from, to) in windows {
                    if from > at {
                        cut.text.push('…');
                    }
                    cut.keep(from, to);
                    at = to;
                }
                if at < content_end {
                    cut.text.push('…');
                }
                cut.keep(content_end, line_end);
            }
            line_start = line_end;
        }
        cut
    }

    fn keep(&mut self, from: usize, to: usize) {
        if let Some(run) = self.original.get(from..to) {
            self.pieces.push((from, to, self.text.len()));
            self.text.push_str(run);
        }
    }

    /// Where an offset of the original is in the cut text.
    fn to_cut(&self, offset: usize) -> usize {
        let piece = self.pieces.iter().find(|(from, to, _)| *from <= offset && offset <= *to);
        piece.map_or(self.text.len(), |(from, _, at)| at + (offset - from))
    }

    /// Where an offset of the cut text is in the original.
    fn to_original(&self, offset: usize) -> usize {
        let piece = self.pieces.iter().find(|(from, to, at)| *at <= offset && offset <= at + (to - from));
        piece.map_or(self.original.len(), |(from, _, at)| from + (offset - at))
    }
}

/// The byte index `chars` characters before `at` in `text`, or its start.
fn step_back(text: &str, at: usize, chars: usize) -> usize {
    text.get(..at).and_then(|before| before.char_indices().rev().nth(chars.saturating_sub(1))).map_or(0, |(i, _)| i)
}

/// The byte index `chars` characters after `at` in `text`, or its end.
fn step_forward(text: &str, at: usize, chars: usize) -> usize {
    text.get(at..).and_then(|after| after.char_indices().nth(chars)).map_or(text.len(), |(i, _)| at + i)
}

impl SourceCode for Cut<'_> {
    fn read_span<'b>(
        &'b self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'b> + 'b>, MietteError> {
        let inner = self.text.read_span(span, context_lines_before, context_lines_after)?;
        // Columns count in the file as written, not in the cut line.
        let (_, column) = line_column(self.original, self.to_original(inner.span().offset()));
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            inner.line(),
            column - 1,
            inner.line_count(),
        )))
    }
}
