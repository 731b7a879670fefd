"""mgc's predicted FLOPs against an independent count: torch's FLOP counter over ComfyUI's own
forward pass of the tiny Flux and Wan 2.1 fixtures (ComfyUI's model classes, random weights).

Runs when MGC_COMFYUI names a ComfyUI checkout whose Python deps are importable, and the tiny
fixtures are there (MGC_TINY, else the shared fixtures beside the repository); skipped otherwise.

torch's counter counts matrix products, convolutions and attention; mgc's layer FLOPs also count
norms and biases (one operation an element), under 1% even of a model this narrow (0.27% for the tiny Flux, 0.22% for the tiny Wan). The tolerance
is well under what any mistake of which tokens a weight sees would make: modulation applied to
every token, text weights on image tokens, or attention left out would each move the count by a
third or more.
"""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMFYUI = os.environ.get("MGC_COMFYUI")
TINY = os.environ.get("MGC_TINY", os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "tiny"))

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI, "comfy")) or not os.path.isdir(TINY),
    reason="set MGC_COMFYUI to a ComfyUI checkout (and MGC_TINY to the tiny fixtures) to count FLOPs in ComfyUI",
)

# What mgc counts beyond torch's counter (norms, biases), at most.
TOLERANCE = 0.02


@pytest.fixture
def comfy(monkeypatch):
    """ComfyUI importable, on the CPU, with the tiny Flux's sizes read from its keys."""
    monkeypatch.syspath_prepend(COMFYUI)
    monkeypatch.setattr(sys, "argv", ["main.py", "--cpu"])
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_detection

    original = comfy.model_detection.detect_unet_config

    def detect(sd, prefix, metadata=None):
        # ComfyUI hard-codes Flux's width; the tiny one's is in its keys (see the fixtures' README).
        config = original(sd, prefix, metadata=metadata)
        if config and config.get("image_model") == "flux":
            width = sd[prefix + "img_in.weight"].shape[0]
            head = sd[prefix + "double_blocks.0.img_attn.norm.key_norm.scale"].shape[0]
            config.update(hidden_size=width, num_heads=width // head, axes_dim=[8, 28, 28],
                          context_in_dim=sd[prefix + "txt_in.weight"].shape[1])
        return config

    monkeypatch.setattr(comfy.model_detection, "detect_unet_config", detect)
    return comfy


def counted_flops(patcher, io, **extra):
    """FLOPs of one call of the diffusion model, as torch's counter sees them."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = patcher.model
    t = model.model_sampling.timestep(io["in.sigma"])
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model.diffusion_model(io["in.x"], t, io["in.context"], **extra)
    return counter.get_total_flops()


def predicted_flops(tmp_path, model_file, workload):
    """The FLOPs of every layer of mgc's plan for the model at `workload`."""
    import mgc

    workflow = tmp_path / "workflow.toml"
    workflow.write_text(
        '[[device]]\nname = "cpu"\nmemory = "4gb"\n'
        f'[[model]]\nname = "model"\nfile = "{model_file}"\ncompute = "cpu"\n'
        f"[workload]\n{workload}\n"
    )
    plan = mgc.compile(workflow)
    return sum(layer["flops"] for layer in plan["models"][0]["layers"])


def io_of(name):
    from safetensors.torch import load_file

    return load_file(os.path.join(TINY, "io", f"{name}_io.safetensors"))


def assert_close(predicted, counted):
    assert counted > 0
    ratio = predicted / counted
    assert 1.0 <= ratio <= 1.0 + TOLERANCE, f"mgc predicts {predicted:.4g} FLOPs, torch counts {counted:.4g} ({ratio:.3f}x)"


def test_tiny_flux(comfy, tmp_path):
    import comfy.sd

    model_file = os.path.join(TINY, "tiny_flux.safetensors")
    io = io_of("tiny_flux")
    counted = counted_flops(comfy.sd.load_diffusion_model(model_file), io, y=io["in.y"], guidance=io["in.guidance"])
    # x is a 16×16 latent (128×128 pixels); the context is 8 tokens; one pass (cfg 1).
    predicted = predicted_flops(tmp_path, model_file, "resolution = [128, 128]\ntext_tokens = 8\ncfg = 1")
    assert_close(predicted, counted)


def test_tiny_wan(comfy, tmp_path):
    import comfy.sd

    model_file = os.path.join(TINY, "tiny_wan21.safetensors")
    io = io_of("tiny_wan21")
    counted = counted_flops(comfy.sd.load_diffusion_model(model_file), io)
    # x is 2 latent frames (5 frames) of 16×16 (128×128 pixels); the context is 8 tokens.
    predicted = predicted_flops(tmp_path, model_file, "resolution = [128, 128]\nframes = 5\ntext_tokens = 8\ncfg = 1")
    assert_close(predicted, counted)
