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

/// Every model's budgets, or every allocation that cannot work.
pub fn graph_to_budgets(graph: &LayerGraph, workflow: &Workflow) -> Result<Budgets, Vec<CompileError>> {
    let mut models = Vec::new();
    let mut errors = Vec::new();
    for model in &graph.models {
        match model_budgets(model, workflow) {
            Ok(entries) => models.push(ModelBudgets { model: model.spec.name.clone(), entries }),
            Err(problem) => errors.push(CompileError::Problem(problem)),
        }
    }
    if errors.is_empty() { Ok(Budgets { models }) } else { Err(errors) }
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
