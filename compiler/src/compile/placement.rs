//! `budgets_to_placement`: the home of every layer within its model's budgets, written onto the
//! graph's layer nodes.
//!
//! Policies: `tail` does what DisTorch2 does (layers from the model's tail, each to the first
//! device in DisTorch's sorted order with room left); `head` fills from the first layer in the
//! user's device order; `auto` tries several sets of layers to keep resident on the compute
//! device and keeps the one the step simulation ([`super::simulate`]) predicts fastest.

use mgc_core::Device;
use serde::Serialize;

use super::budgets::{BudgetEntry, Budgets};
use super::cost::CostModel;
use super::error::{CompileError, Problem, ProblemKind};
use super::graph::{GraphModel, LayerGraph};
use super::simulate::{self, Simulation};
use crate::workflow::{Placement as Policy, Prefetch, Workflow};

/// The graph with every layer's home, and why each model's layers are where they are.
#[derive(Clone, Debug)]
pub struct Placement {
    pub graph: LayerGraph,
    pub budgets: Budgets,
    /// Per model, in the graph's order.
    pub reasons: Vec<String>,
    /// The deepest prefetch `prefetch = "auto"` may choose, which the choice of homes assumed.
    pub max_prefetch: u32,
}

/// A model's placement, as `mgc explain --stage placement` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct ModelPlacementView {
    pub model: String,
    pub compute: Device,
    pub reason: String,
    /// Runs of consecutive layers with the same home: `(first, last, home)`.
    pub homes: Vec<(usize, usize, Device)>,
}

/// Each model's homes as runs of layers, and why, for people.
pub fn view(graph: &LayerGraph, reasons: &[String]) -> Vec<ModelPlacementView> {
    graph
        .models
        .iter()
        .enumerate()
        .map(|(m, model)| ModelPlacementView {
            model: model.spec.name.clone(),
            compute: model.spec.compute,
            reason: reasons.get(m).cloned().unwrap_or_default(),
            homes: runs(&graph.homes(m).unwrap_or_default()),
        })
        .collect()
}

/// `(first, last, value)` for each run of equal values.
fn runs(homes: &[Device]) -> Vec<(usize, usize, Device)> {
    let mut out: Vec<(usize, usize, Device)> = Vec::new();
    for (i, &home) in homes.iter().enumerate() {
        match out.last_mut() {
            Some((_, last, device)) if *device == home => *last = i,
            _ => out.push((i, i, home)),
        }
    }
    out
}

/// Places every layer of every model within its budgets; `max_prefetch` bounds the distance
/// `prefetch = "auto"` may choose when candidates are compared.
pub fn budgets_to_placement(
    mut graph: LayerGraph,
    budgets: Budgets,
    workflow: &Workflow,
    cost: &CostModel,
    max_prefetch: u32,
) -> Result<Placement, Vec<CompileError>> {
    let mut reasons = Vec::new();
    let mut errors = Vec::new();
    let mut all_homes = Vec::new();
    for (m, model) in graph.models.iter().enumerate() {
        match place_model(model, budgets.of(m), workflow, cost, max_prefetch) {
            Ok((homes, reason)) => {
                all_homes.push(homes);
                reasons.push(reason);
            }
            Err(problem) => errors.push(CompileError::Problem(problem)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (m, homes) in all_homes.iter().enumerate() {
        graph.set_homes(m, homes);
    }
    Ok(Placement { graph, budgets, reasons, max_prefetch })
}

/// Each layer's compute seconds on the model's compute device, slowed when copies share it.
pub fn layer_times(model: &GraphModel, budgets: &[BudgetEntry], cost: &CostModel) -> Vec<f64> {
    let compute = model.spec.compute;
    // The compute device streams when its budget is smaller than the model.
    let streams = budgets.iter().find(|b| b.device == compute).is_none_or(|b| b.bytes < model.bytes);
    let sharing = cost.sharing_factor(compute, streams);
    let times: Vec<f64> =
        model.layers.iter().map(|l| cost.layer_seconds(&l.work, compute, streams) * sharing).collect();
    match cost.copy_slowdown(compute) {
        Some(slowdown) if streams && slowdown > 1.0 => {
            // The kernels slow down while copies run beside them: for the part of the step the
            // copies take (all of it when they take longer than the compute).
            let computing: f64 = times.iter().sum();
            let copying = copy_seconds(model, budgets, cost);
            let part = if computing > 0.0 { (copying / computing).min(1.0) } else { 0.0 };
            let factor = (slowdown - 1.0).mul_add(part, 1.0);
            times.into_iter().map(|t| t * factor).collect()
        }
        _ => times,
    }
}

/// Seconds a step of `model` spends copying to its compute device: what its budget there does
/// not hold, taken from its other budgets in order (the absorbing one takes the rest), each at
/// its link's rate.
fn copy_seconds(model: &GraphModel, budgets: &[BudgetEntry], cost: &CostModel) -> f64 {
    let compute = model.spec.compute;
    let held = budgets.iter().find(|b| b.device == compute).map_or(0, |b| b.bytes);
    let mut left = model.bytes.saturating_sub(held);
    let mut seconds = 0.0;
    for b in budgets.iter().filter(|b| b.device != compute) {
        let taken = if b.absorbs { left } else { left.min(b.bytes) };
        left -= taken;
        let rate = cost.rate(b.device, compute).bytes_per_second;
        if rate > 0.0 {
            seconds += taken as f64 / rate;
        }
    }
    seconds
}

/// One model's step under given homes, with the workflow's prefetch setting.
pub fn simulate_model(
    model: &GraphModel,
    times: &[f64],
    homes: &[Device],
    workflow: &Workflow,
    cost: &CostModel,
    max_prefetch: u32,
) -> Simulation {
    let sim = simulate::Model {
        layers: &model.layers,
        times,
        homes,
        compute: model.spec.compute,
        batch_below: workflow.schedule.batch_below.get(),
    };
    match workflow.schedule.prefetch {
        Prefetch::Auto => simulate::simulate_auto(&sim, cost, max_prefetch),
        Prefetch::Layers(p) => simulate::simulate(&sim, cost, p),
    }
}

/// A model's homes and why, by its policy.
fn place_model(
    model: &GraphModel,
    budgets: &[BudgetEntry],
    workflow: &Workflow,
    cost: &CostModel,
    max_prefetch: u32,
) -> Result<(Vec<Device>, String), Problem> {
    match model.spec.placement {
        Policy::Tail => Ok((
            tail(model, budgets)?,
            "tail: as DisTorch2, layers from the model's tail to the first device with room".to_owned(),
        )),
        Policy::Head => {
            Ok((head(model, budgets)?, "head: layers from the first, devices in the allocation's order".to_owned()))
        }
        Policy::Auto => {
            let times = layer_times(model, budgets, cost);
            let step =
                |homes: &[Device]| simulate_model(model, &times, homes, workflow, cost, max_prefetch).step.step_seconds;
            fastest(model, budgets, &step)
        }
    }
}

/// `auto`: every candidate resident set, timed, and the fastest kept (the first of equals).
fn fastest(
    model: &GraphModel,
    budgets: &[BudgetEntry],
    step: &dyn Fn(&[Device]) -> f64,
) -> Result<(Vec<Device>, String), Problem> {
    let compute = model.spec.compute;
    let mut tried = Vec::new();
    let donors = budgets.iter().filter(|b| b.device != compute).count();
    for (name, resident) in candidates(model, budgets) {
        let homes = with_resident(model, budgets, &resident)?;
        let seconds = step(&homes);
        tried.push((name.to_owned(), homes, seconds));
        // With several devices to stream from, their copy streams can run side by side.
        if donors > 1
            && let Some(homes) = interleaved(model, budgets, &resident)
        {
            let seconds = step(&homes);
            tried.push((format!("{name}, streamed layers interleaved across devices"), homes, seconds));
        }
    }
    let best =
        tried.iter().enumerate().min_by(|a, b| a.1.2.total_cmp(&b.1.2).then(a.0.cmp(&b.0))).map_or(0, |(i, _)| i);
    let others: Vec<String> = tried
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != best)
        .map(|(_, (name, _, seconds))| format!("{name} {seconds:.4} s"))
        .collect();
    let Some((name, homes, seconds)) = tried.into_iter().nth(best) else {
        // A model without layers: nothing to place.
        return Ok((Vec::new(), String::new()));
    };
    let reason = if homes.iter().all(|h| *h == compute) {
        format!("auto: every layer resident on `{compute}`")
    } else if others.is_empty() {
        format!("auto: {name}, predicted {seconds:.4} s a step")
    } else {
        format!("auto: {name}, predicted {seconds:.4} s a step (also tried: {})", others.join(", "))
    };
    Ok((homes, reason))
}

/// DisTorch2's rule: from the tail, each layer to the first device (sorted as DisTorch sorts
/// them: by name, `cpu` last) whose quota still holds it; what fits nowhere to the absorbing device.
fn tail(model: &GraphModel, budgets: &[BudgetEntry]) -> Result<Vec<Device>, Problem> {
    let mut quota: Vec<(Device, u64)> = budgets.iter().filter(|b| !b.absorbs).map(|b| (b.device, b.bytes)).collect();
    quota.sort_by_key(|(d, _)| (*d == Device::Disk, *d == Device::Cpu, d.to_string()));
    let order: Vec<usize> = (0..model.layers.len()).rev().collect();
    first_fit(model, budgets, quota, &order)
}

/// From the first layer, each to the first device in the user's order with room.
fn head(model: &GraphModel, budgets: &[BudgetEntry]) -> Result<Vec<Device>, Problem> {
    let quota: Vec<(Device, u64)> = budgets.iter().filter(|b| !b.absorbs).map(|b| (b.device, b.bytes)).collect();
    let order: Vec<usize> = (0..model.layers.len()).collect();
    first_fit(model, budgets, quota, &order)
}

fn first_fit(
    model: &GraphModel,
    budgets: &[BudgetEntry],
    mut quota: Vec<(Device, u64)>,
    order: &[usize],
) -> Result<Vec<Device>, Problem> {
    let absorber = budgets.iter().find(|b| b.absorbs).map(|b| b.device);
    let mut homes: Vec<Option<Device>> = vec![None; model.layers.len()];
    let (mut left, mut largest) = (0u64, 0u64);
    for &i in order {
        let Some(layer) = model.layers.get(i) else {
            continue;
        };
        let slot = quota.iter_mut().find(|(_, q)| *q >= layer.bytes);
        let home = match (slot, absorber) {
            (Some((device, q)), _) => {
                *q -= layer.bytes;
                *device
            }
            (None, Some(device)) => device,
            (None, None) => {
                left += layer.bytes;
                largest = largest.max(layer.bytes);
                continue;
            }
        };
        if let Some(h) = homes.get_mut(i) {
            *h = Some(home);
        }
    }
    if left > 0 {
        let kind = ProblemKind::DoesNotPack { model: model.spec.name.clone(), left, largest };
        return Err(Problem::new(kind, model.spec.allocation_span));
    }
    Ok(homes.into_iter().map(|h| h.unwrap_or(model.spec.compute)).collect())
}

/// Sets of layers to keep resident on the compute device, within its budget.
fn candidates(model: &GraphModel, budgets: &[BudgetEntry]) -> Vec<(&'static str, Vec<bool>)> {
    let compute = model.spec.compute;
    let n = model.layers.len();
    let bytes: Vec<u64> = model.layers.iter().map(|l| l.bytes).collect();
    let budget = budgets.iter().find(|b| b.device == compute).map_or(0, |b| b.bytes);
    let take_in = |order: &mut dyn Iterator<Item = usize>| {
        let mut resident = vec![false; n];
        let mut used = 0u64;
        for i in order {
            let b = bytes.get(i).copied().unwrap_or(0);
            if used + b <= budget {
                used += b;
                if let Some(r) = resident.get_mut(i) {
                    *r = true;
                }
            }
        }
        resident
    };
    let head = take_in(&mut (0..n));
    let tail = take_in(&mut (0..n).rev());
    if head.iter().all(|r| *r) {
        return vec![("every layer resident", head)];
    }
    // Spread: keep the resident share even along the model, so that every streamed layer has
    // resident layers before it whose compute hides its copy.
    let total: u64 = bytes.iter().sum::<u64>().max(1);
    let share = budget as f64 / total as f64;
    let mut spread = vec![false; n];
    let (mut seen, mut used) = (0u64, 0u64);
    for (i, &b) in bytes.iter().enumerate() {
        seen += b;
        if used + b <= budget && (used + b) as f64 <= share * seen as f64 + b as f64 / 2.0 {
            used += b;
            if let Some(r) = spread.get_mut(i) {
                *r = true;
            }
        }
    }
    // Top up what the rounding left, largest layers first.
    let mut rest: Vec<usize> = (0..n).filter(|&i| !spread.get(i).copied().unwrap_or(true)).collect();
    rest.sort_by_key(|&i| std::cmp::Reverse(bytes.get(i).copied().unwrap_or(0)));
    for i in rest {
        let b = bytes.get(i).copied().unwrap_or(0);
        if used + b <= budget {
            used += b;
            if let Some(r) = spread.get_mut(i) {
                *r = true;
            }
        }
    }
    vec![
        ("resident layers spread between streamed ones", spread),
        ("resident from the head", head),
        ("resident from the tail", tail),
    ]
}

/// Homes for a resident set with the streamed layers dealt across the other devices in
/// proportion to their budgets, so that copies from several devices overlap; `None` when a
/// layer fits nowhere.
fn interleaved(model: &GraphModel, budgets: &[BudgetEntry], resident: &[bool]) -> Option<Vec<Device>> {
    let compute = model.spec.compute;
    let mut donors: Vec<(Device, u64, u64, bool)> =
        budgets.iter().filter(|b| b.device != compute).map(|b| (b.device, b.bytes.max(1), 0, b.absorbs)).collect();
    let absorbs_compute = budgets.iter().any(|b| b.absorbs && b.device == compute);
    let mut homes = vec![compute; model.layers.len()];
    for (i, layer) in model.layers.iter().enumerate() {
        if resident.get(i).copied().unwrap_or(false) {
            continue;
        }
        let choice = donors.iter_mut().filter(|(_, cap, used, absorbs)| *absorbs || used + layer.bytes <= *cap).min_by(
            |a, b| {
                let fill = |d: &(Device, u64, u64, bool)| (d.2 + layer.bytes) as f64 / d.1 as f64;
                fill(a).total_cmp(&fill(b))
            },
        );
        match choice {
            Some((device, _, used, _)) => {
                *used += layer.bytes;
                if let Some(h) = homes.get_mut(i) {
                    *h = *device;
                }
            }
            None if absorbs_compute => {}
            None => return None,
        }
    }
    Some(homes)
}

/// Homes for a resident set: resident layers on the compute device, the others first-fit on the
/// other devices in the user's order, leftovers on the absorbing device.
fn with_resident(model: &GraphModel, budgets: &[BudgetEntry], resident: &[bool]) -> Result<Vec<Device>, Problem> {
    let compute = model.spec.compute;
    let quota: Vec<(Device, u64)> =
        budgets.iter().filter(|b| !b.absorbs && b.device != compute).map(|b| (b.device, b.bytes)).collect();
    let order: Vec<usize> = (0..model.layers.len()).filter(|&i| !resident.get(i).copied().unwrap_or(false)).collect();
    let absorbs_compute = budgets.iter().any(|b| b.absorbs && b.device == compute);
    let mut homes = if absorbs_compute {
        // The compute device takes the rest: streamed layers fill the other devices first.
        let mut homes = vec![compute; model.layers.len()];
        let mut quota = quota;
        for &i in &order {
            let Some(layer) = model.layers.get(i) else {
                continue;
            };
            if let Some((device, q)) = quota.iter_mut().find(|(_, q)| *q >= layer.bytes) {
                *q -= layer.bytes;
                if let Some(h) = homes.get_mut(i) {
                    *h = *device;
                }
            }
        }
        homes
    } else {
        first_fit(model, budgets, quota, &order)?
    };
    for (i, r) in resident.iter().enumerate() {
        if *r && let Some(h) = homes.get_mut(i) {
            *h = compute;
        }
    }
    Ok(homes)
}
