//! `placement_to_schedule`: the copies of one step and when they run, added to the graph.
//!
//! Each model's step is simulated under its placement ([`super::simulate`]); every copy becomes
//! a copy node with a data-ready edge to the first layer it carries and, when it reuses a buffer,
//! a slot-reuse edge from the layer that frees it. The timings of the layers and of the step stay
//! beside the graph, per model.

use mgc_core::Device;
use serde::Serialize;

use super::budgets::Budgets;
use super::cost::CostModel;
use super::graph::{CopyNode, LayerGraph};
use super::placement::{Placement, layer_times, simulate_model};
use super::simulate::Step;
use crate::workflow::Workflow;

/// The graph with its copies, and each model's predicted step.
#[derive(Clone, Debug)]
pub struct Schedule {
    pub graph: LayerGraph,
    pub budgets: Budgets,
    /// Why each model's layers are where they are.
    pub reasons: Vec<String>,
    /// Per model, in the graph's order.
    pub timings: Vec<ModelTiming>,
}

/// One model's steady-state step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelTiming {
    pub model: String,
    #[serde(flatten)]
    pub step: Step,
}

/// A copy as `mgc explain --stage schedule` prints it: the copy node and its edges.
#[derive(Clone, Debug, Serialize)]
pub struct CopyView {
    pub model: String,
    pub layers: (usize, usize),
    pub from: Device,
    pub to: Device,
    pub bytes: u64,
    pub batched: bool,
    /// The layer whose buffer it reuses, and whether that layer ran in the previous step.
    pub issue_after_layer: Option<(usize, bool)>,
    pub start_seconds: f64,
    pub end_seconds: f64,
}

impl Schedule {
    /// Every copy with its edges, model by model, in the order they are issued.
    pub fn copies(&self) -> Vec<CopyView> {
        let mut out = Vec::new();
        for (m, model) in self.graph.models.iter().enumerate() {
            for (copy, reuse) in self.graph.copies(m) {
                out.push(CopyView {
                    model: model.spec.name.clone(),
                    layers: (copy.first, copy.last),
                    from: copy.from,
                    to: copy.to,
                    bytes: copy.bytes,
                    batched: copy.batched,
                    issue_after_layer: reuse,
                    start_seconds: copy.start,
                    end_seconds: copy.end,
                });
            }
        }
        out
    }
}

/// Simulates every model's step under its placement and adds its copies to the graph.
pub fn placement_to_schedule(placement: Placement, workflow: &Workflow, cost: &CostModel) -> Schedule {
    let Placement { mut graph, budgets, reasons, max_prefetch } = placement;
    let mut timings = Vec::new();
    for m in 0..graph.models.len() {
        let homes = graph.homes(m).unwrap_or_default();
        let Some(model) = graph.models.get(m) else {
            continue;
        };
        let times = layer_times(model, budgets.of(m), cost);
        let simulation = simulate_model(model, &times, &homes, workflow, cost, max_prefetch);
        let compute = model.spec.compute;
        timings.push(ModelTiming { model: model.spec.name.clone(), step: simulation.step });
        for copy in simulation.copies {
            let node = CopyNode {
                model: m,
                first: copy.first,
                last: copy.last,
                from: copy.from,
                to: compute,
                bytes: copy.bytes,
                batched: copy.batched,
                start: copy.start,
                end: copy.end,
            };
            graph.add_copy(node, copy.issue_after.map(|layer| (layer, copy.from_previous_step)));
        }
    }
    Schedule { graph, budgets, reasons, timings }
}
