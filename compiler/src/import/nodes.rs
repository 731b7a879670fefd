//! The ComfyUI-MultiGPU loader nodes mgc imports, and the order of their widgets.
//!
//! A saved UI workflow keeps a node's widget values by position, in the order of its class's
//! `INPUT_TYPES` (`required`, then `optional`; inputs that only take a link have no value). The
//! MultiGPU wrappers append their own inputs to the wrapped loader's:
//!
//! - plain device loaders (`…MultiGPU`): `device`; the CLIP and dual CLIP loaders already end
//!   with a `device` input, which the wrapper replaces in place;
//! - DisTorch2 loaders (`…DisTorch2MultiGPU`): the compute device (`device` for text encoders
//!   and CLIP vision, `compute_device` otherwise), `virtual_vram_gb`, `donor_device`,
//!   `expert_mode_allocations`, `eject_models`;
//! - the DisTorch (v1) GGUF loaders (`…GGUFDisTorchMultiGPU`): `device`, `virtual_vram_gb`,
//!   `use_other_vram`, `expert_mode_allocations`.
//!
//! A few loaders (the advanced checkpoint loaders, WanVideoWrapper's, Florence2's, and this
//! project's node pack's own for those two) declare their device inputs themselves; their widget
//! lists are written out whole.

/// Where ComfyUI looks for a model file, under its `models/` folder, in order.
pub const DIFFUSION: &[&str] = &["diffusion_models", "unet"];
pub const TEXT_ENCODERS: &[&str] = &["text_encoders", "clip"];
pub const VAE: &[&str] = &["vae"];
pub const VAE_APPROX: &[&str] = &["vae_approx"];
pub const CLIP_VISION: &[&str] = &["clip_vision"];
pub const CHECKPOINTS: &[&str] = &["checkpoints"];
pub const CONTROLNET: &[&str] = &["controlnet"];
pub const LLM: &[&str] = &["LLM"];

/// How a node says where its model goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The whole model on the device widget.
    Device,
    /// DisTorch2: `virtual_vram_gb`, `donor_device`, `expert_mode_allocations`.
    DisTorch2,
    /// DisTorch v1 (legacy GGUF): `virtual_vram_gb`, `use_other_vram`, `expert_mode_allocations`.
    DisTorch1,
}

/// What mgc knows of one loader node.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// What the model is, for its name in the workflow (`unet`, `clip`, ...).
    pub role: &'static str,
    /// Every widget, in order.
    pub widgets: Vec<&'static str>,
    /// The widgets that name model files.
    pub files: &'static [&'static str],
    pub folders: &'static [&'static str],
    /// The widget that names the compute device.
    pub device: &'static str,
    /// The widgets that name the virtual VRAM, donor and expert string (DisTorch2 naming for the
    /// advanced checkpoint loader's prefixed ones).
    pub allocation: Option<[&'static str; 3]>,
    pub kind: Kind,
    /// Florence2 models are folders: the file is `model.safetensors` inside.
    pub folder_model: bool,
    /// Something the import cannot carry over, said in a comment.
    pub note: Option<&'static str>,
}

/// A loader as ComfyUI itself defines it, before the MultiGPU wrapper.
struct Base {
    name: &'static str,
    role: &'static str,
    widgets: &'static [&'static str],
    files: &'static [&'static str],
    folders: &'static [&'static str],
    /// Text encoders and CLIP vision: the DisTorch2 wrapper names its device `device`.
    clip: bool,
}

const fn base(
    name: &'static str,
    role: &'static str,
    widgets: &'static [&'static str],
    files: &'static [&'static str],
    folders: &'static [&'static str],
    clip: bool,
) -> Base {
    Base { name, role, widgets, files, folders, clip }
}

/// The wrapped loaders; CLIP and dual CLIP end with the `device` the wrapper replaces.
const BASES: &[Base] = &[
    base("UNETLoader", "unet", &["unet_name", "weight_dtype"], &["unet_name"], DIFFUSION, false),
    base("VAELoader", "vae", &["vae_name"], &["vae_name"], VAE, false),
    base("CLIPLoader", "clip", &["clip_name", "type"], &["clip_name"], TEXT_ENCODERS, true),
    base(
        "DualCLIPLoader",
        "clip",
        &["clip_name1", "clip_name2", "type"],
        &["clip_name1", "clip_name2"],
        TEXT_ENCODERS,
        true,
    ),
    base(
        "TripleCLIPLoader",
        "clip",
        &["clip_name1", "clip_name2", "clip_name3"],
        &["clip_name1", "clip_name2", "clip_name3"],
        TEXT_ENCODERS,
        true,
    ),
    base(
        "QuadrupleCLIPLoader",
        "clip",
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
        TEXT_ENCODERS,
        true,
    ),
    base("CLIPVisionLoader", "clip_vision", &["clip_name"], &["clip_name"], CLIP_VISION, true),
    base("CheckpointLoaderSimple", "checkpoint", &["ckpt_name"], &["ckpt_name"], CHECKPOINTS, false),
    base("ControlNetLoader", "controlnet", &["control_net_name"], &["control_net_name"], CONTROLNET, false),
    // `model` is a link, not a widget.
    base("DiffControlNetLoader", "controlnet", &["control_net_name"], &["control_net_name"], CONTROLNET, false),
    base("UnetLoaderGGUF", "unet", &["unet_name"], &["unet_name"], DIFFUSION, false),
    base(
        "UnetLoaderGGUFAdvanced",
        "unet",
        &["unet_name", "dequant_dtype", "patch_dtype", "patch_on_device"],
        &["unet_name"],
        DIFFUSION,
        false,
    ),
    base("CLIPLoaderGGUF", "clip", &["clip_name", "type"], &["clip_name"], TEXT_ENCODERS, true),
    base(
        "DualCLIPLoaderGGUF",
        "clip",
        &["clip_name1", "clip_name2", "type"],
        &["clip_name1", "clip_name2"],
        TEXT_ENCODERS,
        true,
    ),
    base(
        "TripleCLIPLoaderGGUF",
        "clip",
        &["clip_name1", "clip_name2", "clip_name3"],
        &["clip_name1", "clip_name2", "clip_name3"],
        TEXT_ENCODERS,
        true,
    ),
    base(
        "QuadrupleCLIPLoaderGGUF",
        "clip",
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
        &["clip_name1", "clip_name2", "clip_name3", "clip_name4"],
        TEXT_ENCODERS,
        true,
    ),
];

const DISTORCH2: &[&str] = &["virtual_vram_gb", "donor_device", "expert_mode_allocations", "eject_models"];
const DISTORCH1: &[&str] = &["virtual_vram_gb", "use_other_vram", "expert_mode_allocations"];

/// A wrapped loader's widgets: the loader's, then the wrapper's.
fn widgets(base: &Base, device: &'static str, extra: &[&'static str]) -> Vec<&'static str> {
    let mut list: Vec<&'static str> = base.widgets.to_vec();
    list.push(device);
    list.extend_from_slice(extra);
    list
}

/// The spec of a node type, or `None` when mgc does not import it.
pub fn spec(class: &str) -> Option<NodeSpec> {
    if let Some(spec) = special(class) {
        return Some(spec);
    }
    let (name, kind) = if let Some(name) = class.strip_suffix("DisTorch2MultiGPU") {
        (name, Kind::DisTorch2)
    } else if let Some(name) = class.strip_suffix("DisTorchMultiGPU") {
        (name, Kind::DisTorch1)
    } else {
        (class.strip_suffix("MultiGPU")?, Kind::Device)
    };
    let base = BASES.iter().find(|b| b.name == name)?;
    // DisTorch v1 wrapped only the GGUF loaders.
    if kind == Kind::DisTorch1 && !name.contains("GGUF") {
        return None;
    }
    let (device, extra, allocation): (&'static str, &[&'static str], _) = match kind {
        Kind::Device => ("device", &[], None),
        Kind::DisTorch2 => {
            let device = if base.clip { "device" } else { "compute_device" };
            (device, DISTORCH2, Some(["virtual_vram_gb", "donor_device", "expert_mode_allocations"]))
        }
        Kind::DisTorch1 => {
            ("device", DISTORCH1, Some(["virtual_vram_gb", "use_other_vram", "expert_mode_allocations"]))
        }
    };
    Some(NodeSpec {
        role: base.role,
        widgets: widgets(base, device, extra),
        files: base.files,
        folders: base.folders,
        device,
        allocation,
        kind,
        folder_model: false,
        note: None,
    })
}

const CHECKPOINT_NOTE: &str = "mgc plans the checkpoint file as one model on the UNet's device; the node's CLIP and VAE devices are not carried over";

/// Loaders that declare their device inputs themselves.
fn special(class: &str) -> Option<NodeSpec> {
    let plain = |role, widgets: &[&'static str], files, folders, device| NodeSpec {
        role,
        widgets: widgets.to_vec(),
        files,
        folders,
        device,
        allocation: None,
        kind: Kind::Device,
        folder_model: false,
        note: None,
    };
    let spec = match class {
        "CheckpointLoaderAdvancedMultiGPU" => NodeSpec {
            note: Some(CHECKPOINT_NOTE),
            ..plain(
                "checkpoint",
                &["ckpt_name", "unet_device", "clip_device", "vae_device"],
                &["ckpt_name"],
                CHECKPOINTS,
                "unet_device",
            )
        },
        "CheckpointLoaderAdvancedDisTorch2MultiGPU" => NodeSpec {
            allocation: Some(["unet_virtual_vram_gb", "unet_donor_device", "unet_expert_mode_allocations"]),
            kind: Kind::DisTorch2,
            note: Some(CHECKPOINT_NOTE),
            ..plain(
                "checkpoint",
                &[
                    "ckpt_name",
                    "unet_compute_device",
                    "unet_virtual_vram_gb",
                    "unet_donor_device",
                    "clip_compute_device",
                    "clip_virtual_vram_gb",
                    "clip_donor_device",
                    "vae_device",
                    "unet_expert_mode_allocations",
                    "clip_expert_mode_allocations",
                    "high_precision_loras",
                    "eject_models",
                ],
                &["ckpt_name"],
                CHECKPOINTS,
                "unet_compute_device",
            )
        },
        "WanVideoModelLoaderMultiGPU" => plain(
            "unet",
            &[
                "model",
                "base_precision",
                "quantization",
                "load_device",
                "compute_device",
                "attention_mode",
                "rms_norm_function",
            ],
            &["model"],
            DIFFUSION,
            "compute_device",
        ),
        "WanVideoVAELoaderMultiGPU" => {
            plain("vae", &["model_name", "load_device", "precision"], &["model_name"], VAE, "load_device")
        }
        "WanVideoTinyVAELoaderMultiGPU" => plain(
            "vae",
            &["model_name", "load_device", "precision", "parallel"],
            &["model_name"],
            VAE_APPROX,
            "load_device",
        ),
        "LoadWanVideoT5TextEncoderMultiGPU" => plain(
            "clip",
            &["model_name", "precision", "device", "quantization"],
            &["model_name"],
            TEXT_ENCODERS,
            "device",
        ),
        "LoadWanVideoClipTextEncoderMultiGPU" => plain(
            "clip_vision",
            &["model_name", "precision", "device"],
            &["model_name"],
            &["clip_vision", "text_encoders"],
            "device",
        ),
        // This project's own node pack: WanVideoWrapper's loader with DisTorch2's inputs after the
        // wrapper's required ones, and Florence2's loaders with a `device`.
        "WanVideoModelLoaderMGC" => NodeSpec {
            allocation: Some(["virtual_vram_gb", "donor_device", "expert_mode_allocations"]),
            kind: Kind::DisTorch2,
            ..plain(
                "unet",
                &[
                    "model",
                    "base_precision",
                    "quantization",
                    "load_device",
                    "compute_device",
                    "virtual_vram_gb",
                    "donor_device",
                    "expert_mode_allocations",
                    "attention_mode",
                    "model_name",
                ],
                &["model"],
                DIFFUSION,
                "compute_device",
            )
        },
        "Florence2ModelLoaderMGC" | "DownloadAndLoadFlorence2ModelMGC" => NodeSpec {
            folder_model: true,
            ..plain(
                "florence2",
                &["model", "precision", "attention", "device", "convert_to_safetensors", "model_name"],
                &["model"],
                LLM,
                "device",
            )
        },
        "Florence2ModelLoaderMultiGPU" | "DownloadAndLoadFlorence2ModelMultiGPU" => NodeSpec {
            folder_model: true,
            ..plain(
                "florence2",
                &["model", "precision", "attention", "convert_to_safetensors", "device", "offload_device"],
                &["model"],
                LLM,
                "device",
            )
        },
        _ => return None,
    };
    Some(spec)
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn wrappers_append_their_inputs_to_the_loader() {
        let unet = spec("UNETLoaderDisTorch2MultiGPU").unwrap();
        assert_eq!(
            unet.widgets,
            [
                "unet_name",
                "weight_dtype",
                "compute_device",
                "virtual_vram_gb",
                "donor_device",
                "expert_mode_allocations",
                "eject_models"
            ]
        );
        assert_eq!(spec("DualCLIPLoaderDisTorch2MultiGPU").unwrap().device, "device");
        assert_eq!(spec("CLIPLoaderMultiGPU").unwrap().widgets, ["clip_name", "type", "device"]);
        assert_eq!(spec("UnetLoaderGGUFMultiGPU").unwrap().widgets, ["unet_name", "device"]);
        assert_eq!(spec("UnetLoaderGGUFDisTorchMultiGPU").unwrap().kind, Kind::DisTorch1);
    }

    #[test]
    fn the_packs_own_wanvideo_and_florence2_loaders_are_imported() {
        let wan = spec("WanVideoModelLoaderMGC").unwrap();
        assert_eq!(wan.kind, Kind::DisTorch2);
        assert_eq!(wan.device, "compute_device");
        assert_eq!(
            wan.widgets.get(4..8),
            Some(&["compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations"][..])
        );
        let florence = spec("Florence2ModelLoaderMGC").unwrap();
        assert!(florence.folder_model);
        assert_eq!(florence.widgets.get(3), Some(&"device"));
        assert!(spec("DownloadAndLoadFlorence2ModelMGC").is_some());
    }

    #[test]
    fn other_nodes_are_not_loaders() {
        for class in ["UNETLoader", "KSampler", "UNETLoaderDisTorchMultiGPU", "WanVideoSamplerMultiGPU", "MultiGPU"] {
            assert!(spec(class).is_none(), "{class}");
        }
    }
}
