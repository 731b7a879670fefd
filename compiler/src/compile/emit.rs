//! `placement_to_plan`: the plan as data, with every device's peak checked against its memory.

use mgc_core::{Bytes, Device};
use mgc_plan::{
    Budget, DevicePlan, InputFile, LayerPlan, LinkPlan, ModelPlan, PLAN_VERSION, Plan, Predicted, ScheduleSettings,
    TensorPlan, Transfer,
};

use super::cost::CostModel;
use super::error::{Problem, ProblemKind};
use super::graph::LayerGraph;
use super::place::ModelPlacement;
use crate::inventory::{FileFormat, Role};
use crate::workflow::{Prefetch, Workflow};

/// Builds the plan, or says which devices would run out of memory and by how much.
pub fn placement_to_plan(
    workflow: &Workflow,
    graph: &LayerGraph,
    placements: &[ModelPlacement],
    cost: &CostModel,
) -> Result<Plan, Vec<Problem>> {
    let inputs = graph
        .inputs
        .iter()
        .map(|input| InputFile {
            path: input.path.display().to_string(),
            format: match input.inventory.format {
                FileFormat::Safetensors => mgc_plan::FileFormat::Safetensors,
                FileFormat::Gguf => mgc_plan::FileFormat::Gguf,
            },
            size_bytes: input.inventory.file_size,
            header_bytes: input.inventory.header_size,
            header_sha256: input.header_sha256.clone(),
        })
        .collect();

    let mut models = Vec::new();
    let mut transfers = Vec::new();
    for (m, (model, placement)) in graph.models.iter().zip(placements).enumerate() {
        let s = &placement.schedule;
        let layers = model
            .layers
            .iter()
            .zip(&placement.homes)
            .zip(&s.layers)
            .enumerate()
            .map(|(index, ((layer, home), &(seconds, start, end)))| LayerPlan {
                index,
                name: layer.name.clone(),
                bytes: layer.bytes,
                home: *home,
                streamed: *home != model.spec.compute,
                flops: layer.flops.round(),
                compute_seconds: ns(seconds),
                start_seconds: ns(start),
                end_seconds: ns(end),
                tensors: layer
                    .tensors
                    .iter()
                    .map(|t| TensorPlan {
                        name: t.name.clone(),
                        dtype: t.dtype.name().to_owned(),
                        shape: t.shape.clone(),
                        offset: t.offset,
                        bytes: t.bytes,
                    })
                    .collect(),
            })
            .collect();
        for t in &s.transfers {
            transfers.push(Transfer {
                id: transfers.len(),
                model: m,
                first_layer: t.first,
                last_layer: t.last,
                from: t.from,
                to: model.spec.compute,
                bytes: t.bytes,
                issue_after_layer: t.issue_after,
                from_previous_step: t.from_previous_step,
                batched: t.batched,
                start_seconds: ns(t.start),
                end_seconds: ns(t.end),
            });
        }
        let budgets = placement
            .budgets
            .iter()
            .map(|b| Budget {
                device: b.device,
                bytes: b.bytes,
                used_bytes: model
                    .layers
                    .iter()
                    .zip(&placement.homes)
                    .filter(|(_, h)| **h == b.device)
                    .map(|(l, _)| l.bytes)
                    .sum(),
            })
            .collect();
        models.push(ModelPlan {
            name: model.spec.name.clone(),
            input: model.input,
            file: model.spec.file.display().to_string(),
            prefix: model.prefix.clone(),
            family: model.family.name().to_owned(),
            role: role(model.role),
            phase: model.phase,
            compute: model.spec.compute,
            allocation: model.spec.allocation.to_string(),
            placement: match model.spec.placement {
                crate::workflow::Placement::Auto => mgc_plan::Placement::Auto,
                crate::workflow::Placement::Tail => mgc_plan::Placement::Tail,
                crate::workflow::Placement::Head => mgc_plan::Placement::Head,
            },
            placement_reason: placement.reason.clone(),
            prefetch: s.prefetch,
            tokens: model.tokens,
            budgets,
            activation_bytes: model.activation_bytes,
            bytes: model.bytes,
            layers,
            predicted: Predicted {
                step_seconds: ns(s.step_seconds),
                lower_bound_seconds: ns(s.lower_bound_seconds),
                compute_seconds: ns(s.compute_seconds),
                copy_seconds: ns(s.copy_seconds),
                hidden_copy_fraction: (s.hidden_copy_fraction * 1e6).round() / 1e6,
            },
        });
    }

    let (devices, problems) = devices(workflow, graph, placements, cost);
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut links: Vec<LinkPlan> = Vec::new();
    for t in &transfers {
        if links.iter().any(|l| l.from == t.from && l.to == t.to) {
            continue;
        }
        let rate = cost.rate(t.from, t.to);
        links.push(LinkPlan {
            from: t.from,
            to: t.to,
            bandwidth_bytes_per_second: rate.bytes_per_second as u64,
            source: rate.source,
        });
    }
    let predicted =
        mgc_plan::step_model(&models).and_then(|i| models.get(i)).map(|m| m.predicted.clone()).unwrap_or_default();
    Ok(Plan {
        format_version: PLAN_VERSION,
        generator: format!("mgc {}", env!("CARGO_PKG_VERSION")),
        inputs,
        devices,
        links,
        schedule: ScheduleSettings {
            prefetch: models.iter().map(|m| m.prefetch).max().unwrap_or(0),
            prefetch_auto: workflow.schedule.prefetch == Prefetch::Auto,
            batch_below_bytes: workflow.schedule.batch_below.get(),
        },
        models,
        transfers,
        predicted,
    })
}

/// Seconds to the nanosecond: plans read better and stay exact through JSON.
fn ns(seconds: f64) -> f64 {
    (seconds * 1e9).round() / 1e9
}

fn role(role: Role) -> mgc_plan::Role {
    match role {
        Role::TextEncoder => mgc_plan::Role::TextEncoder,
        Role::Diffusion => mgc_plan::Role::Diffusion,
        Role::Vae => mgc_plan::Role::Vae,
        Role::Unknown => mgc_plan::Role::Unknown,
    }
}

/// Each device's resident bytes and peak: resident weights, plus the largest transient any one
/// model needs there (models run one at a time): copies in flight and activations on its compute
/// device, pinned staging on `cpu`.
fn devices(
    workflow: &Workflow,
    graph: &LayerGraph,
    placements: &[ModelPlacement],
    cost: &CostModel,
) -> (Vec<DevicePlan>, Vec<Problem>) {
    let mut list: Vec<(Device, u64, u64, Option<mgc_core::Span>)> =
        workflow.devices.iter().map(|d| (d.device, d.memory.get(), d.reserve.get(), d.span)).collect();
    let uses_disk = placements.iter().any(|p| p.homes.contains(&Device::Disk));
    if uses_disk {
        list.push((Device::Disk, 0, 0, None));
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (device, memory, reserve, span) in list {
        let mut resident = 0u64;
        let mut transient = 0u64;
        let mut transient_parts = String::new();
        let mut staging = 0u64;
        for (model, placement) in graph.models.iter().zip(placements) {
            resident += model
                .layers
                .iter()
                .zip(&placement.homes)
                .filter(|(_, h)| **h == device)
                .map(|(l, _)| l.bytes)
                .sum::<u64>();
            if model.spec.compute == device {
                let here = placement.schedule.inflight_peak + model.activation_bytes;
                if here > transient {
                    transient = here;
                    transient_parts = format!(
                        "{} in flight and {} of activations while `{}` runs",
                        Bytes(placement.schedule.inflight_peak),
                        Bytes(model.activation_bytes),
                        model.spec.name
                    );
                }
            }
            if device == Device::Cpu {
                staging = staging.max(placement.schedule.staging);
            }
        }
        let peak = if device == Device::Disk { 0 } else { resident + transient + staging };
        let usable = memory.saturating_sub(reserve);
        if device != Device::Disk && peak > usable {
            let mut parts = format!("{} of resident weights", Bytes(resident));
            if transient > 0 {
                parts.push_str(&format!(", {transient_parts}"));
            }
            if staging > 0 {
                parts.push_str(&format!(", {} of pinned staging", Bytes(staging)));
            }
            let kind =
                ProblemKind::DeviceOverMemory { device: device.to_string(), peak, usable, short: peak - usable, parts };
            let span =
                span.unwrap_or_else(|| graph.models.first().map_or_else(Default::default, |m| m.spec.allocation_span));
            problems.push(Problem::new(kind, span));
        }
        out.push(DevicePlan {
            name: device,
            memory_bytes: memory,
            reserve_bytes: reserve,
            resident_bytes: resident,
            peak_bytes: peak,
            staging_bytes: staging,
            flops_per_second: if device == Device::Disk { 0.0 } else { cost.flops(device) },
        });
    }
    (out, problems)
}
