pub mod check;
pub mod compile;
pub mod explain;
pub mod handover;
pub mod import;
pub mod inspect;
pub mod sweep;
pub mod synth;

use std::io::Write;
use std::path::Path;

use mgc_core::read::{PLAN_LIMIT, WORKFLOW_LIMIT, read_text};

use crate::Status;
use crate::args::Format;
use crate::error::CliError;
use crate::render;

/// Reports an error of the command line itself, and returns its status.
pub fn fail(error: CliError, format: Format, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let status = error.status();
    render::report(format, None, &[error], out, err)?;
    Ok(status)
}

/// Reads a workflow file. A JSON file (a plan, most often, given by mistake) is refused before
/// the TOML parser sees it, so that no error quotes it.
pub fn read_workflow(path: &Path, command: &'static str) -> Result<String, CliError> {
    let text = read_text(path, WORKFLOW_LIMIT, "workflow").map_err(CliError::read)?;
    if is_json(&text) {
        let path = path.display().to_string();
        let plan = serde_json::from_str::<serde_json::Value>(&text).is_ok_and(|v| v.get("format_version").is_some());
        return Err(if plan {
            CliError::PlanNotWorkflow { path, command }
        } else {
            CliError::JsonNotWorkflow { path }
        });
    }
    Ok(text)
}

/// The text of a plan file, read within the plan's bound.
pub fn read_plan_text(path: &Path) -> Result<String, CliError> {
    read_text(path, PLAN_LIMIT, "plan").map_err(CliError::read)
}

/// Whether a file's text is JSON (a plan) rather than TOML (a workflow): no TOML document
/// starts with `{`; every JSON object does.
pub fn is_json(text: &str) -> bool {
    text.trim_start_matches('\u{feff}').trim_start().starts_with('{')
}

/// A plan from the text of `path`.
pub fn plan_from_text(path: &Path, text: &str) -> Result<mgc_plan::Plan, CliError> {
    mgc_plan::Plan::from_json(text)
        .map_err(|error| CliError::BadPlan { path: path.display().to_string(), message: error.to_string() })
}
