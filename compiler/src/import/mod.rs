//! A saved ComfyUI workflow becomes an mgc workflow: each ComfyUI-MultiGPU loader node becomes a
//! `[[model]]` with its file, compute device and DisTorch allocation.
//!
//! | stage | from | to | function |
//! |---|---|---|---|
//! | parse | workflow JSON (UI or API format) | [`Comfy`] | [`json_to_comfy`] |
//! | map | [`Comfy`] | [`Imported`] | [`comfy_to_imported`] |
//! | write | [`Imported`] | workflow TOML | [`imported_to_toml`] |

mod emit;
pub mod nodes;

use serde_json::{Map, Value};
use thiserror::Error;

pub use emit::{Located, imported_to_toml};

use nodes::{Kind, NodeSpec};

/// Why a file is not a ComfyUI workflow. Messages are lowercase and quote the user's text.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ImportError {
    #[error("not JSON: {message} (line {line}, column {column})")]
    NotJson { message: String, line: usize, column: usize },
    #[error("nested deeper than a ComfyUI workflow is (line {line}, column {column})")]
    TooDeep { line: usize, column: usize },
    #[error("not a ComfyUI workflow: {found}")]
    NotAWorkflow { found: String },
    #[error("node {index} of `nodes` is not a ComfyUI node: {reason}")]
    BadNode { index: usize, reason: String },
}

impl ImportError {
    /// Advice for the user.
    pub fn help(&self) -> &'static str {
        match self {
            Self::NotJson { .. } | Self::TooDeep { .. } | Self::NotAWorkflow { .. } => {
                "import a workflow saved by ComfyUI: the UI format (Workflow > Save) or the API format (Workflow > Export (API))"
            }
            Self::BadNode { .. } => "every node of a saved workflow has an `id` and a `type`",
        }
    }
}

/// The two formats ComfyUI saves a workflow in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The UI format: `{"nodes": [{"id", "type", "widgets_values", ...}], "links": ...}`.
    Ui,
    /// The API format: `{"<id>": {"class_type", "inputs": {...}}}`.
    Api,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Self::Ui => "UI format",
            Self::Api => "API format",
        }
    }
}

/// A ComfyUI workflow, reduced to what the import reads.
#[derive(Clone, Debug, PartialEq)]
pub struct Comfy {
    pub format: Format,
    pub nodes: Vec<Node>,
}

/// One node of a ComfyUI workflow.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: String,
    pub class: String,
    pub widgets: Widgets,
    /// Muted or bypassed in the UI: it loads nothing.
    pub disabled: bool,
}

/// A node's widget values: by position (UI format) or by name (API format, and UI nodes that
/// save an object).
#[derive(Clone, Debug, PartialEq)]
pub enum Widgets {
    Positional(Vec<Value>),
    Named(Map<String, Value>),
}

/// Parses the text of a saved workflow, in either format.
pub fn json_to_comfy(text: &str) -> Result<Comfy, ImportError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        let (line, column) = (e.line(), e.column());
        let message = e.to_string();
        if message.starts_with("recursion limit exceeded") {
            ImportError::TooDeep { line, column }
        } else {
            let message = message.split(" at line ").next().unwrap_or_default().to_owned();
            ImportError::NotJson { message, line, column }
        }
    })?;
    let Value::Object(object) = value else {
        return Err(ImportError::NotAWorkflow { found: format!("the file holds {}", what(&value)) });
    };
    if let Some(nodes) = object.get("nodes") {
        return ui(&object, nodes);
    }
    // The body of a `/prompt` request wraps the API format in `prompt`.
    let api_nodes = match object.get("prompt") {
        Some(Value::Object(prompt)) if !object.contains_key("class_type") => prompt,
        _ => &object,
    };
    api(api_nodes)
}

fn what(value: &Value) -> &'static str {
    match value {
        Value::Null => "`null`",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.clone()),
        _ => None,
    }
}

fn ui(object: &Map<String, Value>, nodes: &Value) -> Result<Comfy, ImportError> {
    let Value::Array(nodes) = nodes else {
        return Err(ImportError::NotAWorkflow { found: format!("`nodes` is {}, not an array", what(nodes)) });
    };
    let mut out = Vec::new();
    ui_nodes(nodes, &mut out)?;
    // Nodes inside subgraphs (newer ComfyUI frontends) load models too.
    let subgraphs = object.get("definitions").and_then(|d| d.get("subgraphs")).and_then(Value::as_array);
    for subgraph in subgraphs.into_iter().flatten() {
        if let Some(Value::Array(nodes)) = subgraph.get("nodes") {
            ui_nodes(nodes, &mut out)?;
        }
    }
    Ok(Comfy { format: Format::Ui, nodes: out })
}

fn ui_nodes(nodes: &[Value], out: &mut Vec<Node>) -> Result<(), ImportError> {
    for (index, node) in nodes.iter().enumerate() {
        let bad = |reason: &str| ImportError::BadNode { index, reason: reason.to_owned() };
        let Value::Object(node) = node else {
            return Err(bad(&format!("it is {}", what(node))));
        };
        let id = node.get("id").and_then(id_text).ok_or_else(|| bad("it has no `id`"))?;
        let class = node.get("type").and_then(Value::as_str).ok_or_else(|| bad("it has no `type`"))?;
        let widgets = match node.get("widgets_values") {
            Some(Value::Array(values)) => Widgets::Positional(values.clone()),
            Some(Value::Object(values)) => Widgets::Named(values.clone()),
            _ => Widgets::Positional(Vec::new()),
        };
        // LiteGraph modes: 0 always, 2 never (muted), 4 bypassed.
        let disabled = matches!(node.get("mode").and_then(Value::as_u64), Some(2 | 4));
        out.push(Node { id, class: class.to_owned(), widgets, disabled });
    }
    Ok(())
}

fn api(object: &Map<String, Value>) -> Result<Comfy, ImportError> {
    if object.is_empty() {
        return Err(ImportError::NotAWorkflow { found: "an empty object".into() });
    }
    let mut nodes = Vec::new();
    for (id, node) in object {
        let class = node.get("class_type").and_then(Value::as_str).ok_or_else(|| ImportError::NotAWorkflow {
            found: format!("an object whose `{id}` is neither a list of `nodes` nor a node with a `class_type`"),
        })?;
        let widgets = match node.get("inputs") {
            // A linked input is `[node id, output slot]`: it has no value of its own.
            Some(Value::Object(inputs)) => Widgets::Named(
                inputs.iter().filter(|(_, v)| !v.is_array()).map(|(k, v)| (k.clone(), v.clone())).collect(),
            ),
            _ => Widgets::Named(Map::new()),
        };
        nodes.push(Node { id: id.clone(), class: class.to_owned(), widgets, disabled: false });
    }
    Ok(Comfy { format: Format::Api, nodes })
}

/// The mgc side of an import.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    pub format: Format,
    pub models: Vec<Model>,
    /// Loader nodes that could not be mapped, in the workflow's order.
    pub skipped: Vec<Skipped>,
}

/// One `[[model]]`, from one model file of a loader node.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    pub name: String,
    pub node_id: String,
    pub node_class: String,
    /// The file name as ComfyUI lists it, relative to one of `folders`.
    pub file: String,
    pub folders: &'static [&'static str],
    pub compute: String,
    pub allocation: Allocation,
    pub note: Option<&'static str>,
}

/// Where a model's layers go, in DisTorch's terms.
#[derive(Clone, Debug, PartialEq)]
pub enum Allocation {
    /// All of it on the compute device.
    Whole,
    /// `expert_mode_allocations`, as the user wrote it.
    Expert(String),
    /// `virtual_vram_gb` moved off the compute device to the donors: `#<compute>;<gb>;<donors>`.
    Virtual { gb: String, donors: String },
}

impl Allocation {
    /// The allocation string for the workflow's `allocation` key.
    pub fn text(&self, compute: &str) -> String {
        match self {
            Self::Whole => format!("{compute},*"),
            Self::Expert(text) => text.clone(),
            Self::Virtual { gb, donors } => format!("#{compute};{gb};{donors}"),
        }
    }
}

/// A node mgc does not import, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    pub node_id: String,
    pub node_class: String,
    pub reason: String,
}

/// Whether a node type loads a model (or moves one, as block swap does), so that one mgc cannot
/// map is reported, not ignored; samplers, encoders and the like are not.
fn looks_like_a_loader(class: &str) -> bool {
    class.contains("Load") || class.contains("BlockSwap")
}

/// Maps every ComfyUI-MultiGPU loader of `comfy` to models; other loaders are listed as skipped,
/// other nodes ignored.
pub fn comfy_to_imported(comfy: &Comfy) -> Imported {
    let mut models: Vec<Model> = Vec::new();
    let mut skipped = Vec::new();
    for node in &comfy.nodes {
        let skip = |reason: String| Skipped { node_id: node.id.clone(), node_class: node.class.clone(), reason };
        let Some(spec) = nodes::spec(&node.class) else {
            if looks_like_a_loader(&node.class) {
                let reason = if node.class.ends_with("MultiGPU") {
                    "a ComfyUI-MultiGPU node mgc does not map".to_owned()
                } else {
                    "not a ComfyUI-MultiGPU loader: its device is ComfyUI's choice".to_owned()
                };
                skipped.push(skip(reason));
            }
            continue;
        };
        if node.disabled {
            skipped.push(skip("muted or bypassed in the workflow".into()));
            continue;
        }
        match node_to_models(node, &spec, &models) {
            Ok(mut new) => models.append(&mut new),
            Err(reason) => skipped.push(skip(reason)),
        }
    }
    Imported { format: comfy.format, models, skipped }
}

/// A widget's value by name.
fn widget<'a>(node: &'a Node, spec: &NodeSpec, name: &str) -> Option<&'a Value> {
    match &node.widgets {
        Widgets::Named(map) => map.get(name),
        Widgets::Positional(values) => spec.widgets.iter().position(|w| *w == name).and_then(|i| values.get(i)),
    }
}

fn text_widget(node: &Node, spec: &NodeSpec, name: &str) -> Result<String, String> {
    match widget(node, spec, name) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(format!("`{name}` is {}, not a name", what(other))),
        None => Err(format!("`{name}` has no value (linked from another node, or missing)")),
    }
}

fn node_to_models(node: &Node, spec: &NodeSpec, taken: &[Model]) -> Result<Vec<Model>, String> {
    let compute = device(&text_widget(node, spec, spec.device)?, spec.device)?;
    let allocation = allocation(node, spec, &compute)?;
    let mut files = Vec::new();
    for name in spec.files {
        let file = text_widget(node, spec, name)?.replace('\\', "/");
        if file.is_empty() || file == "None" {
            continue;
        }
        let file = if spec.folder_model {
            // A Florence2 model is a folder under `LLM`, named for the last part of its repo.
            let folder = file.rsplit('/').next().unwrap_or(&file);
            format!("{folder}/model.safetensors")
        } else {
            file
        };
        files.push(file);
    }
    if files.is_empty() {
        return Err("it names no model file".into());
    }
    let several = files.len() > 1;
    Ok(files
        .into_iter()
        .enumerate()
        .map(|(i, file)| {
            let base = format!("{}_{}", spec.role, sanitize(&node.id));
            let base = if several { format!("{base}_{}", i + 1) } else { base };
            Model {
                name: unique(base, taken),
                node_id: node.id.clone(),
                node_class: node.class.clone(),
                file,
                folders: spec.folders,
                compute: compute.clone(),
                allocation: allocation.clone(),
                note: spec.note,
            }
        })
        .collect())
}

/// Node ids inside subgraphs read `12:5`; a model name keeps letters, digits and `_`.
fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

fn unique(base: String, taken: &[Model]) -> String {
    if !taken.iter().any(|m| m.name == base) {
        return base;
    }
    (2..).map(|n| format!("{base}_{n}")).find(|name| !taken.iter().any(|m| &m.name == name)).unwrap_or(base)
}

/// A device name as DisTorch lists them (`cuda:0`, `cpu`, ...).
fn device(name: &str, widget: &str) -> Result<String, String> {
    match name.parse::<mgc_core::Device>() {
        Ok(device) => Ok(device.to_string()),
        Err(_) => Err(format!("`{widget}` is `{name}`, which is not a device mgc knows")),
    }
}

fn allocation(node: &Node, spec: &NodeSpec, compute: &str) -> Result<Allocation, String> {
    let Some([vram, donor, expert]) = spec.allocation else {
        return Ok(Allocation::Whole);
    };
    let expert_text = match widget(node, spec, expert) {
        Some(Value::String(s)) => s.trim().to_owned(),
        _ => String::new(),
    };
    if !expert_text.is_empty() {
        // DisTorch reads the expert string first; `#<compute>` after it only repeats the device.
        let expert_text = match expert_text.rsplit_once('#') {
            Some((allocation, device)) if !allocation.is_empty() && device.trim() == compute => allocation.to_owned(),
            _ => expert_text,
        };
        return Ok(Allocation::Expert(expert_text));
    }
    let gb = match widget(node, spec, vram) {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Value::String(s)) => s.trim().parse().unwrap_or(f64::NAN),
        Some(other) => return Err(format!("`{vram}` is {}, not a number", what(other))),
    };
    if !gb.is_finite() || gb < 0.0 {
        return Err(format!("`{vram}` is not a size in GB"));
    }
    if gb == 0.0 {
        return Ok(Allocation::Whole);
    }
    let donors = match spec.kind {
        Kind::DisTorch1 => match widget(node, spec, donor) {
            Some(Value::Bool(true)) => {
                return Err("`use_other_vram` gives the virtual VRAM to every other GPU of the machine: \
                            write the donors in `expert_mode_allocations`"
                    .into());
            }
            _ => "cpu".to_owned(),
        },
        Kind::DisTorch2 | Kind::Device => device(&text_widget(node, spec, donor)?, donor)?,
    };
    Ok(Allocation::Virtual { gb: gigabytes(gb), donors })
}

/// `virtual_vram_gb` as DisTorch prints a float: `4.0`, `9.5`; the UI's float noise
/// (`8.000000000000002`) rounded away at the widget's precision.
fn gigabytes(gb: f64) -> String {
    let text = format!("{gb:.3}");
    let text = text.trim_end_matches('0');
    if text.ends_with('.') { format!("{text}0") } else { text.to_owned() }
}

#[cfg(test)]
mod tests;
