//! The commands as functions for programs that embed mgc (the Python package): each returns the
//! JSON text that `--format json` prints, or a [`Failure`] holding the diagnostics both as people
//! read them and as the JSON errors.

use std::path::Path;

use mgc_compiler::compile::{Stage, toml_to_plan};
use mgc_compiler::inventory::{file_to_inventory, inventory_to_models};
use mgc_core::Hardware;
use mgc_grammar::parse_allocation;
use miette::Diagnostic;

use crate::Status;
use crate::commands::explain::{self, Unexplained};
use crate::commands::{compile::relative_paths, inspect, read_plan_text, read_workflow};
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
    /// The failure that `errors` make, each pointing into `source` where it has a span.
    pub fn new<D: Diagnostic + PartialEq>(status: Status, source: Option<Source<'_>>, errors: &[D]) -> Self {
        let errors: Vec<&dyn Diagnostic> = render::unique(errors).into_iter().map(|e| e as &dyn Diagnostic).collect();
        let list: Vec<JsonError> = errors.iter().map(|e| JsonError::new(*e, source)).collect();
        Self { status, rendered: render::human_in(source, &errors, false), diagnostics: render::json_text(&list) }
    }

    fn cli(error: CliError) -> Self {
        Self::new(error.status(), None, &[error])
    }

    fn unexplained(unexplained: Unexplained, name: &str, text: &str) -> Self {
        match unexplained {
            Unexplained::Cli(error) => Self::cli(error),
            Unexplained::Compile(errors) => Self::new(Status::InputProblem, Some(Source { name, text }), &errors),
        }
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

/// A plan (its JSON) or a workflow (its TOML), as a file or as its text: what `mgc explain` is
/// given. A workflow's model paths are relative to its folder, or for text to the current folder.
#[derive(Clone, Copy, Debug)]
pub enum PlanOrWorkflow<'a> {
    File(&'a Path),
    Text(&'a str),
}

/// What `mgc explain` shows of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// What `mgc explain PLAN` prints.
    pub table: String,
    /// The picture `mgc explain PLAN --svg FILE` draws.
    pub svg: String,
}

/// A plan explained as `mgc explain` does, a workflow compiled on the spot first (`detect` gives
/// the devices of this machine).
pub fn explain(input: PlanOrWorkflow<'_>, detect: &dyn Fn() -> Hardware) -> Result<Explanation, Failure> {
    let (name, text, dir) = explained_text(input)?;
    let plan = explain::text_to_plan(Path::new(&name), &text, dir, detect)
        .map_err(|unexplained| Failure::unexplained(unexplained, &name, &text))?;
    Ok(Explanation { table: explain::text(&plan), svg: crate::svg::draw(&plan) })
}

/// One stage of the compiler for a workflow, as `mgc explain WORKFLOW --stage STAGE` prints it
/// (JSON text). `stage` is one of the names `--stage` takes.
pub fn explain_stage(input: PlanOrWorkflow<'_>, stage: &str, detect: &dyn Fn() -> Hardware) -> Result<String, Failure> {
    let Some(stage) = Stage::ALL.into_iter().find(|s| s.name() == stage) else {
        return Err(Failure::cli(CliError::UnknownStage { stage: stage.to_owned() }));
    };
    let (name, text, dir) = explained_text(input)?;
    explain::stage_text(Path::new(&name), &text, dir, stage, detect)
        .map_err(|unexplained| Failure::unexplained(unexplained, &name, &text))
}

/// The name, text and folder of what `mgc explain` is given.
fn explained_text(input: PlanOrWorkflow<'_>) -> Result<(String, String, &Path), Failure> {
    match input {
        PlanOrWorkflow::File(path) => {
            let text = read_plan_text(path).map_err(Failure::cli)?;
            let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
            Ok((path.display().to_string(), text, dir))
        }
        PlanOrWorkflow::Text(text) => {
            let name = if crate::commands::is_json(text) { "plan" } else { "workflow" };
            Ok((name.to_owned(), text.to_owned(), Path::new(".")))
        }
    }
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

    /// A header-only safetensors file of four blocks, and a workflow that streams part of it.
    fn tiny_workflow(dir: &Path) -> std::path::PathBuf {
        let keys: Vec<String> =
            (0..4).flat_map(|i| [format!("blocks.{i}.attn.weight"), format!("blocks.{i}.mlp.weight")]).collect();
        let size = 64 * 64 * 4;
        let entries: Vec<String> = keys
            .iter()
            .enumerate()
            .map(|(n, key)| {
                format!(r#""{key}":{{"dtype":"F32","shape":[64,64],"data_offsets":[{},{}]}}"#, n * size, (n + 1) * size)
            })
            .collect();
        let header = format!("{{{}}}", entries.join(","));
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + keys.len() * size, 0);
        let written = std::fs::write(dir.join("tiny.safetensors"), bytes);
        assert!(written.is_ok(), "{written:?}");
        let workflow = dir.join("tiny.toml");
        let text = "[[device]]\nname = \"cpu\"\nmemory = \"1gb\"\n[[model]]\nname = \"tiny\"\nfile = \"tiny.safetensors\"\ncompute = \"cpu\"\nallocation = \"cpu,40%;disk,*\"\n";
        let written = std::fs::write(&workflow, text);
        assert!(written.is_ok(), "{written:?}");
        workflow
    }

    #[test]
    fn a_workflow_and_its_plan_explain_alike_as_a_table_and_a_picture() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("a temporary folder: {e}"));
        let workflow = tiny_workflow(dir.path());
        let from_workflow = explain(PlanOrWorkflow::File(&workflow), &Hardware::default);
        let plan = compile(Workflow::File(&workflow), &Hardware::default).unwrap_or_default();
        let from_plan = explain(PlanOrWorkflow::Text(&plan), &Hardware::default);
        assert_eq!(from_workflow, from_plan);
        let Ok(explanation) = from_plan else { unreachable!("the plan explains: {from_plan:?}") };
        assert!(explanation.table.starts_with("predicted step") && explanation.table.contains("model `tiny`"));
        assert!(explanation.svg.starts_with("<svg") && explanation.svg.contains("Memory per device"));
    }

    #[test]
    fn a_stage_is_of_a_workflow_and_named_as_the_cli_names_it() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| unreachable!("a temporary folder: {e}"));
        let workflow = tiny_workflow(dir.path());
        let budgets = explain_stage(PlanOrWorkflow::File(&workflow), "budgets", &Hardware::default);
        assert!(budgets.as_ref().is_ok_and(|b| b.starts_with('{') && b.contains("tiny")), "{budgets:?}");
        let Err(unknown) = explain_stage(PlanOrWorkflow::File(&workflow), "placment", &Hardware::default) else {
            unreachable!("there is no such stage")
        };
        assert_eq!(unknown.status, Status::InputProblem);
        assert!(unknown.rendered.contains("no stage `placment`") && unknown.rendered.contains("placement"));
        let plan = compile(Workflow::File(&workflow), &Hardware::default).unwrap_or_default();
        let Err(of_plan) = explain_stage(PlanOrWorkflow::Text(&plan), "graph", &Hardware::default) else {
            unreachable!("a plan has no stages")
        };
        assert!(of_plan.rendered.contains("is a plan"), "{}", of_plan.rendered);
    }
}
