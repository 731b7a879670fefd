//! `workflow_to_sweep`: what each amount of a model on its compute device buys — the predicted
//! step and peaks as the compute device's budget for that model goes from nothing to all of it,
//! the other models as the workflow has them.
//!
//! Each point reruns the stages from placement on with that one budget changed; the device that
//! takes the rest (`*`) takes what the compute device does not hold.

use mgc_core::{Bytes, Device};
use serde::Serialize;

use super::budgets::{BudgetEntry, Budgets, graph_to_budgets};
use super::error::CompileError;
use super::graph::workflow_to_graph;
use super::{budgets_to_peaks, peaks::Peaks};
use crate::workflow::Workflow;

/// The points of a sweep and where a step stops getting faster.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sweep {
    pub model: String,
    pub compute: Device,
    pub model_bytes: u64,
    /// Where the rest of the model goes.
    pub rest: Device,
    pub points: Vec<SweepPoint>,
    /// The smallest budget whose step is within 1% of the fastest step that fits.
    pub knee_bytes: Option<u64>,
}

/// One budget and what it predicts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SweepPoint {
    /// The model's budget on its compute device.
    pub budget_bytes: u64,
    /// Of it, what the plan keeps there.
    pub resident_bytes: u64,
    /// `None` where the plan does not fit; `problem` says why.
    pub step_seconds: Option<f64>,
    pub lower_bound_seconds: Option<f64>,
    pub hidden_copy_fraction: Option<f64>,
    /// The compute device's peak.
    pub peak_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Evenly spaced budgets from `from` to `to` (inclusive), `points` of them.
pub fn budgets_between(from: u64, to: u64, points: u32) -> Vec<u64> {
    let (from, to) = (from.min(to), from.max(to));
    let n = u64::from(points.max(2));
    let mut out: Vec<u64> =
        (0..n).map(|i| from + ((to - from) as u128 * u128::from(i) / u128::from(n - 1)) as u64).collect();
    out.dedup();
    out
}

/// Which budgets a sweep tries: `points` of them, evenly spaced from `from` to `to` (the whole
/// model when `None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub from: u64,
    pub to: Option<u64>,
    pub points: u32,
}

/// The sweep of one model over a range of budgets on its compute device; `None` when the
/// workflow has no model of that name.
pub fn workflow_to_sweep(workflow: &Workflow, model: &str, range: Range) -> Result<Option<Sweep>, Vec<CompileError>> {
    let graph = workflow_to_graph(workflow)?;
    let cost = super::cost_of(workflow, &graph);
    let base = graph_to_budgets(&graph, workflow)?;
    let Some((m, target)) = graph.models.iter().enumerate().find(|(_, g)| g.spec.name == model) else {
        return Ok(None);
    };
    let budgets = budgets_between(range.from, range.to.unwrap_or(target.bytes), range.points);
    let compute = target.spec.compute;
    let rest = rest_device(base.of(m), compute);
    let mut points = Vec::new();
    for budget in budgets {
        let varied = with_compute_budget(&base, m, compute, rest, budget, target.bytes);
        points.push(match budgets_to_peaks(&graph, &varied, workflow, &cost) {
            Ok(peaks) => point(&peaks, m, compute, budget),
            Err(errors) => SweepPoint {
                budget_bytes: budget,
                resident_bytes: 0,
                step_seconds: None,
                lower_bound_seconds: None,
                hidden_copy_fraction: None,
                peak_bytes: None,
                problem: Some(errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")),
            },
        });
    }
    let knee_bytes = knee(&points);
    Ok(Some(Sweep { model: model.to_owned(), compute, model_bytes: target.bytes, rest, points, knee_bytes }))
}

/// The device that takes what the compute device does not: the allocation's `*` device when it is
/// not the compute device, else its first other device, else `cpu`.
fn rest_device(entries: &[BudgetEntry], compute: Device) -> Device {
    entries
        .iter()
        .find(|e| e.absorbs && e.device != compute)
        .or_else(|| entries.iter().find(|e| e.device != compute))
        .map_or(Device::Cpu, |e| e.device)
}

/// The model's budgets with `bytes` on its compute device and the rest on `rest`; the other
/// devices of its allocation keep their budgets.
fn with_compute_budget(base: &Budgets, m: usize, compute: Device, rest: Device, bytes: u64, total: u64) -> Budgets {
    let mut budgets = base.clone();
    if let Some(model) = budgets.models.get_mut(m) {
        let mut entries: Vec<BudgetEntry> =
            model.entries.iter().filter(|e| e.device != compute && e.device != rest).cloned().collect();
        for entry in &mut entries {
            entry.absorbs = false;
        }
        let others: u64 = entries.iter().map(|e| e.bytes).fold(0, u64::saturating_add);
        entries.insert(0, BudgetEntry { device: compute, bytes, absorbs: false });
        let left = total.saturating_sub(bytes.saturating_add(others));
        entries.push(BudgetEntry { device: rest, bytes: left, absorbs: true });
        model.entries = entries;
    }
    budgets
}

fn point(peaks: &Peaks, m: usize, compute: Device, budget: u64) -> SweepPoint {
    let schedule = &peaks.schedule;
    let homes = schedule.graph.homes(m).unwrap_or_default();
    let resident =
        schedule.graph.models.get(m).map_or(0, |model| {
            model.layers.iter().zip(&homes).filter(|(_, h)| **h == compute).map(|(l, _)| l.bytes).sum()
        });
    let timing = schedule.timings.get(m);
    SweepPoint {
        budget_bytes: budget,
        resident_bytes: resident,
        step_seconds: timing.map(|t| t.step.step_seconds),
        lower_bound_seconds: timing.map(|t| t.step.lower_bound_seconds),
        hidden_copy_fraction: timing.map(|t| t.step.hidden_copy_fraction),
        peak_bytes: peaks.devices.iter().find(|d| d.device == compute).map(|d| d.peak),
        problem: None,
    }
}

/// The smallest budget within 1% of the fastest step among the points that fit.
fn knee(points: &[SweepPoint]) -> Option<u64> {
    let best = points.iter().filter_map(|p| p.step_seconds).fold(f64::INFINITY, f64::min);
    points.iter().find(|p| p.step_seconds.is_some_and(|s| s <= best * 1.01)).map(|p| p.budget_bytes)
}

impl Sweep {
    /// The knee in words.
    pub fn knee_text(&self) -> Option<String> {
        self.knee_bytes
            .map(|k| format!("beyond {} on {} a step of `{}` gets no faster", Bytes(k), self.compute, self.model))
    }
}
