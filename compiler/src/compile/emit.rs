//! `peaks_to_plan`: the annotated graph serialized as the plan — inputs, devices and their peaks,
//! links, each model's layers with their homes and timings, and every copy node as a transfer.

use mgc_core::Device;
use mgc_plan::{
    AttentionPlan, Budget, DevicePlan, InputFile, LayerPlan, LinkPlan, ModelPlan, PLAN_VERSION, Plan, Predicted,
    RunPrediction, ScheduleSettings, TensorPlan, Transfer,
};

use super::cost::{CLASS_UNCERTAINTY, CostModel, FlopsBasis};
use super::graph::{GraphModel, Input, LayerGraph};
use super::peaks::{DevicePeak, Peaks};
use super::schedule::{ModelTiming, Schedule};
use crate::inventory::{FileFormat, Role};
use crate::workflow::{Placement, Prefetch, Workflow};

/// The plan: what the graph, its annotations and the peaks say, as data.
pub fn peaks_to_plan(peaks: &Peaks, workflow: &Workflow, cost: &CostModel) -> Plan {
    let schedule = &peaks.schedule;
    let graph = &schedule.graph;
    let mut models = Vec::new();
    let mut transfers = Vec::new();
    for (m, (model, timing)) in graph.models.iter().zip(&schedule.timings).enumerate() {
        transfers.extend(model_transfers(graph, m, transfers.len()));
        models.push(model_plan(schedule, m, model, timing));
    }
    let links = links(&transfers, cost);
    let predicted =
        mgc_plan::step_model(&models).and_then(|i| models.get(i)).map(|m| m.predicted.clone()).unwrap_or_default();
    Plan {
        format_version: PLAN_VERSION,
        generator: format!("mgc {}", env!("CARGO_PKG_VERSION")),
        inputs: graph.inputs.iter().map(input_file).collect(),
        devices: peaks.devices.iter().map(device_plan).collect(),
        links,
        schedule: ScheduleSettings {
            prefetch: models.iter().map(|m| m.prefetch).max().unwrap_or(0),
            prefetch_auto: workflow.schedule.prefetch == Prefetch::Auto,
            batch_below_bytes: workflow.schedule.batch_below.get(),
        },
        run: Some(run_prediction(graph, &models, workflow, cost)),
        models,
        transfers,
        predicted,
    }
}

/// The whole run from each model's step: the text encoders once, the diffusion models' steps
/// (shared out among models that take turns, as Wan 2.2's experts split the steps), the VAE once.
/// Loading the resident weights before the first step is not counted.
fn run_prediction(graph: &LayerGraph, models: &[ModelPlan], workflow: &Workflow, cost: &CostModel) -> RunPrediction {
    let family = graph.models.iter().find(|m| m.role == Role::Diffusion).map(|m| m.family);
    // Without a diffusion model nothing is guided: one pass, at the scale given if any.
    let (cfg, passes) = match family {
        Some(family) => (workflow.sampling.cfg(family), workflow.sampling.passes(family)),
        None => (workflow.sampling.cfg.unwrap_or(1.0), 1),
    };
    let steps = workflow.sampling.steps();
    let seconds = |role: mgc_plan::Role| -> (f64, usize) {
        let of_role: Vec<f64> = models.iter().filter(|m| m.role == role).map(|m| m.predicted.step_seconds).collect();
        (of_role.iter().sum(), of_role.len())
    };
    let (encode, _) = seconds(mgc_plan::Role::TextEncoder);
    let (diffusion, experts) = seconds(mgc_plan::Role::Diffusion);
    let (decode, _) = seconds(mgc_plan::Role::Vae);
    let sampling = diffusion * steps as f64 / experts.max(1) as f64;
    let (basis, uncertainty) = basis(models, cost);
    RunPrediction {
        steps,
        cfg,
        passes,
        encode_seconds: ns(encode),
        sampling_seconds: ns(sampling),
        decode_seconds: ns(decode),
        total_seconds: ns(encode + sampling + decode),
        basis,
        uncertainty,
    }
}

/// Where the compute figures of the models' devices come from, and how far defaults may be off.
fn basis(models: &[ModelPlan], cost: &CostModel) -> (String, Option<f64>) {
    let mut devices: Vec<Device> = models.iter().map(|m| m.compute).collect();
    devices.sort();
    devices.dedup();
    let mut defaults = Vec::new();
    let mut measured = false;
    for device in devices {
        match cost.flops_basis(device) {
            FlopsBasis::Class(class) => defaults.push(format!("the {} class for `{device}`", class.replace(' ', ""))),
            FlopsBasis::Default => {
                let what = if device.is_accelerator() { "GPU" } else { "CPU" };
                defaults.push(format!("a generic {what} for `{device}`"));
            }
            FlopsBasis::Declared | FlopsBasis::Profile => measured = true,
        }
    }
    if defaults.is_empty() {
        let what = if measured { "measured or declared figures" } else { "no compute" };
        return (what.to_owned(), None);
    }
    (format!("default figures: {}", defaults.join(", ")), Some(CLASS_UNCERTAINTY))
}

/// Seconds to the nanosecond: plans read better and stay exact through JSON.
fn ns(seconds: f64) -> f64 {
    (seconds * 1e9).round() / 1e9
}

fn input_file(input: &Input) -> InputFile {
    InputFile {
        path: input.path.display().to_string(),
        format: match input.inventory.format {
            FileFormat::Safetensors => mgc_plan::FileFormat::Safetensors,
            FileFormat::Gguf => mgc_plan::FileFormat::Gguf,
        },
        size_bytes: input.inventory.file_size,
        header_bytes: input.inventory.header_size,
        header_sha256: input.header_sha256.clone(),
    }
}

fn device_plan(d: &DevicePeak) -> DevicePlan {
    DevicePlan {
        name: d.device,
        memory_bytes: d.memory,
        reserve_bytes: d.reserve,
        resident_bytes: d.resident,
        peak_bytes: d.peak,
        staging_bytes: d.staging,
        runtime_bytes: d.runtime,
        runtime_source: d.runtime_source.to_owned(),
        distinct_products: d.products.map(|p| p.distinct),
        product_bytes: d.products.map(|p| p.bytes_each),
        largest_norm_bytes: d.workspace.map(|w| w.largest_norm),
        largest_dequantized_weights: d.workspace.map(|w| w.largest_dequantized),
        workspace_bytes: d.workspace.map(|w| w.bytes),
        flops_per_second: d.flops_per_second,
    }
}

/// A model's copy nodes as transfers, numbered from `first_id`.
fn model_transfers(graph: &LayerGraph, m: usize, first_id: usize) -> Vec<Transfer> {
    graph
        .copies(m)
        .into_iter()
        .enumerate()
        .map(|(i, (copy, reuse))| Transfer {
            id: first_id + i,
            model: m,
            first_layer: copy.first,
            last_layer: copy.last,
            from: copy.from,
            to: copy.to,
            bytes: copy.bytes,
            issue_after_layer: reuse.map(|(layer, _)| layer),
            from_previous_step: reuse.is_some_and(|(_, previous)| previous),
            batched: copy.batched,
            start_seconds: ns(copy.start),
            end_seconds: ns(copy.end),
        })
        .collect()
}

fn model_plan(schedule: &Schedule, m: usize, model: &GraphModel, timing: &ModelTiming) -> ModelPlan {
    let homes = schedule.graph.homes(m).unwrap_or_default();
    let budgets = schedule
        .budgets
        .of(m)
        .iter()
        .map(|b| Budget {
            device: b.device,
            bytes: b.bytes,
            used_bytes: model.layers.iter().zip(&homes).filter(|(_, h)| **h == b.device).map(|(l, _)| l.bytes).sum(),
        })
        .collect();
    ModelPlan {
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
            Placement::Auto => mgc_plan::Placement::Auto,
            Placement::Tail => mgc_plan::Placement::Tail,
            Placement::Head => mgc_plan::Placement::Head,
        },
        placement_reason: schedule.reasons.get(m).cloned().unwrap_or_default(),
        budgets_reason: schedule.budgets.models.get(m).and_then(|b| b.reason.clone()),
        prefetch: timing.step.prefetch,
        tokens: model.tokens,
        budgets,
        activation_bytes: model.activation_bytes,
        bytes: model.bytes,
        layers: layer_plans(model, &homes, timing),
        decode: model.decode.map(|d| if d.tiled { mgc_plan::DecodeMode::Tiled } else { mgc_plan::DecodeMode::Whole }),
        predicted: Predicted {
            step_seconds: ns(timing.step.step_seconds),
            lower_bound_seconds: ns(timing.step.lower_bound_seconds),
            compute_seconds: ns(timing.step.compute_seconds),
            copy_seconds: ns(timing.step.copy_seconds),
            hidden_copy_fraction: (timing.step.hidden_copy_fraction * 1e6).round() / 1e6,
        },
    }
}

fn layer_plans(model: &GraphModel, homes: &[Device], timing: &ModelTiming) -> Vec<LayerPlan> {
    model
        .layers
        .iter()
        .zip(homes)
        .zip(&timing.step.layers)
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
                .enumerate()
                .map(|(i, t)| TensorPlan {
                    name: t.name.clone(),
                    dtype: t.dtype.name().to_owned(),
                    shape: t.shape.clone(),
                    offset: t.offset,
                    bytes: t.bytes,
                    rows: layer.work.rows.get(i).map(|&rows| count(rows)),
                })
                .collect(),
            attention: layer
                .work
                .attention
                .iter()
                .map(|&(queries, keys, width)| AttentionPlan {
                    queries: count(queries),
                    keys: count(keys),
                    width: count(width),
                })
                .collect(),
        })
        .collect()
}

/// Every link a transfer uses, once, in the order first used.
fn links(transfers: &[Transfer], cost: &CostModel) -> Vec<LinkPlan> {
    let mut seen: Vec<(Device, Device)> = Vec::new();
    let mut links = Vec::new();
    for t in transfers {
        let (from, to) = (t.from, t.to);
        if seen.contains(&(from, to)) {
            continue;
        }
        seen.push((from, to));
        let rate = cost.rate(from, to);
        links.push(LinkPlan { from, to, bandwidth_bytes_per_second: rate.bytes_per_second as u64, source: rate.source })
    }
    links
}

/// A count the cost model keeps as a float (a tiled decode's overlaps make it fractional), whole.
fn count(x: f64) -> u64 {
    x.round().max(0.0) as u64
}

fn role(role: Role) -> mgc_plan::Role {
    match role {
        Role::TextEncoder => mgc_plan::Role::TextEncoder,
        Role::Diffusion => mgc_plan::Role::Diffusion,
        Role::Vae => mgc_plan::Role::Vae,
        Role::Unknown => mgc_plan::Role::Unknown,
    }
}
