"""Model files for the loader tests, written on the spot with random weights: ComfyUI's own model
classes (imported from its checkout at run time) give the key names and shapes its loaders
detect, so the file loads as a real one would.

- `clip_vision_vit_l`: a CLIP ViT-L/14 image encoder (ComfyUI builds it from a fixed config, so
  it is the real size: 304M parameters).
- `flux_controlnet`: an XLabs-format Flux ControlNet (double blocks and `controlnet_blocks`).
  ComfyUI's Flux detection fixes the width (hidden size 3072) and counts the blocks, so the
  smallest it accepts has one double block: 395M parameters.
"""

import os

import torch
from safetensors.torch import save_file


def random_state_dict(module, seed=0, dtype=torch.float16):
    """``module``'s weights, random: one seeded draw per key in sorted order; matrices N(0, 1/fan_in),
    norm scales 1 + N(0, 0.1²), other vectors N(0, 0.02²), so activations stay finite."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in sorted(module.state_dict().items()):
        shape = tuple(value.shape)
        noise = torch.randn(shape, generator=g)
        if len(shape) >= 2:
            fan_in = max(1, value[0].numel())
            values = noise / fan_in ** 0.5
        elif "norm" in key and key.endswith((".weight", ".scale")):
            values = 1 + 0.1 * noise
        else:
            values = 0.02 * noise
        out[key] = values.to(dtype).contiguous()
    return out


def clip_vision_vit_l(comfyui, path, seed=0):
    """Writes a CLIP ViT-L/14 (224 px) image encoder in ComfyUI's key names (`vision_model.…`,
    `visual_projection.weight`), F16 as the published files are."""
    import comfy.clip_vision

    with torch.device("meta"):
        model = comfy.clip_vision.ClipVisionModel(os.path.join(comfyui, "comfy", "clip_vision_config_vitl.json")).model
    save_file(random_state_dict(model, seed), str(path))
    return path


# Flux dev's configuration, as ComfyUI's Flux detection gives it for a file with one double block.
FLUX = {"in_channels": 16, "out_channels": 16, "patch_size": 2, "vec_in_dim": 768, "context_in_dim": 4096,
        "hidden_size": 3072, "mlp_ratio": 4.0, "num_heads": 24, "axes_dim": [16, 56, 56], "theta": 10000,
        "qkv_bias": True, "guidance_embed": True}


def flux_controlnet(path, depth=1, seed=0, dtype=torch.bfloat16):
    """Writes an XLabs Flux ControlNet for Flux dev: ``depth`` double blocks and the embedders, a
    `controlnet_blocks` linear per block, the hint's convolutions (`input_hint_block`) and
    `pos_embed_input`; no single blocks, as XLabs' files have none. BF16, as the published files
    are."""
    import comfy.ldm.flux.controlnet
    import comfy.ops

    with torch.device("meta"):
        model = comfy.ldm.flux.controlnet.ControlNetFlux(operations=comfy.ops.disable_weight_init, depth=depth,
                                                         depth_single_blocks=0, **FLUX)
    save_file(random_state_dict(model, seed, dtype), str(path))
    return path
