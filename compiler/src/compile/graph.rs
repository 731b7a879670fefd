//! `workflow_to_graph`: the workflow's models, read from their headers, as one graph of layers —
//! the compiler's intermediate representation.
//!
//! Nodes are the layers of every model and, once the schedule stage has run, the copies it adds.
//! Edges say what must happen before what: a model's layers in order ([`Edge::Next`]), one model
//! after another ([`Edge::ModelOrder`]; [`Edge::TakesTurns`] between diffusion models that
//! alternate, as Wan 2.2's high- and low-noise experts do), a copy before the layers it carries
//! ([`Edge::DataReady`]) and a layer before the copy that reuses its buffer ([`Edge::SlotReuse`]).
//! Placement annotates layer nodes with their homes, the schedule adds copy nodes with their
//! times, and the later stages read the annotated graph.

use std::path::PathBuf;

use mgc_core::Device;
use petgraph::Direction;
use petgraph::algo::toposort;
use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::{EdgeFiltered, EdgeRef, IntoEdgeReferences};
use serde::Serialize;

use super::cost;
use super::error::{CompileError, Problem, ProblemKind};
use super::work::{Decode, LayerWork, Pass, layer_work, model_pass, vae_decode};
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
    /// What the layer computes in one pass.
    pub work: LayerWork,
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
    /// What one pass of the model works on.
    pub pass: Pass,
    /// For a VAE, how it decodes: whole or tiled.
    pub decode: Option<Decode>,
    pub tokens: u64,
    pub activation_bytes: u64,
    pub bytes: u64,
    pub layers: Vec<GraphLayer>,
}

/// A layer of a model, as a node: where its weights live once placement has decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct LayerNode {
    pub model: usize,
    pub layer: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home: Option<Device>,
}

/// A copy of consecutive streamed layers `first..=last` of a model to its compute device.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct CopyNode {
    pub model: usize,
    pub first: usize,
    pub last: usize,
    pub from: Device,
    pub to: Device,
    pub bytes: u64,
    /// Several small layers through the pinned staging buffer.
    pub batched: bool,
    /// Relative to the start of the model's steady-state step (negative: during the one before).
    pub start: f64,
    pub end: f64,
}

/// A node of the graph.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Node {
    Layer(LayerNode),
    Copy(CopyNode),
}

/// What an edge orders.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// The next layer of the same model.
    Next,
    /// The next model of the workflow: text encoders, then diffusion models, then VAEs.
    ModelOrder,
    /// The next diffusion model, which takes turns with this one over the steps.
    TakesTurns,
    /// A copy must have landed before the layer that needs it runs.
    DataReady,
    /// The copy reuses the buffer this layer computed from, so it is issued once the layer is
    /// done (in the previous step, when `from_previous_step`).
    SlotReuse { from_previous_step: bool },
}

/// Every layer of every model, and (after scheduling) every copy, with what orders them.
#[derive(Clone, Debug)]
pub struct LayerGraph {
    pub inputs: Vec<Input>,
    /// In execution order.
    pub models: Vec<GraphModel>,
    pub graph: StableDiGraph<Node, Edge>,
    /// The node of each model's each layer.
    layer_nodes: Vec<Vec<NodeIndex>>,
}

impl LayerGraph {
    /// `(model, layer)` pairs in the order they run within one step: what every edge orders,
    /// less the slot reuse across steps (a copy for the next step, issued after this one's layer).
    pub fn execution_order(&self) -> Vec<(usize, usize)> {
        let one_step =
            EdgeFiltered::from_fn(&self.graph, |e| !matches!(e.weight(), Edge::SlotReuse { from_previous_step: true }));
        // Every edge left points forward in time, so there is no cycle to hide here.
        let order = toposort(&one_step, None).unwrap_or_default();
        order
            .into_iter()
            .filter_map(|n| match self.graph.node_weight(n) {
                Some(Node::Layer(l)) => Some((l.model, l.layer)),
                _ => None,
            })
            .collect()
    }

    /// Every edge: `(from, to, what it orders)`.
    pub fn edges(&self) -> impl Iterator<Item = (NodeIndex, NodeIndex, Edge)> + '_ {
        (&self.graph).edge_references().map(|e| (e.source(), e.target(), *e.weight()))
    }

    /// The node of a model's layer.
    pub fn layer_node(&self, model: usize, layer: usize) -> Option<NodeIndex> {
        self.layer_nodes.get(model).and_then(|nodes| nodes.get(layer)).copied()
    }

    /// Where a model's layers live, in layer order; `None` before placement.
    pub fn homes(&self, model: usize) -> Option<Vec<Device>> {
        let nodes = self.layer_nodes.get(model)?;
        nodes
            .iter()
            .map(|&n| match self.graph.node_weight(n) {
                Some(Node::Layer(l)) => l.home,
                _ => None,
            })
            .collect()
    }

    /// Annotates a model's layers with their homes.
    pub fn set_homes(&mut self, model: usize, homes: &[Device]) {
        let Some(nodes) = self.layer_nodes.get(model) else {
            return;
        };
        for (&node, &home) in nodes.iter().zip(homes) {
            if let Some(Node::Layer(layer)) = self.graph.node_weight_mut(node) {
                layer.home = Some(home);
            }
        }
    }

    /// Adds a copy node, with its data-ready edge to the first layer it carries and, when it
    /// reuses a buffer, its slot-reuse edge from the layer that frees it.
    pub fn add_copy(&mut self, copy: CopyNode, issue_after: Option<(usize, bool)>) -> NodeIndex {
        let node = self.graph.add_node(Node::Copy(copy));
        if let Some(first) = self.layer_node(copy.model, copy.first) {
            self.graph.add_edge(node, first, Edge::DataReady);
        }
        if let Some((layer, from_previous_step)) = issue_after
            && let Some(freeing) = self.layer_node(copy.model, layer)
        {
            self.graph.add_edge(freeing, node, Edge::SlotReuse { from_previous_step });
        }
        node
    }

    /// Every copy of a model's step, in the order they are issued, with the layer whose buffer
    /// each reuses.
    pub fn copies(&self, model: usize) -> Vec<(CopyNode, Option<(usize, bool)>)> {
        let mut copies: Vec<(NodeIndex, CopyNode)> = self
            .graph
            .node_indices()
            .filter_map(|n| match self.graph.node_weight(n) {
                Some(Node::Copy(c)) if c.model == model => Some((n, *c)),
                _ => None,
            })
            .collect();
        copies.sort_by_key(|(n, _)| n.index());
        copies
            .into_iter()
            .map(|(node, copy)| {
                let reuse = self.graph.edges_directed(node, Direction::Incoming).find_map(|e| match e.weight() {
                    Edge::SlotReuse { from_previous_step } => match self.graph.node_weight(e.source()) {
                        Some(Node::Layer(l)) => Some((l.layer, *from_previous_step)),
                        _ => None,
                    },
                    _ => None,
                });
                (copy, reuse)
            })
            .collect()
    }

    /// Models whose runs can overlap in time: each model's interval in the execution order,
    /// grouped where intervals meet. Models run one at a time, so every group is one model
    /// unless the graph says otherwise.
    pub fn live_together(&self) -> Vec<Vec<usize>> {
        let order = self.execution_order();
        let mut spans: Vec<(usize, usize, usize)> = Vec::new();
        for (position, (model, _)) in order.iter().enumerate() {
            match spans.iter_mut().find(|(m, _, _)| m == model) {
                Some(span) => span.2 = position,
                None => spans.push((*model, position, position)),
            }
        }
        // A model without layers runs alone.
        for model in 0..self.models.len() {
            if !spans.iter().any(|(m, _, _)| *m == model) {
                spans.push((model, usize::MAX, usize::MAX));
            }
        }
        spans.sort_by_key(|&(_, first, _)| first);
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (model, first, last) in spans {
            match groups.last_mut() {
                Some((end, members)) if first <= *end => {
                    members.push(model);
                    *end = (*end).max(last);
                }
                _ => groups.push((last, vec![model])),
            }
        }
        groups.into_iter().map(|(_, members)| members).collect()
    }
}

/// The graph as `mgc explain --stage graph` prints it: models with their layers (tensors
/// counted, not listed), and every node and edge.
#[derive(Clone, Debug, Serialize)]
pub struct GraphView {
    pub models: Vec<ModelView>,
    /// `[id, node]`, ids as the edges use them.
    pub nodes: Vec<(usize, Node)>,
    /// `[from, to, edge]`.
    pub edges: Vec<(usize, usize, Edge)>,
}

/// A model of the graph, for people.
#[derive(Clone, Debug, Serialize)]
pub struct ModelView {
    pub name: String,
    pub family: &'static str,
    pub role: &'static str,
    pub phase: u32,
    pub compute: Device,
    pub tokens: u64,
    pub bytes: u64,
    pub activation_bytes: u64,
    /// What one pass works on: image and text tokens a sample, samples.
    pub pass: Pass,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decode: Option<Decode>,
    /// `[name, bytes, flops, tensors]` per layer.
    pub layers: Vec<(String, u64, f64, usize)>,
}

impl LayerGraph {
    /// The graph for people and snapshots.
    pub fn view(&self) -> GraphView {
        let models = self
            .models
            .iter()
            .map(|m| ModelView {
                name: m.spec.name.clone(),
                family: m.family.name(),
                role: m.role.name(),
                phase: m.phase,
                compute: m.spec.compute,
                tokens: m.tokens,
                bytes: m.bytes,
                activation_bytes: m.activation_bytes,
                pass: m.pass,
                decode: m.decode,
                layers: m.layers.iter().map(|l| (l.name.clone(), l.bytes, l.flops.round(), l.tensors.len())).collect(),
            })
            .collect();
        let nodes = self.graph.node_indices().filter_map(|n| Some((n.index(), *self.graph.node_weight(n)?))).collect();
        let edges =
            (&self.graph).edge_references().map(|e| (e.source().index(), e.target().index(), *e.weight())).collect();
        GraphView { models, nodes, edges }
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
    let (inputs, mut models) = read_models(workflow)?;
    models.sort_by_key(|m| m.phase);
    let mut graph = StableDiGraph::new();
    let mut layer_nodes = Vec::new();
    let mut previous: Option<(&GraphModel, NodeIndex)> = None;
    for (m, model) in models.iter().enumerate() {
        let nodes: Vec<NodeIndex> = (0..model.layers.len())
            .map(|l| graph.add_node(Node::Layer(LayerNode { model: m, layer: l, home: None })))
            .collect();
        for pair in nodes.windows(2) {
            if let [a, b] = pair {
                graph.add_edge(*a, *b, Edge::Next);
            }
        }
        if let (Some(&first), Some(&last)) = (nodes.first(), nodes.last()) {
            if let Some((before, before_last)) = previous {
                let alternates =
                    before.phase == model.phase && before.role == Role::Diffusion && model.role == Role::Diffusion;
                graph.add_edge(before_last, first, if alternates { Edge::TakesTurns } else { Edge::ModelOrder });
            }
            previous = Some((model, last));
        }
        layer_nodes.push(nodes);
    }
    Ok(LayerGraph { inputs, models, graph, layer_nodes })
}

/// Every model of the workflow with its layers, and the files they come from (each read once).
fn read_models(workflow: &Workflow) -> Result<(Vec<Input>, Vec<GraphModel>), Vec<CompileError>> {
    let mut inputs: Vec<Input> = Vec::new();
    let mut errors = Vec::new();
    let mut models = Vec::new();
    let mut chosen: Vec<(&ModelSpec, usize, Model)> = Vec::new();
    // A file that cannot be read is reported once, however many models use it.
    let mut unreadable: Vec<&std::path::Path> = Vec::new();
    for spec in &workflow.models {
        if unreadable.contains(&spec.file.as_path()) {
            continue;
        }
        let input = match inputs.iter().position(|i| i.path == spec.file) {
            Some(i) => i,
            None => match read_input(spec) {
                Ok(input) => {
                    inputs.push(input);
                    inputs.len() - 1
                }
                Err(error) => {
                    errors.push(CompileError::Inventory(error));
                    unreadable.push(&spec.file);
                    continue;
                }
            },
        };
        let Some(found) = inputs.get(input) else {
            continue;
        };
        let split = inventory_to_models(&found.inventory);
        let Some(model) = choose(&split).cloned() else {
            let kind = ProblemKind::NoTensors { model: spec.name.clone(), file: spec.file.display().to_string() };
            errors.push(CompileError::Problem(Problem::new(kind, spec.allocation_span)));
            continue;
        };
        chosen.push((spec, input, model));
    }
    // Text encoders work at the prompt length of the diffusion model they encode for.
    let context = chosen.iter().map(|(_, _, m)| m).find(|m| m.role == Role::Diffusion).map(|m| m.family);
    if let Some(family) = context {
        errors.extend(check_workload(family, workflow).map(CompileError::Problem));
    }
    for (spec, input, model) in &chosen {
        // Room for a decode: the device's usable memory less the weights of the workflow's
        // models that compute there.
        let usable = workflow.devices.iter().find(|d| d.device == spec.compute).map_or(0, |d| d.usable().get());
        let weights: u64 = chosen.iter().filter(|(s, _, _)| s.compute == spec.compute).map(|(_, _, m)| m.bytes).sum();
        models.push(graph_model(spec, *input, model, workflow, context, usable.saturating_sub(weights)));
    }
    if errors.is_empty() { Ok((inputs, models)) } else { Err(errors) }
}

/// The workload checked against the diffusion model's family: a video model's frames are 4n+1
/// (its VAE packs 4 frames into a latent frame after the first), an image model takes no frames.
fn check_workload(family: Family, workflow: &Workflow) -> Option<Problem> {
    let span = workflow.sampling.frames_span?;
    let crate::workflow::Workload::Resolution { frames, .. } = workflow.workload else { return None };
    let video = matches!(family, Family::Wan21 | Family::Wan22 | Family::HunyuanVideo);
    let kind = if !video {
        ProblemKind::FramesOnImageModel { family: family.name() }
    } else if frames % 4 != 1 {
        let below = frames - frames % 4 + 1;
        let below = if below > frames { below.saturating_sub(4).max(1) } else { below };
        ProblemKind::FramesNot4nPlus1 { family: family.name(), frames, below, above: below + 4 }
    } else {
        return None;
    };
    Some(Problem::new(kind, span))
}

/// The model a workflow entry means when its file holds several: the diffusion model if there
/// is one, else the first.
fn choose(models: &[Model]) -> Option<&Model> {
    models.iter().find(|m| m.role == Role::Diffusion).or_else(|| models.first()).filter(|m| m.tensor_count > 0)
}

fn graph_model(
    spec: &ModelSpec,
    input: usize,
    model: &Model,
    workflow: &Workflow,
    context: Option<Family>,
    room: u64,
) -> GraphModel {
    let pass = model_pass(model.family, model.role, &model.tensors, &workflow.workload, &workflow.sampling, context);
    let decode = vae_decode(&pass, room);
    let full = |t: &Tensor| Tensor { name: format!("{}{}", model.prefix, t.name), ..t.clone() };
    let layers = model
        .layers
        .iter()
        .map(|layer| {
            let tensors: Vec<&Tensor> = layer.tensors.iter().filter_map(|&i| model.tensors.get(i)).collect();
            let work = layer_work(&pass, &tensors).scaled(decode.map_or(1.0, |d| d.factor));
            GraphLayer {
                name: layer.name.clone(),
                bytes: layer.bytes,
                flops: work.flops(),
                work,
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
        pass,
        tokens: pass.tokens(),
        activation_bytes: decode.map_or_else(|| cost::activation_bytes(model, &pass), |d| d.bytes),
        decode,
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
    mgc_plan::header_sha256(fs_err::File::open(path)?, length)
}
