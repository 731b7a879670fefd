//! `mgc compile`: a workflow becomes a plan, written atomically (`-o -`: on stdout).

use std::io::Write;
use std::path::{Component, Path, PathBuf};

use mgc_compiler::compile::toml_to_plan;
use mgc_core::Output;
use mgc_plan::Plan;

use super::fail;
use crate::Status;
use crate::args::{CompileArgs, Format};
use crate::commands::explain;
use crate::error::CliError;
use crate::render::{self, Source};

pub fn run(args: &CompileArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let source = match super::read_workflow(&args.workflow, "compile") {
        Ok(source) => source,
        Err(error) => return fail(error, args.format, out, err),
    };
    let output = args.output.clone().unwrap_or_else(|| args.workflow.with_extension("plan.json"));
    source_to_plan_file(&args.workflow, &source, &output, args.format, out, err)
}

/// Compiles the text of the workflow at `workflow` (its folder resolves the model paths) and
/// writes the plan to `output`.
pub(crate) fn source_to_plan_file(
    workflow: &Path,
    source: &str,
    output: &Path,
    format: Format,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<Status> {
    let dir = workflow.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut plan = match toml_to_plan(source, dir, &mgc_devices::detect) {
        Ok(plan) => plan,
        Err(errors) => {
            let name = workflow.display().to_string();
            render::report(format, Some(Source { name: &name, text: source }), &errors, out, err)?;
            return Ok(Status::InputProblem);
        }
    };
    let plan_dir = output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    relative_paths(&mut plan, plan_dir);
    let text = plan.to_json();
    match mgc_core::write_output(output, out, text.as_bytes()) {
        // The plan is what stdout holds; a summary after it would spoil it.
        Ok(Output::Stdout) => return Ok(Status::Ok),
        Ok(_) => {}
        Err(error) => {
            let error = CliError::WritePlan { path: output.display().to_string(), message: error.to_string() };
            return fail(error, format, out, err);
        }
    }
    match format {
        Format::Json => {
            let summary = serde_json::json!({ "plan": output.display().to_string(), "predicted": plan.predicted });
            out.write_all(render::json_text(&summary).as_bytes())?;
        }
        Format::Human => {
            writeln!(out, "wrote {}\n", output.display())?;
            out.write_all(explain::text(&plan).as_bytes())?;
        }
    }
    Ok(Status::Ok)
}

/// Model paths in the plan, relative to the folder the plan is written to.
pub fn relative_paths(plan: &mut Plan, plan_dir: &Path) {
    let base = fs_err::canonicalize(plan_dir).unwrap_or_else(|_| plan_dir.to_owned());
    let rel = |path: &str| -> String {
        let Ok(full) = fs_err::canonicalize(path) else {
            return path.to_owned();
        };
        relative(&full, &base).display().to_string()
    };
    for input in &mut plan.inputs {
        input.path = rel(&input.path);
    }
    for model in &mut plan.models {
        model.file = plan.inputs.get(model.input).map_or_else(|| model.file.clone(), |i| i.path.clone());
    }
}

pub(crate) fn relative(path: &Path, base: &Path) -> PathBuf {
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for c in path.iter().skip(common) {
        out.push(c.as_os_str());
    }
    out
}
