//! The compiler proper: from a workflow to a plan.
//!
//! | stage | from | to | function |
//! |---|---|---|---|
//! | graph | [`Workflow`] + model headers | [`graph::LayerGraph`] | [`graph::workflow_to_graph`] |
//! | place | a model of the graph | [`place::ModelPlacement`] (budgets, homes) | [`place::place_model`] |
//! | schedule | homes | [`schedule::ModelSchedule`] (copies, timings, peaks) | [`schedule::schedule`] |
//! | emit | placements | [`mgc_plan::Plan`] | [`emit::placement_to_plan`] |

pub mod cost;
pub mod emit;
mod error;
pub mod graph;
pub mod place;
pub mod schedule;

use std::path::Path;

use mgc_core::Hardware;
use mgc_plan::Plan;

pub use error::{CompileError, Problem, ProblemKind};

use crate::workflow::{Workflow, toml_to_workflow};

/// Compiles a workflow file's text into a plan; `dir` is the folder model paths are relative to.
pub fn toml_to_plan(source: &str, dir: &Path, detect: &dyn Fn() -> Hardware) -> Result<Plan, Vec<CompileError>> {
    let workflow = toml_to_workflow(source, dir, detect)
        .map_err(|errors| errors.into_iter().map(CompileError::Spec).collect::<Vec<_>>())?;
    workflow_to_plan(&workflow)
}

/// Compiles a resolved workflow into a plan.
pub fn workflow_to_plan(workflow: &Workflow) -> Result<Plan, Vec<CompileError>> {
    let graph = graph::workflow_to_graph(workflow)?;
    let cost = cost::CostModel::new(workflow);
    // With `prefetch = "auto"`, a plan that is short of memory tries shallower prefetch (fewer
    // copies in flight) before it is refused.
    let mut max_prefetch = schedule::MAX_AUTO_PREFETCH;
    loop {
        let mut placements = Vec::new();
        let mut problems = Vec::new();
        for model in &graph.models {
            match place::place_model(model, workflow, &cost, max_prefetch) {
                Ok(placement) => placements.push(placement),
                Err(problem) => problems.push(CompileError::Problem(problem)),
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        match emit::placement_to_plan(workflow, &graph, &placements, &cost) {
            Ok(plan) => return Ok(plan),
            Err(_) if workflow.schedule.prefetch == crate::workflow::Prefetch::Auto && max_prefetch > 1 => {
                max_prefetch -= 1
            }
            Err(problems) => return Err(problems.into_iter().map(CompileError::Problem).collect()),
        }
    }
}
