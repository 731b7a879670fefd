//! The plan format shared by the compiler, the runtime and the ComfyUI node pack: plain data,
//! versioned, canonical (lists only, in a stable order), with a JSON Schema ([`schema`]).
//!
//! A plan says, before a weight is read, where every layer lives and computes, which copies run
//! when, each device's peak memory and the predicted step time. Nothing in it is executed.

pub use mgc_core::Device;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The version of the plan format this build reads and writes.
pub const PLAN_VERSION: u32 = 1;

/// A compiled plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Always [`PLAN_VERSION`] for plans this build writes; other versions are refused.
    pub format_version: u32,
    /// The program that wrote the plan, such as `mgc 0.1.0`.
    pub generator: String,
    /// The model files the plan was compiled against, with their fingerprints.
    pub inputs: Vec<InputFile>,
    pub devices: Vec<DevicePlan>,
    pub links: Vec<LinkPlan>,
    pub schedule: ScheduleSettings,
    /// In execution order: text encoders, then diffusion models, then VAEs.
    pub models: Vec<ModelPlan>,
    /// Every copy of one step, in the order it is issued, for all models.
    pub transfers: Vec<Transfer>,
    /// The diffusion step (the slowest diffusion model's, when several alternate).
    pub predicted: Predicted,
    /// The whole run: prompts encoded, every sampler step, the latent decoded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<RunPrediction>,
}

/// The whole run, predicted from each model's step.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunPrediction {
    /// Sampler steps; diffusion models that take turns share them.
    pub steps: u64,
    /// The CFG scale, given or the family's default.
    pub cfg: f64,
    /// Passes in each step: 2 when CFG batches the unconditional pass with the conditional one.
    pub passes: u64,
    /// The text encoders, each once over the prompts.
    pub encode_seconds: f64,
    /// Every sampler step of the diffusion models.
    pub sampling_seconds: f64,
    /// The VAE, once over the latent.
    pub decode_seconds: f64,
    pub total_seconds: f64,
    /// Where the compute figures come from, for people: `profile`, or the defaults used.
    pub basis: String,
    /// The relative uncertainty of the compute figures when they are defaults, not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertainty: Option<f64>,
}

/// A model file and what identifies its contents: a changed file is refused at run time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// As written in the workflow, resolved against the workflow's folder.
    pub path: String,
    /// `safetensors` or `gguf`.
    pub format: FileFormat,
    pub size_bytes: u64,
    /// The bytes before the tensor data, which the fingerprint covers.
    pub header_bytes: u64,
    /// SHA-256 of the header bytes, hex.
    pub header_sha256: String,
}

/// A device, its memory and what the plan puts on it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DevicePlan {
    /// `cuda:0`, `cpu`, `disk`, …
    pub name: Device,
    /// Total memory; 0 for `disk`.
    pub memory_bytes: u64,
    /// Kept free, out of `memory_bytes`.
    pub reserve_bytes: u64,
    /// Weights that live here for the whole workflow.
    pub resident_bytes: u64,
    /// Resident weights plus the largest in-flight copies and activations of any phase, staging,
    /// and the runtime's own memory.
    pub peak_bytes: u64,
    /// Pinned host memory for batched copies (on `cpu` only).
    pub staging_bytes: u64,
    /// The runtime's own memory here (libtorch's thread pool and allocator, a GPU's workspaces),
    /// in `peak_bytes`.
    #[serde(default)]
    pub runtime_bytes: u64,
    /// Where `runtime_bytes` comes from: `profile` (measured by `mgc probe`), `default` (a
    /// conservative figure, for want of a profile) or `none` (on `disk`).
    #[serde(default)]
    pub runtime_source: String,
    /// The distinct matrix products computed here over the run, whose kernels the runtime keeps
    /// (in `runtime_bytes`), where the profile measured what each adds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct_products: Option<u64>,
    /// What each distinct product adds to `runtime_bytes`, measured by `mgc probe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_bytes: Option<u64>,
    /// The input of the largest norm computed here, in bytes (as much of it as the runtime
    /// norms at once), where `mgc probe` measured what a norm holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_norm_bytes: Option<u64>,
    /// The weights (elements) of the largest weight dequantized or converted to compute here
    /// (GGUF blocks, 8-bit floats), where `mgc probe` measured what a norm holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_dequantized_weights: Option<u64>,
    /// What the larger of those two ops holds while it runs (temporaries the allocator keeps
    /// once freed), in `runtime_bytes`, at the profile's figures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace_bytes: Option<u64>,
    /// Assumed compute throughput, FLOP/s at the models' dtype.
    pub flops_per_second: f64,
}

/// A connection the plan copies over.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkPlan {
    pub from: Device,
    pub to: Device,
    pub bandwidth_bytes_per_second: u64,
    /// Where the figure comes from: `kind pcie4x16`, `declared`, or `default`.
    pub source: String,
}

/// How copies are issued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Layers ahead a copy is issued (the largest any model uses).
    pub prefetch: u32,
    /// Whether the prefetch distances were chosen by the cost model.
    pub prefetch_auto: bool,
    /// Consecutive streamed layers smaller than this are copied together.
    pub batch_below_bytes: u64,
}

/// One model: where it computes and where each of its layers lives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelPlan {
    pub name: String,
    /// Index into [`Plan::inputs`].
    pub input: usize,
    /// The file's path, as in [`Plan::inputs`].
    pub file: String,
    /// The key prefix of this model's tensors in the file.
    pub prefix: String,
    pub family: String,
    pub role: Role,
    /// Models of one phase can be active together; phases run one after another.
    pub phase: u32,
    pub compute: Device,
    /// The allocation string, canonical.
    pub allocation: String,
    /// `auto`, `tail` or `head`.
    pub placement: Placement,
    /// How resident layers were chosen, in words.
    pub placement_reason: String,
    /// How the compiler chose the budgets, in words, when the allocation is `auto` (or none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budgets_reason: Option<String>,
    pub prefetch: u32,
    /// Tokens per step the compute times assume.
    pub tokens: u64,
    /// The most this model may keep on each device, from its allocation.
    pub budgets: Vec<Budget>,
    /// Activations and temporaries reserved on the compute device while the model runs.
    pub activation_bytes: u64,
    pub bytes: u64,
    pub layers: Vec<LayerPlan>,
    /// For a VAE, how the latent is decoded: whole, or in tiles when the whole does not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decode: Option<DecodeMode>,
    pub predicted: Predicted,
}

/// The most a model may keep on one device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    pub device: Device,
    pub bytes: u64,
    /// Bytes of the model the plan puts there.
    pub used_bytes: u64,
}

/// A layer: a block, or a small module outside blocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerPlan {
    pub index: usize,
    pub name: String,
    pub bytes: u64,
    /// Where the layer's weights live.
    pub home: Device,
    /// Whether the weights are copied to the compute device every step.
    pub streamed: bool,
    pub flops: f64,
    pub compute_seconds: f64,
    /// Predicted start and end of the layer's compute within one steady-state step.
    pub start_seconds: f64,
    pub end_seconds: f64,
    pub tensors: Vec<TensorPlan>,
    /// The layer's attention products in one step, as the cost model counts them: `QKᵀ` and
    /// `AV` over these lengths. `mgc run` computes them, so that it does the work predicted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attention: Vec<AttentionPlan>,
}

/// One attention of a layer in one step, every sample of the batch (and CFG's pass) included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AttentionPlan {
    pub queries: u64,
    pub keys: u64,
    /// The width of queries, keys and values, all heads together.
    pub width: u64,
}

/// A tensor of a layer, where it is in the file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TensorPlan {
    /// The full key in the file, prefix included.
    pub name: String,
    pub dtype: String,
    pub shape: Vec<u64>,
    /// Bytes from the start of the file.
    pub offset: u64,
    pub bytes: u64,
    /// Vectors one step applies the weight to, every sample included (1 for a modulation weight,
    /// the text tokens for a text-side projection, 0 for a weight the step does not use); absent
    /// in plans written before it was recorded, where `mgc run` takes the model's tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// One copy of streamed layers to the compute device.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    pub id: usize,
    /// Index into [`Plan::models`].
    pub model: usize,
    /// The layers it carries, `first..=last`.
    pub first_layer: usize,
    pub last_layer: usize,
    pub from: Device,
    pub to: Device,
    pub bytes: u64,
    /// The copy is issued once this layer has finished and freed the buffer the copy reuses (the
    /// previous step's layer when `from_previous_step`); absent: as soon as the stream is free.
    pub issue_after_layer: Option<usize>,
    pub from_previous_step: bool,
    /// Copied through the pinned staging buffer (several small layers in one copy).
    pub batched: bool,
    pub start_seconds: f64,
    pub end_seconds: f64,
}

/// Predicted timings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Predicted {
    /// One steady-state step, from the simulation of compute and copy streams.
    pub step_seconds: f64,
    /// `max(compute, streamed bytes / bandwidth)`: no schedule can beat it.
    pub lower_bound_seconds: f64,
    pub compute_seconds: f64,
    /// Time the copy streams are busy.
    pub copy_seconds: f64,
    /// Share of the copy time that runs while compute is busy.
    pub hidden_copy_fraction: f64,
}

// The enums below carry no doc comments on their variants: the schema lists their names as a plain
// `enum` of strings (documented variants would become a `oneOf`).

/// How a VAE decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DecodeMode {
    Whole,
    Tiled,
}

/// The format of a model file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum FileFormat {
    Safetensors,
    Gguf,
}

// What a model does in the workflow; the runtime runs text encoders and VAEs once and steps
// every other model (an unknown role as a main model). (Not a doc comment: the `role` field's
// schema has never had a description.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(inline)]
pub enum Role {
    TextEncoder,
    Diffusion,
    Vae,
    Unknown,
}

/// Which of a model's layers stay resident when not all fit: chosen by the cost model (`auto`),
/// the last ones (`tail`) or the first ones (`head`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(inline)]
pub enum Placement {
    Auto,
    Tail,
    Head,
}

/// The names the plan writes, for messages and tables.
macro_rules! names {
    ($type:ty { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $type {
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name),*
                }
            }
        }

        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.name())
            }
        }
    };
}

names!(FileFormat { Safetensors => "safetensors", Gguf => "gguf" });
names!(Role { TextEncoder => "text-encoder", Diffusion => "diffusion", Vae => "vae", Unknown => "unknown" });
names!(Placement { Auto => "auto", Tail => "tail", Head => "head" });

/// The fingerprint of a model file's header: SHA-256, hex, of the first `length` bytes `reader`
/// gives. The compiler records it in [`InputFile::header_sha256`]; the runtime checks it.
pub fn header_sha256(reader: impl std::io::Read, length: u64) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    std::io::copy(&mut reader.take(length), &mut hasher)?;
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// The model a plan's step is about: the slowest diffusion model (when several alternate, the
/// step is as slow as the slowest), else the slowest model.
pub fn step_model(models: &[ModelPlan]) -> Option<usize> {
    let slowest = |diffusion_only: bool| {
        models
            .iter()
            .enumerate()
            .filter(|(_, m)| !diffusion_only || m.role == Role::Diffusion)
            .max_by(|a, b| a.1.predicted.step_seconds.total_cmp(&b.1.predicted.step_seconds))
            .map(|(i, _)| i)
    };
    slowest(true).or_else(|| slowest(false))
}

/// Tensors that a model looks up by index rather than multiplies (token and position
/// embeddings): the compiler's cost model gives them no FLOPs and the runtime gathers rows of them.
/// Shared so that prediction and measurement count the same work.
pub fn is_lookup(name: &str) -> bool {
    const PARTS: [&str; 8] = [
        "token_embedding",
        "embed_tokens",
        "position_embedding",
        "positional_embedding",
        "relative_attention_bias",
        "spiece_model",
        "pos_embed",
        "position_ids",
    ];
    // Every pattern but three contains "emb": a quick rejection for the other 99% of names.
    let maybe = name.contains("emb")
        || name.contains("relative_attention_bias")
        || name.contains("spiece_model")
        || name.contains("position_ids")
        || name.ends_with("shared.weight");
    maybe && (PARTS.iter().any(|k| name.contains(k)) || name == "shared.weight" || name.ends_with(".shared.weight"))
}

/// Why a plan cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    #[error("not a plan: {0}")]
    NotJson(String),
    #[error("plan format version {found} is not supported; this mgc reads version {PLAN_VERSION}")]
    Version { found: String },
    #[error("the plan is damaged: {0}")]
    Damaged(String),
}

impl Plan {
    /// Reads a plan, refusing other format versions and damaged files.
    pub fn from_json(text: &str) -> Result<Self, PlanError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| PlanError::NotJson(e.to_string()))?;
        match value.get("format_version") {
            Some(v) if v.as_u64() == Some(u64::from(PLAN_VERSION)) => {}
            Some(v) => {
                return Err(PlanError::Version { found: v.to_string() });
            }
            None => return Err(PlanError::Damaged("no `format_version`".into())),
        }
        let plan: Self = serde_json::from_value(value).map_err(|e| PlanError::Damaged(e.to_string()))?;
        plan.check()?;
        Ok(plan)
    }

    /// The canonical JSON text: compact (a plan lists every tensor; `mgc explain` is the way to
    /// read one), fields in a fixed order, a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Cross-references inside the plan point where they should.
    fn check(&self) -> Result<(), PlanError> {
        let damaged = |what: String| Err(PlanError::Damaged(what));
        for (i, model) in self.models.iter().enumerate() {
            if model.input >= self.inputs.len() {
                return damaged(format!("model {i} refers to input {} of {}", model.input, self.inputs.len()));
            }
            for (j, layer) in model.layers.iter().enumerate() {
                if layer.index != j {
                    return damaged(format!("model `{}` layer {j} has index {}", model.name, layer.index));
                }
                if layer.tensors.iter().map(|t| t.bytes).sum::<u64>() != layer.bytes {
                    return damaged(format!(
                        "model `{}` layer `{}`: tensor bytes do not add up",
                        model.name, layer.name
                    ));
                }
            }
        }
        for t in &self.transfers {
            let Some(model) = self.models.get(t.model) else {
                return damaged(format!("transfer {} refers to model {}", t.id, t.model));
            };
            if t.first_layer > t.last_layer || t.last_layer >= model.layers.len() {
                return damaged(format!("transfer {} carries layers {}..={}", t.id, t.first_layer, t.last_layer));
            }
        }
        Ok(())
    }
}

/// The plan's JSON Schema.
pub fn schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Plan)).unwrap_or_default()
}
