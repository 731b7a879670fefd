//! The commands as functions for programs that embed mgc (the Python package): each returns the
//! JSON text that `--format json` prints, or a [`Failure`] holding the diagnostics both as people
//! read them and as the JSON errors.

use std::path::Path;

use mgc_compiler::compile::toml_to_plan;
use mgc_compiler::inventory::{file_to_inventory, inventory_to_models};
use mgc_core::Hardware;
use mgc_grammar::parse_allocation;
use miette::Diagnostic;

use crate::Status;
use crate::commands::{compile::relative_paths, inspect, read_workflow};
use crate::error::CliError;
use crate::render::{self, JsonError, Source};

/// Why a command gave no result: its diagnostics, rendered without colour as `mgc` prints them,
/// and as the `errors` array of `--format json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub status: Status,
    /// What `mgc` prints on stderr, without colour.
    pub rendered: String,
    /// The `errors` array of `--format json`, as JSON text.
    pub diagnostics: String,
}

impl Failure {
    fn new<D: Diagnostic + PartialEq>(status: Status, source: Option<Source<'_>>, errors: &[D]) -> Self {
        let errors: Vec<&dyn Diagnostic> = render::unique(errors).into_iter().map(|e| e as &dyn Diagnostic).collect();
        let list: Vec<JsonError> = errors.iter().map(|e| JsonError::new(*e, source)).collect();
        Self { status, rendered: render::human_in(source, &errors, false), diagnostics: render::json_text(&list) }
    }

    fn cli(error: CliError) -> Self {
        Self::new(error.status(), None, &[error])
    }
}

/// `mgc check --allocation TEXT --format json`.
pub fn check_allocation(text: &str) -> Result<String, Failure> {
    parse_allocation(text)
        .map(|allocation| render::json_text(&allocation))
        .map_err(|errors| Failure::new(Status::InputProblem, Some(Source { name: "allocation", text }), &errors))
}

/// `mgc inspect FILE --format json`.
pub fn inspect(file: &Path) -> Result<String, Failure> {
    let inventory = file_to_inventory(file).map_err(|error| Failure::new(Status::InputProblem, None, &[error]))?;
    let models = inventory_to_models(&inventory);
    Ok(inspect::json(file, &inventory, &models))
}

/// A workflow as a file, or as its TOML text.
#[derive(Clone, Copy, Debug)]
pub enum Workflow<'a> {
    /// Model paths in it are relative to its folder, and so are the plan's.
    File(&'a Path),
    /// Model paths in it are relative to the current folder, and so are the plan's.
    Text(&'a str),
}

/// The plan of a workflow, as `mgc compile FILE -o -` prints it when run in the workflow's folder
/// (for [`Workflow::Text`], in the current folder). `detect` gives the devices of this machine.
pub fn compile(workflow: Workflow<'_>, detect: &dyn Fn() -> Hardware) -> Result<String, Failure> {
    let (source, name, dir) = match workflow {
        Workflow::File(path) => {
            let source = read_workflow(path, "compile").map_err(Failure::cli)?;
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            (source, path.display().to_string(), dir)
        }
        Workflow::Text(text) => (text.to_owned(), "workflow".to_owned(), Path::new(".")),
    };
    let mut plan = toml_to_plan(&source, dir, detect)
        .map_err(|errors| Failure::new(Status::InputProblem, Some(Source { name: &name, text: &source }), &errors))?;
    relative_paths(&mut plan, dir);
    Ok(plan.to_json())
}

/// The plan's JSON Schema, as `mgc schema` prints it.
pub fn schema() -> String {
    render::json_text(&mgc_plan::schema())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_allocation_is_its_json() {
        let json = check_allocation("cuda:0,4gb;cpu,*");
        assert!(json.as_ref().is_ok_and(|j| j.contains("\"mode\": \"bytes\"")), "{json:?}");
    }

    #[test]
    fn a_wrong_allocation_is_rendered_without_colour_and_as_json() {
        let Err(failure) = check_allocation("cuda:0,4tbs;cpu,*") else { unreachable!("`tbs` is no unit") };
        assert_eq!(failure.status, Status::InputProblem);
        assert!(failure.rendered.contains("unknown unit `tbs`"), "{}", failure.rendered);
        assert!(failure.rendered.ends_with("1 problem in allocation\n"), "{}", failure.rendered);
        assert!(!failure.rendered.contains('\u{1b}'), "no colour: {}", failure.rendered);
        let errors: serde_json::Value = serde_json::from_str(&failure.diagnostics).unwrap_or_default();
        assert_eq!(errors.pointer("/0/span"), Some(&serde_json::json!([8, 11])), "{errors}");
    }

    #[test]
    fn a_workflow_file_that_is_missing_is_a_failure_that_names_it() {
        let Err(failure) = compile(Workflow::File(Path::new("no/such/workflow.toml")), &Hardware::default) else {
            unreachable!("there is no such file")
        };
        assert!(failure.rendered.contains("no/such/workflow.toml"), "{}", failure.rendered);
        assert!(failure.diagnostics.starts_with('['), "{}", failure.diagnostics);
    }
}
