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
mod streams;

use std::path::Path;
use std::time::Instant;

pub use error::RunError;
pub use memory::steady_allocator;
pub use report::{MachineCheck, Report, human};
pub use step::Copies;

/// How to run.
#[derive(Clone, Debug)]
pub struct Options {
    /// Steps of each model that steps: every model but text encoders and VAEs (a model of unknown
    /// role counts as a main model). Text encoders and VAEs run once, as in a workflow.
    pub steps: usize,
    /// Show progress bars (when stderr is a terminal).
    pub progress: bool,
    /// How streamed layers are copied.
    pub copies: Copies,
}

/// Runs the plan at `path`.
pub fn run(path: &Path, options: &Options) -> Result<Report, RunError> {
    let started = Instant::now();
    let session = Session::open(path, options.progress)?;
    let mut report = session.run(options, started)?;
    for check in session.machine()? {
        report.add_machine_check(check);
    }
    Ok(report)
}

/// A plan with its models loaded where it says: run it, or time a plain loop over its weights.
pub struct Session {
    plan: mgc_plan::Plan,
    models: Vec<load::LoadedModel>,
    baseline: memory::Baseline,
    load_seconds: f64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("models", &self.plan.models.len())
            .field("load_seconds", &self.load_seconds)
            .finish()
    }
}

impl Session {
    /// Reads the plan, checks devices, memory and the model files' fingerprints, and loads.
    pub fn open(path: &Path, progress: bool) -> Result<Self, RunError> {
        let mut baseline = memory::Baseline::now();
        compute::forget_products();
        let text = mgc_core::read_text(path, mgc_core::read::PLAN_LIMIT, "plan")?;
        let plan = mgc_plan::Plan::from_json(&text)
            .map_err(|e| RunError::Plan { path: path.display().to_string(), message: e.to_string() })?;
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        baseline.note_cuda(plan.devices.iter().filter_map(|d| match d.name {
            mgc_plan::Device::Cuda(n) => load::cuda_ordinal(n).ok(),
            _ => None,
        }));
        load::check_devices(&plan)?;
        load::check_memory(&plan)?;
        let files = load::open_inputs(&plan, dir)?;
        let load_started = Instant::now();
        let mut models = Vec::new();
        for (index, model) in plan.models.iter().enumerate() {
            models.push(load::load_model(model, &transfers_of(&plan, index), &files, progress)?);
            memory::sample();
        }
        Ok(Self { plan, models, baseline, load_seconds: load_started.elapsed().as_secs_f64() })
    }

    /// Runs every model's steps as the plan schedules them.
    pub fn run(&self, options: &Options, started: Instant) -> Result<Report, RunError> {
        let mut runs = Vec::new();
        for (index, (model, loaded)) in self.plan.models.iter().zip(&self.models).enumerate() {
            let steps = steps_of(model.role, options.steps);
            let transfers = self.transfers_of(index);
            runs.push(step::run_model(model, &transfers, loaded, steps, options.progress, options.copies)?);
        }
        let asked = options.steps.max(1);
        Ok(report::report(&self.plan, &runs, asked, &self.baseline, self.load_seconds, started.elapsed().as_secs_f64()))
    }

    /// Each compute device's BF16 matmul figure measured now, as the probe measured the figure
    /// the plan gives it: after the steps, so that it takes nothing from their time or memory.
    pub fn machine(&self) -> Result<Vec<report::MachineCheck>, RunError> {
        let mut checks: Vec<report::MachineCheck> = Vec::new();
        for model in &self.plan.models {
            if checks.iter().any(|c| c.device == model.compute) {
                continue;
            }
            let Some(device) = load::torch_device(model.compute)? else { continue };
            let planned =
                self.plan.devices.iter().find(|d| d.name == model.compute).map_or(0.0, |d| d.flops_per_second);
            // The compiler names each device whose figures are defaults in the plan's basis.
            let defaults = self
                .plan
                .run
                .as_ref()
                .is_some_and(|r| r.uncertainty.is_some() && r.basis.contains(&format!("for `{}`", model.compute)));
            let (measured, timing) = probe::reference_flops(device)?;
            checks.push(report::MachineCheck {
                device: model.compute,
                what: probe::reference_product(device),
                planned_flops_per_second: planned,
                planned_from_defaults: defaults,
                measured_flops_per_second: measured,
                within: timing.within,
            });
        }
        Ok(checks)
    }

    fn transfers_of(&self, model: usize) -> Vec<&mgc_plan::Transfer> {
        transfers_of(&self.plan, model)
    }

    /// The same arithmetic as a run, as a plain loop over each model's weights where they are:
    /// no copy thread, no schedule. Returns the seconds it took.
    pub fn plain_loop(&self, steps: usize) -> Result<f64, RunError> {
        let started = Instant::now();
        for (model, loaded) in self.plan.models.iter().zip(&self.models) {
            let mut inputs = compute::Inputs::new(model.tokens, loaded.compute, model.activation_bytes)?;
            for _ in 0..steps {
                for layer in &loaded.layers {
                    compute::layer(&layer.tensors, &layer.work, &mut inputs)?;
                }
            }
        }
        Ok(started.elapsed().as_secs_f64())
    }
}

/// Whether a model of `role` runs once a workflow rather than every step: text encoders (once per
/// prompt) and VAEs (once per image). Every other model steps, an unknown role included.
pub const fn runs_once(role: mgc_plan::Role) -> bool {
    matches!(role, mgc_plan::Role::TextEncoder | mgc_plan::Role::Vae)
}

/// Steps a model of `role` runs when `asked` steps were asked for.
fn steps_of(role: mgc_plan::Role, asked: usize) -> usize {
    if runs_once(role) { 1 } else { asked.max(1) }
}

/// The copies of model `model`, in the order the plan issues them.
fn transfers_of(plan: &mgc_plan::Plan, model: usize) -> Vec<&mgc_plan::Transfer> {
    plan.transfers.iter().filter(|t| t.model == model).collect()
}
