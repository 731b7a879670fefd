//! `graph_to_placement`: each model's budget per device, from its allocation, and the home of
//! every layer within those budgets.
//!
//! Policies: `tail` does what DisTorch2 does (layers from the model's tail, each to the first
//! device in DisTorch's sorted order with room left); `head` fills from the first layer in the
//! user's device order; `auto` tries several sets of layers to keep resident on the compute
//! device and keeps the one the schedule simulation predicts fastest.

use mgc_core::Device;
use mgc_grammar::{Amount, Mode, Target};

use super::cost::CostModel;
use super::error::{Problem, ProblemKind};
use super::graph::GraphModel;
use super::schedule::{ModelSchedule, schedule, schedule_auto};
use crate::workflow::{Placement, Prefetch, Workflow};

/// How much of a model a device may hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BudgetEntry {
    pub device: Device,
    pub bytes: u64,
    /// Takes what the others leave (`*`, or the last entry of shares and fractions).
    pub absorbs: bool,
}

/// Where a model's layers live, and the step that follows from it.
#[derive(Clone, Debug)]
pub struct ModelPlacement {
    pub budgets: Vec<BudgetEntry>,
    pub homes: Vec<Device>,
    pub reason: String,
    pub schedule: ModelSchedule,
}

/// The budgets an allocation gives a model, in the user's order, bytes exact.
pub fn budgets(model: &GraphModel, workflow: &Workflow) -> Result<Vec<BudgetEntry>, Problem> {
    let spec = &model.spec;
    let span = spec.allocation_span;
    let total = model.bytes;
    let usable = |device: Device| workflow.devices.iter().find(|d| d.device == device).map(|d| d.usable().get());
    let mut entries = Vec::new();
    for entry in &spec.allocation.entries {
        let device = match entry.target.value {
            Target::Device(device) => device,
            Target::Compute => spec.compute,
        };
        let bytes = match entry.amount.value {
            Amount::Bytes(bytes) => bytes.get(),
            Amount::Percent(p) => p.times_floor(total).map_or(u64::MAX, |b| b / 100),
            Amount::Fraction(f) => {
                if device == Device::Disk {
                    return Err(Problem::new(ProblemKind::FractionOfDisk { model: spec.name.clone() }, span));
                }
                f.times_floor(usable(device).unwrap_or(0)).unwrap_or(u64::MAX)
            }
            Amount::Rest => 0,
        };
        entries.push(BudgetEntry { device, bytes, absorbs: entry.amount.value == Amount::Rest });
    }
    // Shares and fractions are approximate by nature: without `*`, the last entry takes the rest.
    if !entries.iter().any(|e| e.absorbs)
        && spec.allocation.mode != Mode::Bytes
        && let Some(last) = entries.last_mut()
    {
        last.absorbs = true;
    }
    let fixed: u64 = entries.iter().filter(|e| !e.absorbs).map(|e| e.bytes).fold(0, u64::saturating_add);
    for entry in entries.iter_mut().filter(|e| e.absorbs) {
        entry.bytes = entry.bytes.max(total.saturating_sub(fixed));
    }
    if !entries.iter().any(|e| e.absorbs) && fixed < total {
        let kind = ProblemKind::DoesNotFit {
            model: spec.name.clone(),
            model_bytes: total,
            budgets: fixed,
            short: total - fixed,
        };
        return Err(Problem::new(kind, span));
    }
    for entry in &entries {
        if let Some(usable) = usable(entry.device).filter(|_| entry.device != Device::Disk)
            && entry.bytes > usable
            && !(entry.absorbs && entry.bytes == 0)
        {
            let kind = ProblemKind::BudgetOverDevice {
                model: spec.name.clone(),
                device: entry.device.to_string(),
                budget: entry.bytes,
                usable,
            };
            return Err(Problem::new(kind, span));
        }
    }
    Ok(entries)
}

/// Places every layer of a model and schedules its step.
/// `max_prefetch` bounds the distance `prefetch = "auto"` may choose.
pub fn place_model(
    model: &GraphModel,
    workflow: &Workflow,
    cost: &CostModel,
    max_prefetch: u32,
) -> Result<ModelPlacement, Problem> {
    let budgets = budgets(model, workflow)?;
    let compute = model.spec.compute;
    // The compute device streams when its budget is smaller than the model.
    let streams = budgets.iter().find(|b| b.device == compute).is_none_or(|b| b.bytes < model.bytes);
    let sharing = cost.sharing_factor(compute, streams);
    let times: Vec<f64> =
        model.layers.iter().map(|l| cost.layer_seconds(&l.tensors, model.tokens, compute) * sharing).collect();
    let simulate = |homes: &[Device]| match workflow.schedule.prefetch {
        Prefetch::Auto => schedule_auto(
            &model.layers,
            &times,
            homes,
            compute,
            cost,
            workflow.schedule.batch_below.get(),
            max_prefetch,
        ),
        Prefetch::Layers(p) => {
            schedule(&model.layers, &times, homes, compute, cost, p, workflow.schedule.batch_below.get())
        }
    };
    let (homes, reason) = match model.spec.placement {
        Placement::Tail => (
            tail(model, &budgets)?,
            "tail: as DisTorch2, layers from the model's tail to the first device with room".to_owned(),
        ),
        Placement::Head => {
            (head(model, &budgets)?, "head: layers from the first, devices in the allocation's order".to_owned())
        }
        Placement::Auto => {
            let mut tried = Vec::new();
            let donors = budgets.iter().filter(|b| b.device != compute).count();
            for (name, resident) in candidates(model, &budgets) {
                let homes = with_resident(model, &budgets, &resident)?;
                let step = simulate(&homes).step_seconds;
                tried.push((name.to_owned(), homes, step));
                // With several devices to stream from, their copy streams can run side by side.
                if donors > 1
                    && let Some(homes) = interleaved(model, &budgets, &resident)
                {
                    let step = simulate(&homes).step_seconds;
                    tried.push((format!("{name}, streamed layers interleaved across devices"), homes, step));
                }
            }
            let best = tried
                .iter()
                .enumerate()
                .min_by(|a, b| a.1.2.total_cmp(&b.1.2).then(a.0.cmp(&b.0)))
                .map(|(i, _)| i)
                .unwrap_or(0);
            let others: Vec<String> = tried
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != best)
                .map(|(_, (name, _, step))| format!("{name} {step:.4} s"))
                .collect();
            let Some((name, homes, step)) = tried.into_iter().nth(best) else {
                return Ok(ModelPlacement {
                    budgets,
                    homes: Vec::new(),
                    reason: String::new(),
                    schedule: simulate(&[]),
                });
            };
            let streamed = homes.iter().any(|h| *h != compute);
            let reason = if !streamed {
                format!("auto: every layer resident on `{compute}`")
            } else if others.is_empty() {
                format!("auto: {name}, predicted {step:.4} s a step")
            } else {
                format!("auto: {name}, predicted {step:.4} s a step (also tried: {})", others.join(", "))
            };
            (homes, reason)
        }
    };
    let schedule = simulate(&homes);
    Ok(ModelPlacement { budgets, homes, reason, schedule })
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
