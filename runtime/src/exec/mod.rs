//! Executes a plan with libtorch: loads every tensor where the plan puts it, runs steps over each
//! model's layers on its compute device while a copy thread moves streamed layers with the plan's
//! prefetch, and reports measured against predicted.
//!
//! The compute is real arithmetic with the layers' real weights and shapes at the plan's token
//! count (every 2-D weight applied as a linear map to hidden states of its width, norms as norms,
//! convolutions as convolutions): the time, bandwidth and memory are those of the plan. It
//! measures the plan, not the model's numerics.

mod compute;
mod error;
pub mod gguf;
mod load;
mod memory;
pub mod probe;
mod report;
mod step;

use std::path::Path;
use std::time::Instant;

pub use error::RunError;
pub use report::{Report, human};

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Steps of each diffusion model (other models run one step).
    pub steps: usize,
    /// Show progress bars (when stderr is a terminal).
    pub progress: bool,
}

/// Runs the plan at `path`.
pub fn run(path: &Path, options: &Options) -> Result<Report, RunError> {
    let started = Instant::now();
    let baseline = memory::Baseline::now();
    let text = mgc_grammar_free_read(path)?;
    let plan = mgc_plan::Plan::from_json(&text)
        .map_err(|e| RunError::Plan { path: path.display().to_string(), message: e.to_string() })?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    load::check_devices(&plan)?;
    load::check_memory(&plan)?;
    let files = load::open_inputs(&plan, dir)?;
    let mut models = Vec::new();
    let load_started = Instant::now();
    for (index, model) in plan.models.iter().enumerate() {
        models.push(load::load_model(&plan, index, model, &files, options.progress)?);
    }
    let load_seconds = load_started.elapsed().as_secs_f64();
    let mut runs = Vec::new();
    for (model, loaded) in plan.models.iter().zip(&models) {
        let steps = if model.role == "diffusion" { options.steps.max(1) } else { 1 };
        runs.push(step::run_model(&plan, model, loaded, steps, options.progress, &baseline)?);
    }
    Ok(report::report(&plan, &runs, &baseline, load_seconds, started.elapsed().as_secs_f64()))
}

fn mgc_grammar_free_read(path: &Path) -> Result<String, RunError> {
    use std::io::Read;
    const LIMIT: u64 = 512 << 20;
    let file = std::fs::File::open(path)
        .map_err(|e| RunError::Read { path: path.display().to_string(), message: e.to_string() })?;
    let mut bytes = Vec::new();
    file.take(LIMIT + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| RunError::Read { path: path.display().to_string(), message: e.to_string() })?;
    if bytes.len() as u64 > LIMIT {
        return Err(RunError::Read { path: path.display().to_string(), message: "larger than any plan".into() });
    }
    String::from_utf8(bytes)
        .map_err(|_| RunError::Read { path: path.display().to_string(), message: "not UTF-8 text".into() })
}
