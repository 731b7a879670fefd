//! `workflow_to_graph`: the workflow's models, read from their headers, as a graph of layers in
//! execution order — text encoders, then diffusion models, then VAEs.

use std::path::PathBuf;

use petgraph::algo::toposort;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};

use super::cost;
use super::error::{CompileError, Problem, ProblemKind};
use crate::inventory::{
    Family, Inventory, InventoryError, InventoryErrorKind, Model, Role, Tensor, file_to_inventory, inventory_to_models,
};
use crate::workflow::{ModelSpec, Workflow};

/// A model file, read once however many models use it.
#[derive(Clone, Debug)]
pub struct Input {
    pub path: PathBuf,
    pub inventory: Inventory,
    /// SHA-256 of the header bytes, hex.
    pub header_sha256: String,
}

/// A layer and what it costs.
#[derive(Clone, Debug)]
pub struct GraphLayer {
    pub name: String,
    pub bytes: u64,
    /// Tensors with their full names in the file.
    pub tensors: Vec<Tensor>,
    pub flops: f64,
}

/// A model of the workflow with its layers.
#[derive(Clone, Debug)]
pub struct GraphModel {
    pub spec: ModelSpec,
    pub input: usize,
    pub prefix: String,
    pub family: Family,
    pub role: Role,
    /// 0 text encoders, 1 diffusion (and unknown), 2 VAEs.
    pub phase: u32,
    pub tokens: u64,
    pub activation_bytes: u64,
    pub bytes: u64,
    pub layers: Vec<GraphLayer>,
}

/// Every layer of every model, with an edge from each layer to the next one that runs.
#[derive(Debug)]
pub struct LayerGraph {
    pub inputs: Vec<Input>,
    /// In execution order.
    pub models: Vec<GraphModel>,
    pub graph: StableDiGraph<(usize, usize), ()>,
}

impl LayerGraph {
    /// `(model, layer)` pairs in the order they run.
    pub fn execution_order(&self) -> Vec<(usize, usize)> {
        toposort(&self.graph, None)
            .map(|nodes| nodes.into_iter().filter_map(|n| self.graph.node_weight(n).copied()).collect())
            .unwrap_or_default()
    }
}

const fn phase_of(role: Role) -> u32 {
    match role {
        Role::TextEncoder => 0,
        Role::Diffusion | Role::Unknown => 1,
        Role::Vae => 2,
    }
}

/// Reads every model file's header and builds the layer graph.
pub fn workflow_to_graph(workflow: &Workflow) -> Result<LayerGraph, Vec<CompileError>> {
    let mut inputs: Vec<Input> = Vec::new();
    let mut errors = Vec::new();
    let mut models = Vec::new();
    for spec in &workflow.models {
        let input = match inputs.iter().position(|i| i.path == spec.file) {
            Some(i) => i,
            None => match read_input(spec) {
                Ok(input) => {
                    inputs.push(input);
                    inputs.len() - 1
                }
                Err(error) => {
                    errors.push(CompileError::Inventory(error));
                    continue;
                }
            },
        };
        let Some(found) = inputs.get(input) else {
            continue;
        };
        let split = inventory_to_models(&found.inventory);
        let Some(model) = choose(&split) else {
            let kind = ProblemKind::NoTensors { model: spec.name.clone(), file: spec.file.display().to_string() };
            errors.push(CompileError::Problem(Problem::new(kind, spec.allocation_span)));
            continue;
        };
        models.push(graph_model(spec, input, model, workflow));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    models.sort_by_key(|m| m.phase);

    let mut graph = StableDiGraph::new();
    let mut ends: Vec<(u32, NodeIndex, NodeIndex)> = Vec::new();
    for (m, model) in models.iter().enumerate() {
        let nodes: Vec<NodeIndex> = (0..model.layers.len()).map(|l| graph.add_node((m, l))).collect();
        for pair in nodes.windows(2) {
            if let [a, b] = pair {
                graph.add_edge(*a, *b, ());
            }
        }
        if let (Some(first), Some(last)) = (nodes.first(), nodes.last()) {
            // The previous model runs before this one: the same phase alternates, phases follow.
            if let Some((_, _, previous_last)) = ends.last() {
                graph.add_edge(*previous_last, *first, ());
            }
            ends.push((model.phase, *first, *last));
        }
    }
    Ok(LayerGraph { inputs, models, graph })
}

/// The model a workflow entry means when its file holds several: the diffusion model if there
/// is one, else the first.
fn choose(models: &[Model]) -> Option<&Model> {
    models.iter().find(|m| m.role == Role::Diffusion).or_else(|| models.first()).filter(|m| m.tensor_count > 0)
}

fn graph_model(spec: &ModelSpec, input: usize, model: &Model, workflow: &Workflow) -> GraphModel {
    let tokens = cost::tokens(model.family, model.role, &workflow.workload);
    let full = |t: &Tensor| Tensor { name: format!("{}{}", model.prefix, t.name), ..t.clone() };
    let layers = model
        .layers
        .iter()
        .map(|layer| {
            let tensors: Vec<&Tensor> = layer.tensors.iter().filter_map(|&i| model.tensors.get(i)).collect();
            GraphLayer {
                name: layer.name.clone(),
                bytes: layer.bytes,
                flops: cost::layer_flops(&tensors, tokens),
                tensors: tensors.into_iter().map(full).collect(),
            }
        })
        .collect();
    GraphModel {
        spec: spec.clone(),
        input,
        prefix: model.prefix.clone(),
        family: model.family,
        role: model.role,
        phase: phase_of(model.role),
        tokens,
        activation_bytes: cost::activation_bytes(&model.tensors, tokens),
        bytes: model.bytes,
        layers,
    }
}

fn read_input(spec: &ModelSpec) -> Result<Input, InventoryError> {
    let inventory = file_to_inventory(&spec.file)?;
    let header_sha256 = header_hash(&spec.file, inventory.header_size)
        .map_err(|e| InventoryError::new(&spec.file, InventoryErrorKind::Io { message: e.to_string() }))?;
    Ok(Input { path: spec.file.clone(), inventory, header_sha256 })
}

/// The fingerprint of a file's first `length` bytes.
pub fn header_hash(path: &std::path::Path, length: u64) -> std::io::Result<String> {
    mgc_plan::header_sha256(std::fs::File::open(path)?, length)
}
