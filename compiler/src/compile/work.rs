//! What one pass of a model computes, true to its architecture: which tokens each weight is
//! applied to, and every attention at its real sequence lengths.
//!
//! A [`Pass`] is one call of a model: a sampler step of a diffusion model (the conditional and
//! unconditional passes batched together when CFG is on, as ComfyUI runs them), one encoding of
//! the prompts by a text encoder, one decode of the latent by a VAE. [`layer_work`] turns a
//! layer's tensors into [`LayerWork`]: matrix products (rows × weight elements), elementwise work,
//! and attention products (queries × keys × width).
//!
//! Which tokens a weight sees, by family (as ComfyUI's model code applies them):
//! - Flux, HunyuanVideo: a double-stream block applies its `img_*` weights to the image tokens and
//!   its `txt_*` weights to the text tokens, and attends over both; a single-stream block applies
//!   its weights to both; `txt_in` (HunyuanVideo's token refiner too) sees the text tokens.
//! - SD3: `x_block` image, `context_block` text, joint attention over both; `attn2` (SD3.5
//!   medium) attends over the image alone.
//! - Qwen-Image: `img_*`, `to_q/k/v`, `to_out` image; `txt_*`, `add_*_proj`, `to_add_out` text;
//!   joint attention.
//! - Wan: self-attention and FFN on the video tokens; cross-attention queries from the video,
//!   keys and values from the text (and, for image-to-video, CLIP's 257 image tokens).
//! - SDXL, SD 1.x: every UNet block at its own resolution (the latent halved per level),
//!   self-attention over that level's positions, cross-attention to the 77 text tokens.
//! - Text encoders: every weight on the prompt's tokens, self-attention over them.
//! - VAEs: the decoder only (a text-to-image or -video run decodes, it never encodes), every
//!   block at its resolution (and, for Wan's causal 3D VAE, its frames).
//!
//! Modulation, timestep, guidance and pooled-vector weights act once per sample, not per token.

use serde::Serialize;

use super::cost::elements;
use crate::inventory::{Family, Role, Tensor};
use crate::workflow::{Sampling, Workload};

/// Text tokens the diffusion model attends to, by family: ComfyUI's tokenizers pad prompts to at
/// least these lengths (`min_length` of the T5 tokenizer for Flux, 256; UMT5 for Wan, 512; the
/// Llama tokenizer of HunyuanVideo, 256; CLIP-L + T5 for SD3, 77 + 77), or, for Qwen-Image, whose
/// tokenizer does not pad, a typical prompt with its template (128).
pub const fn text_tokens(family: Family) -> u64 {
    match family {
        Family::Flux | Family::HunyuanVideo | Family::T5 => 256,
        Family::Wan21 | Family::Wan22 | Family::Umt5 => 512,
        Family::Sd3 => 154,
        Family::QwenImage | Family::Qwen25Vl | Family::Llama => 128,
        _ => 77,
    }
}

/// CLIP vision tokens Wan's image-to-video model attends to (`k_img`, `v_img`).
const CLIP_IMAGE_TOKENS: f64 = 257.0;

/// What one pass of a model works on.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Pass {
    pub family: Family,
    /// Image (or video) tokens of one sample, at the model's own patch grid.
    pub image: u64,
    /// Text tokens of one sample.
    pub text: u64,
    /// Samples in the pass: the batch, twice over when CFG batches the unconditional pass in.
    pub items: u64,
    /// 2 when CFG runs the unconditional pass too, else 1.
    pub passes: u64,
    /// The latent's width, height and frames (for UNets and VAEs, which work at several scales).
    #[serde(skip)]
    latent: (u64, u64, u64),
    /// Resolution levels of a UNet, or a VAE decoder's up blocks.
    #[serde(skip)]
    levels: u32,
}

impl Pass {
    /// Tokens of the pass, every sample: what activations are made of.
    pub const fn tokens(&self) -> u64 {
        self.image.saturating_add(self.text).saturating_mul(self.items)
    }

    /// Tokens of one pass without CFG's second half: ComfyUI batches the conditional and
    /// unconditional passes only while they fit (`calc_cond_batch`), else runs them one after
    /// the other, so this is what activations must hold.
    pub const fn tokens_without_cfg(&self) -> u64 {
        self.image.saturating_add(self.text).saturating_mul(self.items / if self.passes > 1 { self.passes } else { 1 })
    }

    /// The latent's width × height, one frame.
    pub const fn latent_area(&self) -> u64 {
        self.latent.0.saturating_mul(self.latent.1)
    }
}

/// The pass of a model, from the workload and the sampler settings. `context` is the family of
/// the workflow's diffusion model, whose prompt length a text encoder works at.
pub fn model_pass(
    family: Family,
    role: Role,
    tensors: &[Tensor],
    workload: &Workload,
    sampling: &Sampling,
    context: Option<Family>,
) -> Pass {
    let (width, height, frames, batch, given) = match *workload {
        Workload::Tokens { tokens, batch } => (1024, 1024, 1, batch, Some(tokens)),
        Workload::Resolution { width, height, frames, batch } => (width, height, frames, batch, None),
    };
    let video = matches!(family, Family::Wan21 | Family::Wan22 | Family::HunyuanVideo | Family::WanVae);
    let latent_frames = if video { frames.saturating_sub(1) / 4 + 1 } else { frames };
    let vae_scale = if family == Family::Wan22 { 16 } else { 8 };
    let latent = ((width / vae_scale).max(1), (height / vae_scale).max(1), latent_frames.max(1));
    let passes = sampling.passes(context.unwrap_or(family));
    let (image, text, items, passes) = match role {
        Role::TextEncoder => {
            // CLIP pads to 77 tokens; T5 and LLM encoders work at the diffusion model's length
            // (SD3's T5 half of it).
            let text = match (context, sampling.text_tokens) {
                _ if is_clip(family) => 77,
                (Some(Family::Sd3), _) => 77,
                (_, Some(given)) => given,
                (Some(context), None) => text_tokens(context),
                (None, None) => text_tokens(family),
            };
            (0, text, passes, passes)
        }
        Role::Vae => (latent.0 * latent.1 * latent.2, 0, batch, 1),
        Role::Diffusion | Role::Unknown => {
            let per_item = given.unwrap_or(match family {
                Family::Sdxl | Family::Sd1 => latent.0 * latent.1,
                _ => (latent.0 / 2).max(1) * (latent.1 / 2).max(1) * latent.2,
            });
            let text = if role == Role::Diffusion { sampling.text_tokens.unwrap_or(text_tokens(family)) } else { 0 };
            (per_item.max(1), text, batch.saturating_mul(passes), passes)
        }
    };
    Pass { family, image, text, items: items.max(1), passes, latent, levels: levels(family, tensors) }
}

const fn is_clip(family: Family) -> bool {
    matches!(family, Family::ClipL | Family::ClipG | Family::ClipH)
}

/// A UNet's resolution levels (three input blocks a level), or a VAE decoder's up blocks.
fn levels(family: Family, tensors: &[Tensor]) -> u32 {
    let (container, per_level) = match family {
        Family::Sdxl | Family::Sd1 => ("input_blocks.", 3),
        Family::SdVae | Family::FluxVae => ("decoder.up.", 1),
        Family::WanVae => ("decoder.upsamples.", 4),
        _ => return 0,
    };
    let last = tensors.iter().filter_map(|t| block_number(&t.name, container)).max().unwrap_or(0);
    (last / per_level + 1) as u32
}

/// The number after `container` in a name: `input_blocks.7.1.proj_in.weight` → 7.
fn block_number(name: &str, container: &str) -> Option<u64> {
    let at = name.find(container)?;
    name.get(at + container.len()..)?.split('.').next()?.parse().ok()
}

/// How ComfyUI decodes a latent: whole when what it reserves for that fits, else in tiles, one
/// at a time, whose overlaps are decoded twice (ComfyUI's `VAE.decode` falls back to
/// `decode_tiled_` for images, `decode_tiled_3d` for video, in `comfy/sd.py`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Decode {
    pub tiled: bool,
    /// What ComfyUI reserves for one decode (the whole latent, or one tile).
    pub bytes: u64,
    /// The work of the decode relative to decoding the whole latent at once.
    pub factor: f64,
}

/// ComfyUI's memory estimate for decoding, bytes per element of latent area (one frame) in
/// BF16 (`memory_used_decode` in `comfy/sd.py`): 2178·64 for the KL VAEs of SD and Flux, 7000·64
/// for Wan's, whose causal decoder works a latent frame at a time, so that the figure does not
/// grow with frames.
pub const fn decode_bytes_per_area(family: Family) -> Option<u64> {
    match family {
        Family::SdVae | Family::FluxVae => Some(2178 * 64 * 2),
        Family::WanVae => Some(7000 * 64 * 2),
        _ => None,
    }
}

/// How a VAE of `family` decodes the pass's latent with `room` bytes free on its device.
pub fn vae_decode(pass: &Pass, room: u64) -> Option<Decode> {
    let per_area = decode_bytes_per_area(pass.family)?;
    let (w, h, _) = pass.latent;
    let whole = per_area.saturating_mul(w * h).saturating_mul(pass.items);
    if whole <= room {
        return Some(Decode { tiled: false, bytes: whole, factor: 1.0 });
    }
    // Tiles of the latent, as `get_tiled_scale_steps` counts them.
    let tiles = |tile_x: u64, tile_y: u64, overlap: u64| -> f64 {
        let count = |size: u64, tile: u64| if size <= tile { 1 } else { (size - overlap).div_ceil(tile - overlap) };
        (count(w, tile_x) * count(h, tile_y) * tile_x.min(w) * tile_y.min(h)) as f64
    };
    let area = (w * h) as f64;
    let (tile_area, factor) = if pass.family == Family::WanVae {
        // `decode_tiled_3d`: 32×32 tiles overlapping by 8, every frame at once.
        (32 * 32, tiles(32, 32, 8) / area)
    } else {
        // `decode_tiled_`: three tilings averaged (64×64, 32×128, 128×32), overlapping by 16.
        (64 * 64, (tiles(64, 64, 16) + tiles(32, 128, 16) + tiles(128, 32, 16)) / area)
    };
    Some(Decode { tiled: true, bytes: per_area.saturating_mul(tile_area), factor })
}

/// The work of one layer of one pass.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LayerWork {
    /// `(rows, inner, outputs)`: a weight of `outputs × inner` elements (a convolution's inner
    /// width is its input channels × kernel) applied to `rows` vectors, 2 FLOPs an element a row.
    pub matmuls: Vec<(f64, f64, f64)>,
    /// Elements through norms, biases and other vectors.
    pub elementwise: f64,
    /// Of `elementwise`, the elements through biases added to outputs (a 1-D weight named
    /// `…bias`, as the runtime adds one), which a CPU may run far faster than a norm.
    #[serde(skip_serializing_if = "is_zero")]
    pub adds: f64,
    /// `(queries, keys, width)`: an attention's `QKᵀ` and `AV`, 4 FLOPs per query, key and channel.
    pub attention: Vec<(f64, f64, f64)>,
    /// Weight tensors, each a kernel or more to launch.
    pub tensors: usize,
    /// Per tensor, in the layer's order: the vectors it is applied to (0 for a lookup table, or a
    /// weight the pass does not use).
    #[serde(skip)]
    pub rows: Vec<f64>,
}

impl LayerWork {
    /// The same work done `factor` times over (a tiled decode's overlaps).
    pub fn scaled(mut self, factor: f64) -> Self {
        self.matmuls.iter_mut().for_each(|(rows, _, _)| *rows *= factor);
        self.rows.iter_mut().for_each(|rows| *rows *= factor);
        self.attention.iter_mut().for_each(|(q, _, _)| *q *= factor);
        self.elementwise *= factor;
        self.adds *= factor;
        self
    }

    /// Floating-point operations of the layer.
    pub fn flops(&self) -> f64 {
        let matmuls: f64 = self.matmuls.iter().map(|(rows, inner, outputs)| 2.0 * rows * inner * outputs).sum();
        let attention: f64 = self.attention.iter().map(|(q, k, d)| 4.0 * q * k * d).sum();
        matmuls + self.elementwise + attention
    }
}

/// The work of a layer's tensors in a pass.
pub fn layer_work(pass: &Pass, tensors: &[&Tensor]) -> LayerWork {
    let items = pass.items as f64;
    let mut work = LayerWork { tensors: tensors.len(), ..LayerWork::default() };
    for t in tensors {
        let rows = rows(pass, &t.name) * items;
        work.rows.push(rows);
        if t.shape.len() >= 2 && !is_vector(t) {
            let outputs = t.shape.first().copied().unwrap_or(1).max(1) as f64;
            work.matmuls.push((rows, elements(t) / outputs, outputs));
        } else {
            work.elementwise += rows * elements(t);
            if t.shape.len() == 1 && t.name.ends_with("bias") {
                work.adds += rows * elements(t);
            }
        }
        if let Some((q, k, d)) = attention(pass, t) {
            work.attention.push((q * items, k, d));
        }
    }
    work
}

/// A parameter stored with leading 1s (`[1, 6, 5120]` modulation tables): added, not multiplied.
fn is_vector(t: &Tensor) -> bool {
    t.shape.iter().filter(|&&d| d > 1).count() <= 1
}

/// Weights applied once per sample: modulation, timestep, guidance and pooled-vector embedders.
fn is_conditioning(name: &str) -> bool {
    const PARTS: [&str; 16] = [
        "_mod.",
        "modulation",
        "adaLN",
        "time_in.",
        "guidance_in.",
        "vector_in.",
        "time_embedding.",
        "time_projection.",
        "time_embed.",
        "t_embedder.",
        "y_embedder.",
        "label_emb.",
        "time_text_embed.",
        "emb_layers.",
        "c_embedder.",
        "norm_out.linear.",
    ];
    PARTS.iter().any(|p| name.contains(p))
}

/// Vectors one sample applies a weight to (before the batch).
fn rows(pass: &Pass, name: &str) -> f64 {
    let (image, text) = (pass.image as f64, pass.text as f64);
    if mgc_plan::is_lookup(name) || name.starts_with("token_embd") || name.starts_with("visual.") {
        return 0.0;
    }
    if name.starts_with("lm_head") || name == "output.weight" {
        // The encoder's hidden states are what conditions the model; no logits are computed.
        return 0.0;
    }
    if is_conditioning(name) {
        return 1.0;
    }
    match pass.family {
        Family::Flux | Family::HunyuanVideo => {
            if name.starts_with("single_blocks.") {
                image + text
            } else if name.starts_with("txt_in") || name.contains(".txt_") {
                text
            } else {
                image
            }
        }
        Family::Sd3 => {
            if name.contains("context_block.") || name.starts_with("context_embedder") {
                text
            } else {
                image
            }
        }
        Family::QwenImage => {
            let text_side = [".txt_", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "norm_added"];
            if name.starts_with("txt_") || text_side.iter().any(|p| name.contains(p)) { text } else { image }
        }
        Family::Wan21 | Family::Wan22 => {
            let text_side = ["cross_attn.k.", "cross_attn.v.", "cross_attn.norm_k."];
            if name.starts_with("text_embedding") || text_side.iter().any(|p| name.contains(p)) {
                text
            } else if name.starts_with("img_emb") || name.contains("_img.") {
                CLIP_IMAGE_TOKENS
            } else {
                image
            }
        }
        Family::Sdxl | Family::Sd1 => {
            if name.contains("attn2.to_k") || name.contains("attn2.to_v") {
                text
            } else {
                unet_positions(pass, name)
            }
        }
        Family::SdVae | Family::FluxVae | Family::WanVae => vae_positions(pass, name),
        _ => image + text,
    }
}

/// Positions of the latent at a UNet block's level: halved in each dimension per level down.
fn unet_positions(pass: &Pass, name: &str) -> f64 {
    let last = pass.levels.saturating_sub(1);
    let level = if let Some(i) = block_number(name, "input_blocks.") {
        (i / 3) as u32
    } else if name.starts_with("middle_block") {
        last
    } else if let Some(i) = block_number(name, "output_blocks.") {
        let level = last.saturating_sub((i / 3) as u32);
        // An upsampler (`output_blocks.2.2.conv`) convolves at the next finer level.
        if upsampler(name) { level.saturating_sub(1) } else { level }
    } else {
        0
    };
    scaled(pass.latent.0, pass.latent.1, level) as f64
}

/// `output_blocks.I.J.conv.weight`: ComfyUI's `Upsample`, the only `conv` right under a block.
fn upsampler(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() == 5 && parts.get(3) == Some(&"conv")
}

/// Width × height, each halved `level` times (rounded up).
fn scaled(width: u64, height: u64, level: u32) -> u64 {
    let halve = |n: u64| n.div_ceil(1 << level.min(20)).max(1);
    halve(width) * halve(height)
}

/// Positions (× frames, for Wan's VAE) where a VAE decoder block convolves; the encoder does not
/// run when decoding.
fn vae_positions(pass: &Pass, name: &str) -> f64 {
    let (w, h, latent_frames) = pass.latent;
    let latent = (w * h) as f64;
    if name.starts_with("encoder.") || name.starts_with("quant_conv") || name.starts_with("conv1.") {
        return 0.0;
    }
    let up = pass.levels.saturating_sub(1);
    // Spatial doublings from the latent, and (Wan) frames at that point.
    let doublings = match pass.family {
        Family::WanVae => match block_number(name, "decoder.upsamples.") {
            // Three residual blocks then a resample per level; the resample works at the next.
            Some(i) => (i / 4 + u64::from(i % 4 == 3)) as u32,
            None if name.starts_with("decoder.head") => up,
            None => 0,
        },
        _ => match block_number(name, "decoder.up.") {
            Some(k) => {
                let level = up.saturating_sub(k as u32);
                if name.contains(".upsample.") { level + 1 } else { level }
            }
            None if name.starts_with("decoder.norm_out") || name.starts_with("decoder.conv_out") => up,
            None => 0,
        },
    };
    let frames = match pass.family {
        // The causal 3D VAE doubles frames at its first two resamples: T, 2(T-1)+1, 4(T-1)+1.
        Family::WanVae => (((latent_frames - 1) << doublings.min(2)) + 1) as f64,
        _ => 1.0,
    };
    latent * f64::from(1u32 << doublings.min(16)).powi(2) * frames
}

/// An attention whose query projection this tensor is: `(queries, keys, width)` for one sample.
fn attention(pass: &Pass, t: &Tensor) -> Option<(f64, f64, f64)> {
    let name = t.name.as_str();
    let input = t.shape.get(1).copied().unwrap_or(0) as f64;
    let output = t.shape.first().copied().unwrap_or(0) as f64;
    let (image, text) = (pass.image as f64, pass.text as f64);
    let joint = image + text;
    let found = match pass.family {
        Family::Flux | Family::HunyuanVideo => {
            if name.ends_with("img_attn.qkv.weight") {
                (joint, joint, input)
            } else if name.starts_with("single_blocks.") && name.ends_with("linear2.weight") {
                (joint, joint, output)
            } else if name.starts_with("txt_in.") && name.ends_with("self_attn.qkv.weight") {
                (text, text, input)
            } else {
                return None;
            }
        }
        Family::Sd3 if name.ends_with("x_block.attn.qkv.weight") => (joint, joint, input),
        Family::Sd3 if name.ends_with("x_block.attn2.qkv.weight") => (image, image, input),
        Family::QwenImage if name.ends_with("attn.to_q.weight") => (joint, joint, input),
        Family::Wan21 | Family::Wan22 => {
            if name.ends_with("self_attn.q.weight") {
                (image, image, input)
            } else if name.ends_with("cross_attn.q.weight") {
                (image, text, input)
            } else if name.ends_with("cross_attn.k_img.weight") {
                (image, CLIP_IMAGE_TOKENS, input)
            } else {
                return None;
            }
        }
        Family::Sdxl | Family::Sd1 => {
            let n = unet_positions(pass, name);
            if name.ends_with("attn1.to_q.weight") {
                (n, n, input)
            } else if name.ends_with("attn2.to_q.weight") {
                (n, text, input)
            } else {
                return None;
            }
        }
        Family::SdVae | Family::FluxVae | Family::WanVae => {
            // The mid block's attention, over one frame's positions at a time.
            let (w, h, frames) = pass.latent;
            let n = (w * h) as f64;
            let frames = if pass.family == Family::WanVae { frames as f64 } else { 1.0 };
            if name.starts_with("decoder.") && (name.ends_with("attn_1.q.weight") || name.ends_with("to_qkv.weight")) {
                (n * frames, n, input)
            } else {
                return None;
            }
        }
        family if family.role() == Role::TextEncoder => {
            let query = ["q_proj.weight", "SelfAttention.q.weight", "attn_q.weight"];
            if query.iter().any(|q| name.ends_with(q)) && !name.starts_with("visual.") {
                (text, text, output)
            } else if name.ends_with("attn.in_proj_weight") {
                (text, text, input)
            } else {
                return None;
            }
        }
        _ => return None,
    };
    Some(found)
}

#[expect(clippy::trivially_copy_pass_by_ref, reason = "serde's skip_serializing_if passes a reference")]
fn is_zero(x: &f64) -> bool {
    *x == 0.0
}
