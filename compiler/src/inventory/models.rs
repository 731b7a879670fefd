//! From a file's tensors to its models (split by key prefix, family and role detected from
//! signature keys) and each model's layers (grouped by module path, in execution order).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Inventory, Tensor};

/// What a model does in a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    TextEncoder,
    Diffusion,
    Vae,
    Unknown,
}

impl Role {
    pub const fn name(self) -> &'static str {
        match self {
            Self::TextEncoder => "text-encoder",
            Self::Diffusion => "diffusion",
            Self::Vae => "vae",
            Self::Unknown => "unknown",
        }
    }
}

/// The model families mgc recognises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    Flux,
    #[serde(rename = "wan2.1")]
    Wan21,
    #[serde(rename = "wan2.2")]
    Wan22,
    Sdxl,
    Sd1,
    Sd3,
    HunyuanVideo,
    QwenImage,
    T5,
    Umt5,
    /// Qwen2.5-VL, the LLM that encodes Qwen-Image's prompts.
    #[serde(rename = "qwen2.5-vl")]
    Qwen25Vl,
    /// A Llama LLM, as HunyuanVideo's text encoder.
    Llama,
    ClipL,
    ClipG,
    ClipH,
    /// The 4-channel KL VAE of SD 1.x and SDXL.
    SdVae,
    /// The 16-channel KL VAE of Flux and SD3.
    FluxVae,
    WanVae,
    Unknown,
}

impl Family {
    pub const fn name(self) -> &'static str {
        match self {
            Self::Flux => "flux",
            Self::Wan21 => "wan2.1",
            Self::Wan22 => "wan2.2",
            Self::Sdxl => "sdxl",
            Self::Sd1 => "sd1",
            Self::Sd3 => "sd3",
            Self::HunyuanVideo => "hunyuan-video",
            Self::QwenImage => "qwen-image",
            Self::T5 => "t5",
            Self::Umt5 => "umt5",
            Self::Qwen25Vl => "qwen2.5-vl",
            Self::Llama => "llama",
            Self::ClipL => "clip-l",
            Self::ClipG => "clip-g",
            Self::ClipH => "clip-h",
            Self::SdVae => "sd-vae",
            Self::FluxVae => "flux-vae",
            Self::WanVae => "wan-vae",
            Self::Unknown => "unknown",
        }
    }

    pub const fn role(self) -> Role {
        match self {
            Self::Flux
            | Self::Wan21
            | Self::Wan22
            | Self::Sdxl
            | Self::Sd1
            | Self::Sd3
            | Self::HunyuanVideo
            | Self::QwenImage => Role::Diffusion,
            Self::T5 | Self::Umt5 | Self::Qwen25Vl | Self::Llama | Self::ClipL | Self::ClipG | Self::ClipH => {
                Role::TextEncoder
            }
            Self::SdVae | Self::FluxVae | Self::WanVae => Role::Vae,
            Self::Unknown => Role::Unknown,
        }
    }
}

/// A group of tensors that computes as one step: a block, or a small module outside blocks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// The module path without the model's prefix: `double_blocks.7`, `img_in`.
    pub name: String,
    pub tensor_count: usize,
    pub bytes: u64,
    /// Indices into [`Model::tensors`].
    #[serde(skip)]
    pub tensors: Vec<usize>,
}

/// One model of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Model {
    /// The key prefix that marks this model in the file: `model.diffusion_model.`, or empty.
    pub prefix: String,
    pub family: Family,
    pub role: Role,
    pub tensor_count: usize,
    pub bytes: u64,
    /// Bytes per dtype.
    pub dtypes: BTreeMap<String, u64>,
    pub layers: Vec<Layer>,
    /// The model's tensors, names without the prefix, in file order.
    #[serde(skip)]
    pub tensors: Vec<Tensor>,
}

/// Prefixes that mark one model inside a checkpoint, and the role they imply.
const STATIC_PREFIXES: [(&str, Role); 3] = [
    ("model.diffusion_model.", Role::Diffusion),
    ("first_stage_model.", Role::Vae),
    ("cond_stage_model.", Role::TextEncoder),
];

/// The model prefix of a key, if it has one.
fn prefix_of(key: &str) -> Option<(&str, Role)> {
    for (prefix, role) in STATIC_PREFIXES {
        if key.starts_with(prefix) {
            return Some((prefix, role));
        }
    }
    // `conditioner.embedders.N.` and `text_encoders.NAME.`
    for (head, numbered) in [("conditioner.embedders.", true), ("text_encoders.", false)] {
        if let Some(rest) = key.strip_prefix(head) {
            let (segment, _) = rest.split_once('.')?;
            if segment.is_empty() || (numbered && !segment.bytes().all(|b| b.is_ascii_digit())) {
                return None;
            }
            let end = head.len() + segment.len() + 1;
            return Some((key.get(..end)?, Role::TextEncoder));
        }
    }
    None
}

/// Splits an inventory into its models, text encoders first, then diffusion models, then VAEs.
pub fn inventory_to_models(inventory: &Inventory) -> Vec<Model> {
    let mut groups: Vec<(String, Role, Vec<Tensor>)> = Vec::new();
    for tensor in &inventory.tensors {
        let (prefix, role) = prefix_of(&tensor.name).unwrap_or(("", Role::Unknown));
        let stripped =
            Tensor { name: tensor.name.get(prefix.len()..).unwrap_or_default().to_owned(), ..tensor.clone() };
        match groups.iter_mut().find(|(p, _, _)| p == prefix) {
            Some((_, _, tensors)) => tensors.push(stripped),
            None => groups.push((prefix.to_owned(), role, vec![stripped])),
        }
    }
    let mut models: Vec<Model> = groups
        .into_iter()
        .map(|(prefix, prefix_role, tensors)| {
            let family = detect_family(&tensors);
            let role = if family == Family::Unknown { prefix_role } else { family.role() };
            let layers = group_layers(&tensors);
            let mut dtypes = BTreeMap::new();
            for t in &tensors {
                *dtypes.entry(t.dtype.name().to_owned()).or_insert(0) += t.bytes;
            }
            Model {
                prefix,
                family,
                role,
                tensor_count: tensors.len(),
                bytes: tensors.iter().map(|t| t.bytes).sum(),
                dtypes,
                layers,
                tensors,
            }
        })
        .collect();
    models.sort_by(|a, b| (a.role, &a.prefix).cmp(&(b.role, &b.prefix)));
    models
}

/// Names and shapes of a model's tensors, for signature lookups.
struct Keys<'a>(HashMap<&'a str, &'a [u64]>);

impl<'a> Keys<'a> {
    fn new(tensors: &'a [Tensor]) -> Self {
        Self(tensors.iter().map(|t| (t.name.as_str(), t.shape.as_slice())).collect())
    }

    fn has(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The shape of the first key that ends with `suffix`, in a stable order.
    fn ending(&self, suffix: &str) -> Option<&'a [u64]> {
        self.0.iter().filter(|(k, _)| k.ends_with(suffix)).min_by_key(|(k, _)| **k).map(|(_, s)| *s)
    }

    fn dim(&self, key: &str, index: usize) -> Option<u64> {
        self.0.get(key).and_then(|s| s.get(index)).copied()
    }
}

/// The family from signature keys, as ComfyUI's own detection looks at them.
fn detect_family(tensors: &[Tensor]) -> Family {
    let k = Keys::new(tensors);
    if k.has("double_blocks.0.img_attn.qkv.weight") || k.has("double_blocks.0.img_attn.qkv.bias") {
        return if k.0.keys().any(|key| key.starts_with("txt_in.individual_token_refiner.")) {
            Family::HunyuanVideo
        } else {
            Family::Flux
        };
    }
    if k.has("joint_blocks.0.context_block.attn.qkv.weight") {
        return Family::Sd3;
    }
    if k.has("transformer_blocks.0.img_mod.1.weight") && k.has("txt_norm.weight") {
        return Family::QwenImage;
    }
    if k.has("blocks.0.self_attn.q.weight") && k.has("patch_embedding.weight") {
        // Wan 2.2's 5B model works in a 48-channel latent; its 14B models share Wan 2.1's layout.
        return if k.dim("patch_embedding.weight", 1) == Some(48) { Family::Wan22 } else { Family::Wan21 };
    }
    if k.has("input_blocks.0.0.weight") {
        return if k.has("label_emb.0.0.weight") { Family::Sdxl } else { Family::Sd1 };
    }
    if k.has("encoder.block.0.layer.0.SelfAttention.q.weight") {
        return if k.has("encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight") {
            Family::Umt5
        } else {
            Family::T5
        };
    }
    // An LLM as a text encoder: Hugging Face names, or llama.cpp's in a GGUF. Qwen2's attention
    // projections have biases, Llama's do not.
    if k.has("model.layers.0.self_attn.q_proj.weight") {
        return if k.has("model.layers.0.self_attn.q_proj.bias") { Family::Qwen25Vl } else { Family::Llama };
    }
    if k.has("blk.0.attn_q.weight") {
        return if k.has("blk.0.attn_q.bias") { Family::Qwen25Vl } else { Family::Llama };
    }
    if let Some(shape) = k.ending("text_model.encoder.layers.0.self_attn.q_proj.weight") {
        return clip_by_width(shape.first().copied());
    }
    if let Some(shape) = k.ending("transformer.resblocks.0.attn.in_proj_weight") {
        return clip_by_width(shape.get(1).copied());
    }
    if k.has("decoder.middle.0.residual.0.gamma") {
        return Family::WanVae;
    }
    if k.has("decoder.conv_in.weight") && k.has("encoder.conv_in.weight") {
        return match k.dim("decoder.conv_in.weight", 1) {
            Some(16) => Family::FluxVae,
            Some(4) => Family::SdVae,
            _ => Family::Unknown,
        };
    }
    Family::Unknown
}

fn clip_by_width(width: Option<u64>) -> Family {
    match width {
        Some(768) => Family::ClipL,
        Some(1024) => Family::ClipH,
        Some(1280) => Family::ClipG,
        _ => Family::Unknown,
    }
}

/// Path components that only wrap a model's modules: a layer is looked for inside them.
const NAMESPACES: [&str; 5] = ["model", "transformer", "text_model", "encoder", "decoder"];

/// Module lists whose numbered entries are each one layer, in the order models run them.
const CONTAINERS: [&str; 17] = [
    "joint_blocks",
    "double_blocks",
    "single_blocks",
    "transformer_blocks",
    "blocks",
    "input_blocks",
    "middle_block",
    "output_blocks",
    "layers",
    "blk",
    "resblocks",
    "block",
    "down",
    "downsamples",
    "middle",
    "up",
    "upsamples",
];

/// Modules that run before the blocks, in the order they run.
const INPUTS: [&str; 28] = [
    "conv_in",
    "quant_conv",
    "conv1",
    "patch_embedding",
    "img_in",
    "x_embedder",
    "pos_embed",
    "time_in",
    "time_embedding",
    "time_projection",
    "time_embed",
    "t_embedder",
    "time_text_embed",
    "guidance_in",
    "vector_in",
    "label_emb",
    "y_embedder",
    "txt_norm",
    "txt_in",
    "text_embedding",
    "context_embedder",
    "img_emb",
    "shared",
    "embeddings",
    "token_embedding",
    "positional_embedding",
    "embed_tokens",
    "token_embd",
];

/// Modules that run after the blocks, in the order they run.
const OUTPUTS: [&str; 15] = [
    "norm_out",
    "final_layer_norm",
    "ln_final",
    "final_layer",
    "head",
    "proj_out",
    "out",
    "norm",
    "output_norm",
    "lm_head",
    "conv_out",
    "post_quant_conv",
    "conv2",
    "text_projection",
    "logit_scale",
];

/// Where a layer sits in execution order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct OrderKey {
    /// In a VAE, the encoder runs before the decoder.
    phase: u8,
    /// Inputs, then blocks, then outputs.
    rank: u8,
    /// Position in [`INPUTS`], [`CONTAINERS`] or [`OUTPUTS`].
    slot: usize,
    /// The block's number (reversed for a VAE decoder's `up` blocks, which run from the last).
    index: i64,
    name: String,
}

/// The layer a tensor belongs to, and the layer's order key.
fn layer_of(key: &str, vae: bool) -> (String, OrderKey) {
    let parts: Vec<&str> = key.split('.').collect();
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let mut i = 0;
    while let (Some(part), Some(next)) = (parts.get(i), parts.get(i + 1)) {
        if NAMESPACES.contains(part) && !numeric(next) {
            i += 1;
        } else {
            break;
        }
    }
    let namespaces = parts.get(..i).unwrap_or_default();
    let phase = match (vae, namespaces.contains(&"encoder"), namespaces.contains(&"decoder")) {
        (true, false, true) => 2,
        (true, false, false) => 1,
        _ => 0,
    };
    let head = parts.get(i).copied().unwrap_or(key);
    let container = CONTAINERS.iter().position(|c| *c == head);
    let number = parts.get(i + 1).filter(|n| numeric(n)).and_then(|n| n.parse::<i64>().ok());
    if let (Some(slot), Some(number)) = (container, number) {
        let name = parts.get(..=i + 1).unwrap_or_default().join(".");
        let index = if phase == 2 && head == "up" { -number } else { number };
        return (name.clone(), OrderKey { phase, rank: 1, slot, index, name });
    }
    let name = parts.get(..=i).unwrap_or_default().join(".");
    if head == "mid" {
        // A VAE's middle runs between its down and up blocks, like Wan's numbered `middle`.
        let slot = CONTAINERS.iter().position(|c| *c == "middle").unwrap_or(0);
        return (name.clone(), OrderKey { phase, rank: 1, slot, index: 0, name });
    }
    let (rank, slot) = match (INPUTS.iter().position(|m| *m == head), OUTPUTS.iter().position(|m| *m == head)) {
        (Some(slot), _) => (0, slot),
        (None, Some(slot)) => (2, slot),
        (None, None) => (2, OUTPUTS.len()),
    };
    (name.clone(), OrderKey { phase, rank, slot, index: 0, name })
}

/// Groups a model's tensors into layers, in execution order.
fn group_layers(tensors: &[Tensor]) -> Vec<Layer> {
    let vae = tensors.iter().any(|t| t.name.starts_with("encoder."))
        && tensors.iter().any(|t| t.name.starts_with("decoder."));
    let mut layers: BTreeMap<OrderKey, Layer> = BTreeMap::new();
    for (index, tensor) in tensors.iter().enumerate() {
        let (name, key) = layer_of(&tensor.name, vae);
        let layer = layers.entry(key).or_insert_with(|| Layer { name, tensor_count: 0, bytes: 0, tensors: Vec::new() });
        layer.tensor_count += 1;
        layer.bytes += tensor.bytes;
        layer.tensors.push(index);
    }
    layers.into_values().collect()
}
