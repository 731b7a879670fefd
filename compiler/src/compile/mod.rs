//! The compiler proper: from a workflow to a plan, through one graph of layers.
//!
//! | stage | from | to | function |
//! |---|---|---|---|
//! | graph | [`Workflow`] + model headers | [`graph::LayerGraph`]: layer nodes, order edges | [`graph::workflow_to_graph`] |
//! | budgets | the graph + allocations | [`budgets::Budgets`]: bytes per model and device | [`budgets::graph_to_budgets`] |
//! | placement | budgets | [`placement::Placement`]: the graph with every layer's home | [`placement::budgets_to_placement`] |
//! | schedule | placement | [`schedule::Schedule`]: copy nodes, data-ready and slot-reuse edges, timings | [`schedule::placement_to_schedule`] |
//! | peaks | schedule | [`peaks::Peaks`]: every device's peak, checked | [`peaks::schedule_to_peaks`] |
//! | plan | peaks | [`mgc_plan::Plan`] | [`emit::peaks_to_plan`] |
//!
//! [`sweep`] reruns the stages from placement on with one model's budget on its compute device
//! varied, for `mgc sweep`. Placement's search and the schedule both time a model's step with the pure simulation in
//! [`simulate`]; the cost model ([`cost`]) gives every rate and duration.

pub mod budgets;
pub mod cost;
pub mod emit;
mod error;
pub mod graph;
pub mod peaks;
pub mod placement;
pub mod products;
pub mod schedule;
pub mod simulate;
pub mod sweep;
pub mod work;

use std::fmt;
use std::path::Path;

use mgc_core::Hardware;
use mgc_plan::Plan;
use serde::Serialize;

pub use error::{CompileError, Problem, ProblemKind};

use crate::workflow::{Prefetch, Workflow, toml_to_workflow};

/// Compiles a workflow file's text into a plan; `dir` is the folder model paths are relative to.
pub fn toml_to_plan(source: &str, dir: &Path, detect: &dyn Fn() -> Hardware) -> Result<Plan, Vec<CompileError>> {
    let workflow = toml_to_workflow(source, dir, detect)
        .map_err(|errors| errors.into_iter().map(CompileError::Spec).collect::<Vec<_>>())?;
    workflow_to_plan(&workflow)
}

/// Compiles a resolved workflow into a plan.
pub fn workflow_to_plan(workflow: &Workflow) -> Result<Plan, Vec<CompileError>> {
    let graph = graph::workflow_to_graph(workflow)?;
    let cost = cost_of(workflow, &graph);
    let (_, peaks) = auto_budgets_to_peaks(&graph, workflow, &cost)?;
    Ok(emit::peaks_to_plan(&peaks, workflow, &cost))
}

/// The cost model of a workflow, knowing its models' sizes (which decide how the disk tier reads).
pub(crate) fn cost_of(workflow: &Workflow, graph: &graph::LayerGraph) -> cost::CostModel {
    cost::CostModel::for_models(workflow, graph.models.iter().map(|m| m.bytes).sum())
}

/// Tries of `auto` budgets: each one that leaves a device short holds the shortfall back from
/// the `auto` models there and tries again.
const AUTO_BUDGET_TRIES: usize = 4;

/// The budgets and the stages after them. Where a model's allocation is `auto` and the plan
/// leaves a device short of memory (the budgets stage estimates copies in flight; the schedule
/// knows them), the shortfall is held back from the `auto` models' room there and the budgets
/// are chosen again.
fn auto_budgets_to_peaks(
    graph: &graph::LayerGraph,
    workflow: &Workflow,
    cost: &cost::CostModel,
) -> Result<(budgets::Budgets, peaks::Peaks), Vec<CompileError>> {
    let mut held_back: Vec<(mgc_core::Device, u64)> = Vec::new();
    let mut tries = 0;
    loop {
        let budgets = budgets::graph_to_budgets_within(graph, workflow, &held_back)?;
        let errors = match budgets_to_peaks(graph, &budgets, workflow, cost) {
            Ok(peaks) => return Ok((budgets, peaks)),
            Err(errors) => errors,
        };
        tries += 1;
        let short = short_devices(graph, workflow, &errors);
        if tries >= AUTO_BUDGET_TRIES || short.is_empty() {
            return Err(errors);
        }
        held_back.extend(short);
    }
}

/// The devices a failed plan was short on, with the bytes short, when a model's budgets are
/// `auto` (others' budgets are the user's, not the compiler's to change).
fn short_devices(
    graph: &graph::LayerGraph,
    workflow: &Workflow,
    errors: &[CompileError],
) -> Vec<(mgc_core::Device, u64)> {
    if !graph.models.iter().any(|m| m.spec.auto_budgets) {
        return Vec::new();
    }
    errors
        .iter()
        .filter_map(|e| match e {
            CompileError::Problem(problem) => match &problem.kind {
                error::ProblemKind::DeviceOverMemory { device, short, .. } => {
                    workflow.devices.iter().find(|d| d.device.to_string() == *device).map(|d| (d.device, *short))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// The stages from placement to the peaks, for given budgets, with the retry of a shallower
/// prefetch.
fn budgets_to_peaks(
    graph: &graph::LayerGraph,
    budgets: &budgets::Budgets,
    workflow: &Workflow,
    cost: &cost::CostModel,
) -> Result<peaks::Peaks, Vec<CompileError>> {
    let mut max_prefetch = simulate::MAX_AUTO_PREFETCH;
    loop {
        let may_retry = workflow.schedule.prefetch == Prefetch::Auto && max_prefetch > 1;
        let placement = placement::budgets_to_placement(graph.clone(), budgets.clone(), workflow, cost, max_prefetch)?;
        let schedule = schedule::placement_to_schedule(placement, workflow, cost);
        match peaks::schedule_to_peaks(schedule, workflow, cost) {
            Ok(peaks) => return Ok(peaks),
            Err(_) if may_retry => max_prefetch -= 1,
            Err(problems) => return Err(problems.into_iter().map(CompileError::Problem).collect()),
        }
    }
}

/// A named stage of the compiler, whose form `mgc explain --stage` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Graph,
    Budgets,
    Placement,
    Schedule,
    Peaks,
    Plan,
}

impl Stage {
    pub const ALL: [Self; 6] = [Self::Graph, Self::Budgets, Self::Placement, Self::Schedule, Self::Peaks, Self::Plan];

    pub const fn name(self) -> &'static str {
        match self {
            Self::Graph => "graph",
            Self::Budgets => "budgets",
            Self::Placement => "placement",
            Self::Schedule => "schedule",
            Self::Peaks => "peaks",
            Self::Plan => "plan",
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The intermediate form of one stage, as JSON: the pipeline is run up to it.
pub fn workflow_to_stage(workflow: &Workflow, stage: Stage) -> Result<serde_json::Value, Vec<CompileError>> {
    let graph = graph::workflow_to_graph(workflow)?;
    let cost = cost_of(workflow, &graph);
    if stage == Stage::Graph {
        return Ok(json(&graph.view()));
    }
    let tried = auto_budgets_to_peaks(&graph, workflow, &cost);
    let budgets = match &tried {
        Ok((budgets, _)) => budgets.clone(),
        Err(_) => budgets::graph_to_budgets(&graph, workflow)?,
    };
    if stage == Stage::Budgets {
        return Ok(json(&budgets));
    }
    let peaks = match (tried.map(|(_, peaks)| peaks), stage) {
        (Ok(peaks), _) => peaks,
        // Where the plan cannot work, the first placement tried still shows why.
        (Err(_), Stage::Placement) => {
            let placement =
                placement::budgets_to_placement(graph, budgets, workflow, &cost, simulate::MAX_AUTO_PREFETCH)?;
            return Ok(json(&placement::view(&placement.graph, &placement.reasons)));
        }
        (Err(errors), _) => return Err(errors),
    };
    Ok(match stage {
        Stage::Placement => json(&placement::view(&peaks.schedule.graph, &peaks.schedule.reasons)),
        Stage::Schedule => {
            let schedule = &peaks.schedule;
            json(&ScheduleView { timings: &schedule.timings, copies: schedule.copies() })
        }
        Stage::Peaks => json(&peaks.devices),
        _ => serde_json::to_value(emit::peaks_to_plan(&peaks, workflow, &cost)).unwrap_or(serde_json::Value::Null),
    })
}

#[derive(Serialize)]
struct ScheduleView<'a> {
    timings: &'a [schedule::ModelTiming],
    copies: Vec<schedule::CopyView>,
}

/// A stage's form as JSON, times to the nanosecond (as in plans) so that forms read well.
fn json(value: &impl Serialize) -> serde_json::Value {
    let mut value = serde_json::to_value(value).unwrap_or(serde_json::Value::Null);
    round_seconds(&mut value);
    value
}

fn round_seconds(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(x) = n.as_f64().filter(|x| x.abs() < 1e6)
                && let Some(rounded) = serde_json::Number::from_f64((x * 1e9).round() / 1e9)
            {
                *n = rounded;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(round_seconds),
        Value::Object(map) => map.values_mut().for_each(round_seconds),
        _ => {}
    }
}
