//! `mgc import`: a saved ComfyUI workflow becomes an mgc workflow (`-o -`: on stdout), compiled
//! at once with `--compile`.

use std::io::Write;
use std::path::{Path, PathBuf};

use mgc_compiler::import::{Imported, Located, Model, comfy_to_imported, imported_to_toml, json_to_comfy};
use mgc_core::Output;

use crate::Status;
use crate::args::{Format, ImportArgs};
use crate::commands::compile::{relative, source_to_plan_file};

pub fn run(args: &ImportArgs, out: &mut dyn Write, err: &mut dyn Write) -> std::io::Result<Status> {
    let input = &args.workflow;
    let source = match mgc_core::read_text(input, mgc_core::read::WORKFLOW_LIMIT, "ComfyUI workflow") {
        Ok(source) => source,
        Err(error) => {
            writeln!(err, "error: {error}")?;
            return Ok(Status::InputProblem);
        }
    };
    let comfy = match json_to_comfy(&source) {
        Ok(comfy) => comfy,
        Err(error) => {
            writeln!(err, "error: `{}`: {error}\n  help: {}", input.display(), error.help())?;
            return Ok(Status::InputProblem);
        }
    };
    let imported = comfy_to_imported(&comfy);
    for s in &imported.skipped {
        writeln!(err, "warning: node {} `{}` not imported: {}", s.node_id, s.node_class, s.reason)?;
    }
    if imported.models.is_empty() {
        writeln!(err, "error: `{}` has no ComfyUI-MultiGPU loader that mgc can import", input.display())?;
        writeln!(
            err,
            "  help: mgc imports the MultiGPU and DisTorch2 loader nodes; other loaders leave placement to ComfyUI"
        )?;
        return Ok(Status::InputProblem);
    }
    let output = args.output.clone().unwrap_or_else(|| input.with_extension("toml"));
    if output == *input {
        writeln!(err, "error: the imported workflow would replace `{}`: name another file with `-o`", input.display())?;
        return Ok(Status::InputProblem);
    }
    let to_stdout = output.as_os_str() == "-";
    // Model paths are written relative to the folder of the workflow file.
    let toml_dir = if to_stdout {
        PathBuf::from(".")
    } else {
        output.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned()
    };
    let locator = match Locator::new(args.models.as_deref(), &toml_dir) {
        Ok(locator) => locator,
        Err(models) => {
            writeln!(err, "error: the models folder `{}` is not a folder", models.display())?;
            return Ok(Status::InputProblem);
        }
    };
    let name = input.file_name().map_or_else(|| input.display().to_string(), |n| n.to_string_lossy().into_owned());
    let text = imported_to_toml(&imported, &name, &|m| locator.locate(m));
    let missing: Vec<Located> = imported.models.iter().map(|m| locator.locate(m)).filter(|l| !l.found).collect();
    for l in &missing {
        writeln!(err, "warning: model file not found: {} (the path is written as ComfyUI would load it)", l.path)?;
    }
    match mgc_core::write_output(&output, out, text.as_bytes()) {
        Ok(Output::Stdout) => {}
        Ok(_) => writeln!(out, "wrote {}: {}", output.display(), summary(&imported))?,
        Err(error) => {
            writeln!(err, "error: cannot write the workflow: {error}")?;
            return Ok(Status::ToolFailed);
        }
    }
    let Some(plan) = &args.compile else {
        return Ok(Status::Ok);
    };
    if !missing.is_empty() {
        writeln!(err, "error: cannot compile: {} model file(s) not found", missing.len())?;
        writeln!(err, "  help: name ComfyUI's models folder with `--models DIR`")?;
        return Ok(Status::InputProblem);
    }
    let workflow = if to_stdout { input.with_extension("toml") } else { output.clone() };
    if !to_stdout {
        return source_to_plan_file(&workflow, &text, plan, Format::Human, out, err);
    }
    // The workflow is what stdout holds: the compile summary goes to stderr.
    let mut compiled = Vec::new();
    let status = source_to_plan_file(&workflow, &text, plan, Format::Human, &mut compiled, err)?;
    err.write_all(&compiled)?;
    Ok(status)
}

fn summary(imported: &Imported) -> String {
    let mut nodes: Vec<&str> = imported.models.iter().map(|m| m.node_id.as_str()).collect();
    nodes.dedup();
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let (models, nodes) = (imported.models.len(), nodes.len());
    format!("{models} model{} from {nodes} loader node{}", plural(models), plural(nodes))
}

/// Finds model files in ComfyUI's `models` folder layout.
struct Locator {
    /// The models folder as given (`None`: `models` beside the workflow file).
    models: Option<PathBuf>,
    /// The workflow file's folder, absolute where it can be.
    base: PathBuf,
}

impl Locator {
    /// Fails with the folder when `--models` names something that is not a folder.
    fn new(models: Option<&Path>, toml_dir: &Path) -> Result<Self, PathBuf> {
        let base = fs_err::canonicalize(toml_dir).unwrap_or_else(|_| toml_dir.to_owned());
        let models = match models {
            None => None,
            Some(dir) => match fs_err::canonicalize(dir) {
                Ok(full) if full.is_dir() => Some(full),
                _ => return Err(dir.to_owned()),
            },
        };
        Ok(Self { models, base })
    }

    /// The first folder that holds the file, or else where the first folder would hold it.
    fn locate(&self, model: &Model) -> Located {
        let root = self.models.clone().unwrap_or_else(|| self.base.join("models"));
        let candidates: Vec<PathBuf> = model.folders.iter().map(|f| root.join(f).join(&model.file)).collect();
        let found = candidates.iter().find(|p| p.is_file());
        let full = found.or(candidates.first()).cloned().unwrap_or_else(|| root.join(&model.file));
        // Relative to the workflow's folder when that folder is known, else as found.
        let path = if self.base.is_absolute() { relative(&full, &self.base) } else { full.clone() };
        Located { path: path.to_string_lossy().replace('\\', "/"), found: found.is_some() }
    }
}
