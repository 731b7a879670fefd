//! `graph_to_budgets`: the most each model may keep on each device, from its allocation — bytes
//! exact, in the user's order, checked against each device's memory.

use mgc_core::Device;
use mgc_grammar::{Amount, Mode, Target};
use serde::Serialize;

use super::error::{CompileError, Problem, ProblemKind};
use super::graph::{GraphModel, LayerGraph};
use crate::workflow::Workflow;

/// Every model's budgets, in the graph's model order.
#[derive(Clone, Debug, Serialize)]
pub struct Budgets {
    pub models: Vec<ModelBudgets>,
}

/// One model's budgets.
#[derive(Clone, Debug, Serialize)]
pub struct ModelBudgets {
    pub model: String,
    pub entries: Vec<BudgetEntry>,
    /// Why the compiler chose these budgets, for a model whose allocation is `auto`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Budgets {
    /// A model's budgets, in the user's order.
    pub fn of(&self, model: usize) -> &[BudgetEntry] {
        self.models.get(model).map_or(&[], |m| m.entries.as_slice())
    }
}

/// How much of a model a device may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetEntry {
    pub device: Device,
    pub bytes: u64,
    /// Takes what the others leave (`*`, or the last entry of shares and fractions).
    pub absorbs: bool,
}

/// Every model's budgets, or every allocation that cannot work. Models with an allocation come
/// first; models whose allocation is `auto` then share what the others leave.
pub fn graph_to_budgets(graph: &LayerGraph, workflow: &Workflow) -> Result<Budgets, Vec<CompileError>> {
    graph_to_budgets_within(graph, workflow, &[])
}

/// [`graph_to_budgets`], with `held_back` bytes (device, bytes) kept off each device's room for
/// `auto` models: what an earlier try of the plan found them short of.
pub fn graph_to_budgets_within(
    graph: &LayerGraph,
    workflow: &Workflow,
    held_back: &[(Device, u64)],
) -> Result<Budgets, Vec<CompileError>> {
    let mut models = Vec::new();
    let mut errors = Vec::new();
    for model in &graph.models {
        // `auto` models are given theirs below, from what the others leave.
        let budgets = if model.spec.auto_budgets { Ok(Vec::new()) } else { model_budgets(model, workflow) };
        match budgets {
            Ok(entries) => models.push(ModelBudgets { model: model.spec.name.clone(), entries, reason: None }),
            Err(problem) => errors.push(CompileError::Problem(problem)),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    for (m, model) in graph.models.iter().enumerate() {
        if model.spec.auto_budgets {
            let (entries, reason) = auto::budgets(graph, workflow, &models, m, held_back);
            if let Some(slot) = models.get_mut(m) {
                *slot = ModelBudgets { model: model.spec.name.clone(), entries, reason: Some(reason) };
            }
        }
    }
    Ok(Budgets { models })
}

/// The budgets an allocation gives a model, in the user's order, bytes exact.
fn model_budgets(model: &GraphModel, workflow: &Workflow) -> Result<Vec<BudgetEntry>, Problem> {
    let spec = &model.spec;
    let span = spec.allocation_span;
    let total = model.bytes;
    let usable = |device: Device| workflow.devices.iter().find(|d| d.device == device).map(|d| d.usable().get());
    let mut entries = Vec::new();
    if let Some(virtual_vram) = &spec.allocation.virtual_vram {
        // DisTorch's virtual VRAM: the donors hold `amount` between them, filled in order, each up
        // to what it can hold and the last one whatever is left; the compute device keeps the rest.
        entries.push(BudgetEntry { device: spec.compute, bytes: 0, absorbs: true });
        let mut left = virtual_vram.amount.value.get();
        for (i, donor) in virtual_vram.donors.iter().enumerate() {
            let last = i + 1 == virtual_vram.donors.len();
            let bytes = if last { left } else { left.min(usable(donor.value).unwrap_or(0)) };
            left -= bytes;
            if bytes > 0 {
                entries.push(BudgetEntry { device: donor.value, bytes, absorbs: false });
            }
        }
    }
    let ratio_sum = spec.allocation.ratio_sum();
    for entry in &spec.allocation.entries {
        let device = match entry.target.value {
            Target::Device(device) => device,
            Target::Compute => spec.compute,
        };
        let bytes = match entry.amount.value {
            Amount::Bytes(bytes) => bytes.get(),
            // Ratios without `*` are parts of their sum (8:8:4), as DisTorch reads them.
            Amount::Percent(p) => match ratio_sum {
                Some(sum) => p.part_of_floor(total, sum).unwrap_or(u64::MAX),
                None => p.times_floor(total).map_or(u64::MAX, |b| b / 100),
            },
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

/// `allocation = "auto"`: a model's budgets chosen by the compiler.
mod auto {
    use mgc_core::{Bytes, Device};

    use super::super::graph::{GraphModel, LayerGraph};
    use super::super::peaks::runtime_memory;
    use super::{BudgetEntry, ModelBudgets};
    use crate::workflow::{Prefetch, Workflow};

    /// A model's budgets: as much of it on its compute device as that device has room for (every
    /// byte there is one not copied each step), the rest on the devices with the fastest links to
    /// it that have room (other accelerators, then `cpu`), and what is left on `disk`. Room is a
    /// device's usable memory less the runtime's own, the budgets of the models decided before,
    /// and the activations and copies in flight of the models that run there together.
    pub fn budgets(
        graph: &LayerGraph,
        workflow: &Workflow,
        decided: &[ModelBudgets],
        m: usize,
        held_back: &[(Device, u64)],
    ) -> (Vec<BudgetEntry>, String) {
        let Some(model) = graph.models.get(m) else { return (Vec::new(), String::new()) };
        let compute = model.spec.compute;
        let room_on = |device: Device| room(graph, workflow, decided, m, device, held_back);
        let total = model.bytes;
        let on_compute = room_on(compute).min(total);
        if on_compute == total {
            let entries = vec![BudgetEntry { device: compute, bytes: total, absorbs: true }];
            let reason = format!("auto: all {} on {compute}, its compute device, which has room", Bytes(total));
            return (entries, reason);
        }
        let mut entries = vec![BudgetEntry { device: compute, bytes: on_compute, absorbs: false }];
        let mut parts = vec![format!("{} on {compute} (all the room it has)", Bytes(on_compute))];
        let mut left = total - on_compute;
        for device in spill_order(workflow, compute) {
            if left == 0 {
                break;
            }
            let bytes = room_on(device).min(left);
            if bytes > 0 {
                entries.push(BudgetEntry { device, bytes, absorbs: false });
                parts.push(format!("{} on {device}", Bytes(bytes)));
                left -= bytes;
            }
        }
        if left > 0 {
            entries.push(BudgetEntry { device: Device::Disk, bytes: left, absorbs: true });
            parts.push(format!("{} read from disk", Bytes(left)));
        } else if let Some(last) = entries.last_mut() {
            last.absorbs = true;
        }
        let reason = format!(
            "auto: {} does not fit on {compute}; fastest first: {} (other accelerators, then cpu, then disk: \
             every byte off {compute} is copied to it each step, over the fastest link that has room)",
            Bytes(total),
            parts.join(", ")
        );
        (entries, reason)
    }

    /// Where the rest of a model goes, fastest link to its compute device first: the other
    /// accelerators, then `cpu`.
    fn spill_order(workflow: &Workflow, compute: Device) -> Vec<Device> {
        let mut order: Vec<Device> =
            workflow.devices.iter().map(|d| d.device).filter(|d| *d != compute && d.is_accelerator()).collect();
        if compute != Device::Cpu && workflow.devices.iter().any(|d| d.device == Device::Cpu) {
            order.push(Device::Cpu);
        }
        order
    }

    /// What `device` can still give model `m`'s weights.
    fn room(
        graph: &LayerGraph,
        workflow: &Workflow,
        decided: &[ModelBudgets],
        m: usize,
        device: Device,
        held_back: &[(Device, u64)],
    ) -> u64 {
        let Some(spec) = workflow.devices.iter().find(|d| d.device == device) else { return 0 };
        let others: u64 = graph
            .models
            .iter()
            .enumerate()
            .filter(|(o, other)| *o != m && (!other.spec.auto_budgets || *o < m))
            .map(|(o, other)| {
                let budget: u64 = decided
                    .get(o)
                    .map_or(0, |b| b.entries.iter().filter(|e| e.device == device).map(|e| e.bytes).sum());
                budget.min(other.bytes)
            })
            .sum();
        let held: u64 = held_back.iter().filter(|(d, _)| *d == device).map(|(_, b)| *b).sum();
        spec.usable()
            .get()
            .saturating_sub(runtime_memory(workflow, graph, device).bytes)
            .saturating_sub(others)
            .saturating_sub(transient(graph, workflow, m, device))
            .saturating_sub(held)
    }

    /// The largest activations and copies in flight on `device` of any group of models that run
    /// together with model `m`.
    fn transient(graph: &LayerGraph, workflow: &Workflow, m: usize, device: Device) -> u64 {
        let depth = match workflow.schedule.prefetch {
            Prefetch::Layers(n) => u64::from(n),
            Prefetch::Auto => 1,
        };
        let of = |model: &GraphModel| {
            let largest = model.layers.iter().map(|l| l.bytes).max().unwrap_or(0);
            model.activation_bytes + (depth + 1) * largest
        };
        graph
            .live_together()
            .iter()
            .filter(|group| group.contains(&m))
            .map(|group| {
                group
                    .iter()
                    .filter_map(|&o| graph.models.get(o))
                    .filter(|o| o.spec.compute == device)
                    .map(of)
                    .sum::<u64>()
            })
            .max()
            .unwrap_or(0)
    }
}
