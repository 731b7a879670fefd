"""The nodes for other packs inside a real ComfyUI, with those packs loaded by ComfyUI itself:

- MGC_WANVIDEO: a ComfyUI-WanVideoWrapper checkout. A tiny Wan 2.1 made with the wrapper's own
  model class (30 blocks, as the wrapper's loader expects of a small Wan, at width 96) and random
  weights is sampled by the wrapper's own sampler: loaded by WanVideoModelLoader (mgc) with a plan,
  with the plan compiled from WanVideoBlockSwap (mgc), by the wrapper's loader with its own block
  swap, and without it; the outputs are equal.
- MGC_FLORENCE2: a ComfyUI-Florence2 checkout. A tiny Florence2 (the pack's own model code, a small
  config, random weights, a character-level processor written here) captions an image loaded by
  the mgc loaders on a chosen device, with and without a plan, as the pack's own loader does.

Each is skipped, saying so, without its checkout (and all of them without MGC_COMFYUI).
MGC_COMFYUI_DEVICE (`cpu` by default, or `cuda:0`) is the compute device.
"""

import asyncio
import importlib
import json
import os
import sys

import pytest
import torch

from comfyui.tests.test_comfyui import COMFYUI, DEVICE, _comfy

WANVIDEO = os.environ.get("MGC_WANVIDEO")
FLORENCE2 = os.environ.get("MGC_FLORENCE2")

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI, "comfy")),
    reason="set MGC_COMFYUI to a ComfyUI checkout to run the nodes inside ComfyUI",
)
needs_wanvideo = pytest.mark.skipif(
    not WANVIDEO or not os.path.isfile(os.path.join(WANVIDEO, "nodes.py")),
    reason="set MGC_WANVIDEO to a ComfyUI-WanVideoWrapper checkout to run its nodes with plans",
)
needs_florence2 = pytest.mark.skipif(
    not FLORENCE2 or not os.path.isfile(os.path.join(FLORENCE2, "nodes.py")),
    reason="set MGC_FLORENCE2 to a ComfyUI-Florence2 checkout to run its loaders on a chosen device",
)


def _load_pack(path, node):
    """ComfyUI's own custom-node loading; the pack's nodes registered, or a skip saying why not."""
    import nodes as comfy_nodes

    if node not in comfy_nodes.NODE_CLASS_MAPPINGS:
        asyncio.run(comfy_nodes.load_custom_node(path))
    if node not in comfy_nodes.NODE_CLASS_MAPPINGS:
        pytest.skip(f"ComfyUI could not load the pack at {path} (its Python dependencies?): see the log above")
    return comfy_nodes.NODE_CLASS_MAPPINGS


def _registered():
    """This pack as ComfyUI imports it (again, now that the other pack is loaded)."""
    import comfyui

    return importlib.reload(comfyui)


# --- WanVideoWrapper ---------------------------------------------------------------------------

BLOCKS = 30


def _tiny_wan(tmp_path, stock_nodes):
    """A tiny Wan 2.1 file made with the wrapper's own model class, seeded random weights."""
    from safetensors.torch import save_file

    wan_model = sys.modules[stock_nodes["WanVideoModelLoader"].__module__].WanModel
    model = wan_model(model_type="t2v", dim=96, ffn_dim=64, num_heads=12, num_layers=BLOCKS, text_len=512,
                      in_dim=16, out_dim=16, freq_dim=256, main_device=torch.device("cpu"),
                      offload_device=torch.device("cpu"))
    g = torch.Generator().manual_seed(16)
    weights = {k: torch.randn(v.shape, generator=g) * 0.05 for k, v in model.state_dict().items()}
    path = tmp_path / "tiny_wanvideo.safetensors"
    save_file(weights, str(path))
    return str(path)


def _sample(stock_nodes, patcher, compute=None):
    """Two steps of the wrapper's own sampler (through WanVideoSampler (mgc) when ``compute``)."""
    g = torch.Generator().manual_seed(3)
    text = {"prompt_embeds": [torch.randn(8, 4096, generator=g)], "negative_prompt_embeds": [torch.randn(8, 4096, generator=g)]}
    (image,) = stock_nodes["WanVideoEmptyEmbeds"]().process(num_frames=5, width=64, height=64)
    inputs = dict(model=patcher, text_embeds=text, image_embeds=image, shift=5.0, steps=2, cfg=2.0, seed=7,
                  scheduler="unipc", riflex_freq_index=0, force_offload=True)
    if compute is None:
        (out,) = stock_nodes["WanVideoSampler"]().process(**inputs)
    else:
        from comfyui import wanvideo

        (out,) = wanvideo._device_node("WanVideoSampler")().run(compute_device=compute, **inputs)
    return out["samples"]


def _attention_in_the_query_dtype(stock_nodes, monkeypatch):
    """The wrapper computes attention in bf16 and counts on autocast at bf16 or fp16 to bring the
    result back to the weights' dtype; the fp32 tiny model runs without autocast (the CPU's and,
    at fp32, CUDA's are off), so its attention result is cast back here, for every run alike."""
    model_module = sys.modules[sys.modules[stock_nodes["WanVideoModelLoader"].__module__].WanModel.__module__]
    attention = model_module.attention

    def in_query_dtype(q, *args, **kwargs):
        return attention(q, *args, **kwargs).to(q.dtype)

    monkeypatch.setattr(model_module, "attention", in_query_dtype)


def _stock_loader(stock_nodes, name, **extra):
    (patcher,) = stock_nodes["WanVideoModelLoader"]().loadmodel(
        model=name, base_precision="fp32", load_device="offload_device", quantization="disabled", **extra)
    return patcher


def _wan(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import folder_paths

    stock_nodes = _load_pack(WANVIDEO, "WanVideoModelLoader")
    path = _tiny_wan(tmp_path, stock_nodes)
    _attention_in_the_query_dtype(stock_nodes, monkeypatch)
    for getter in ("get_full_path", "get_full_path_or_raise"):
        monkeypatch.setattr(folder_paths, getter, lambda kind, name: path)
    return stock_nodes, path


@needs_wanvideo
def test_wanvideo_loader_streams_by_a_plan_and_samples_as_the_wrapper(tmp_path, monkeypatch, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="mgc")
    stock_nodes, path = _wan(tmp_path, monkeypatch)
    pack = _registered()
    assert {"WanVideoModelLoader (mgc)", "WanVideoBlockSwap (mgc)", "WanVideoSampler (mgc)",
            "WanVideoTextEncode (mgc)", "WanVideoDecode (mgc)", "WanVideoVAELoader (mgc)"} <= set(pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    from comfyui import core, wanvideo

    # The loader's inputs: the wrapper's, DisTorch's allocation inputs and the optional plan.
    required = wanvideo.WanVideoModelLoaderMGC.INPUT_TYPES()["required"]
    assert {"model", "base_precision", "quantization", "load_device", "compute_device", "virtual_vram_gb",
            "donor_device", "expert_mode_allocations"} <= set(required)
    assert "compute_device" in pack.NODE_CLASS_MAPPINGS["WanVideoSamplerMGC"].INPUT_TYPES()["required"]

    expected = _sample(stock_nodes, _stock_loader(stock_nodes, "tiny"))
    swap = {"blocks_to_swap": 10, "offload_img_emb": False, "offload_txt_emb": False}
    swapped = _sample(stock_nodes, _stock_loader(stock_nodes, "tiny", block_swap_args=swap))
    assert torch.equal(swapped, expected), "the wrapper's block swap changes nothing in its output"

    # DisTorch's allocation inputs: 40% resident on the compute device, the rest streamed.
    allocation = f"{DEVICE},40%;{'disk' if DEVICE == 'cpu' else 'cpu'},*"
    loader = wanvideo.WanVideoModelLoaderMGC()
    (patcher,) = loader.loadmodel(model="tiny", base_precision="fp32", load_device="offload_device",
                                  quantization="disabled", compute_device=DEVICE, expert_mode_allocations=allocation)
    applied = patcher.mgc_plan
    entry = applied.model
    streamed = [layer for layer in entry["layers"] if layer["streamed"]]
    assert streamed and len(streamed) < len(entry["layers"])
    transformer = patcher.model.diffusion_model
    homes = {t["name"]: str(core.torch_device(layer["home"])) for layer in entry["layers"] for t in layer["tensors"]}
    assert core.placement(transformer, entry) == homes
    got = _sample(stock_nodes, patcher, compute=DEVICE)
    assert torch.equal(got, expected), (got - expected).abs().max()
    # Two steps, cond and uncond: four forwards, each copying every streamed transfer once.
    transfers = [t for t in applied.plan["transfers"] if applied.plan["models"][t["model"]] is entry]
    assert applied.stats.copies == 4 * len(transfers) > 0
    steps = [r.getMessage() for r in caplog.records if r.name == "mgc" and r.getMessage().startswith("mgc: `")]
    assert [line.split(":", 2)[1] for line in steps] == [f" `{entry['name']}` step {n}" for n in (1, 2, 3, 4)], steps
    # The sampler left the weights where the plan put them.
    assert core.placement(transformer, entry) == homes


@needs_wanvideo
def test_wanvideo_block_swap_compiles_into_a_plan(tmp_path, monkeypatch):
    stock_nodes, path = _wan(tmp_path, monkeypatch)
    from comfyui import core, wanvideo

    swap_device = "disk" if DEVICE == "cpu" else "cpu"
    (args,) = wanvideo.WanVideoBlockSwapMGC().setargs(blocks_to_swap=10, offload_img_emb=False, offload_txt_emb=False,
                                                      swap_device=swap_device, prefetch_blocks=1)
    inputs = wanvideo.WanVideoBlockSwapMGC.INPUT_TYPES()
    assert {"blocks_to_swap", "offload_img_emb", "offload_txt_emb", "swap_device"} <= set(inputs["required"])
    # The wrapper's own loader takes these arguments as its block swap.
    expected = _sample(stock_nodes, _stock_loader(stock_nodes, "tiny", block_swap_args=args))

    (patcher,) = wanvideo.WanVideoModelLoaderMGC().loadmodel(
        model="tiny", base_precision="fp32", load_device="offload_device", quantization="disabled",
        compute_device=DEVICE, block_swap_args=args)
    entry = patcher.mgc_plan.model
    streamed = [layer["name"] for layer in entry["layers"] if layer["streamed"]]
    assert len(streamed) == 10 and all(name.startswith("blocks.") for name in streamed), streamed
    assert {layer["home"] for layer in entry["layers"] if layer["streamed"]} == {swap_device}
    assert entry["prefetch"] == 1
    assert patcher.model["block_swap_args"] is None, "the plan, not the wrapper's block swap, moves the blocks"
    got = _sample(stock_nodes, patcher, compute=DEVICE)
    assert torch.equal(got, expected), (got - expected).abs().max()
    # The node shows the plan's section for this model and its picture.
    import folder_paths
    import mgc

    from comfyui import ui

    monkeypatch.setattr(folder_paths, "get_temp_directory", lambda: str(tmp_path / "temp"))
    shown = wanvideo.WanVideoModelLoaderMGC().load_and_show(
        model="tiny", base_precision="fp32", load_device="offload_device", quantization="disabled",
        compute_device=DEVICE, block_swap_args=args)
    plan = shown["result"][0].mgc_plan.plan
    assert shown["ui"]["text"] == (ui.only_models(mgc.explain(plan)["table"], [entry["name"]]),)
    (image,) = shown["ui"]["images"]
    assert (tmp_path / "temp" / image["filename"]).read_bytes().startswith(b"\x89PNG")

    # The wrapper's own block swap arguments with a plan: an error naming what to drop.
    plain_args = {"blocks_to_swap": 10, "offload_img_emb": False, "offload_txt_emb": False}
    with pytest.raises(core.PlanError, match="WanVideoBlockSwap \\(mgc\\) instead"):
        wanvideo.WanVideoModelLoaderMGC().loadmodel(
            model="tiny", base_precision="fp32", load_device="offload_device", quantization="disabled",
            compute_device=DEVICE, block_swap_args=plain_args)
    with pytest.raises(core.PlanError, match="disconnect `block_swap_args`"):
        wanvideo.WanVideoModelLoaderMGC().loadmodel(
            model="tiny", base_precision="fp32", load_device="offload_device", quantization="disabled",
            compute_device=DEVICE, block_swap_args=args, plan=patcher.mgc_plan.plan)


@needs_wanvideo
def test_a_pack_is_found_by_its_nodes_before_comfyui_loads_it(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import folder_paths
    import nodes as comfy_nodes

    from comfyui import packs, wanvideo

    # Not registered yet (ComfyUI loads custom nodes one by one), in a folder of another name.
    monkeypatch.setattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
    custom = tmp_path / "custom_nodes"
    custom.mkdir()
    (custom / "renamed-video-pack").symlink_to(os.path.abspath(WANVIDEO))
    monkeypatch.setattr(folder_paths, "get_folder_paths", lambda kind: [str(custom)] if kind == "custom_nodes" else [])
    assert wanvideo.installed()
    present = packs.defined(wanvideo.DEVICE_NODES, wanvideo.LOADER)
    assert {"WanVideoSampler", "WanVideoDecode", "LoadWanVideoT5TextEncoder"} <= present
    assert not packs.installed("Florence2ModelLoader")
    (custom / "renamed-video-pack").unlink()
    assert not wanvideo.installed()


# --- Florence2 ---------------------------------------------------------------------------------

FLORENCE2_NAME = "tiny-florence2"


def _florence2(tmp_path, monkeypatch):
    """ComfyUI-Florence2 loaded by ComfyUI, and a tiny Florence2 in a models/LLM folder."""
    _comfy(monkeypatch)
    import folder_paths

    stock_nodes = _load_pack(FLORENCE2, "Florence2ModelLoader")
    package = stock_nodes["Florence2ModelLoader"].__module__.rsplit(".", 1)[0]
    try:
        modeling = importlib.import_module(package + ".modeling_florence2")
    except ImportError as e:
        pytest.skip(f"ComfyUI-Florence2's model code does not import with this transformers ({e}): "
                    "install a transformers it supports (4.x)")
    configuration = importlib.import_module(package + ".configuration_florence2")
    llm = tmp_path / "LLM"
    _tiny_florence2(llm / FLORENCE2_NAME, modeling, configuration)
    folder_paths.add_model_folder_path("LLM", str(llm), is_default=True)
    stock_nodes["Florence2ModelLoader"].INPUT_TYPES()  # the loader lists the models it finds
    return stock_nodes


def _tiny_florence2(folder, modeling, configuration):
    """A small config of Florence2 (DaViT vision tower, BART language model), seeded random
    weights saved with the pack's own model class, and the tiny processor beside them."""
    import shutil

    from comfyui.tests import tiny_florence2_processor as processor

    vision = dict(model_type="davit", drop_path_rate=0.0, patch_size=[7, 3], patch_stride=[4, 2],
                  patch_padding=[3, 1], patch_prenorm=[False, True], dim_embed=[32, 64], num_heads=[2, 4],
                  num_groups=[2, 4], depths=[1, 1], window_size=4, projection_dim=64,
                  visual_temporal_embedding={"type": "COSINE", "max_temporal_embeddings": 100},
                  image_pos_embed={"type": "learned_abs_2d", "max_pos_embeddings": 50},
                  image_feature_source=["spatial_avg_pool", "temporal_avg_pool"])
    text = dict(vocab_size=processor.VOCAB_SIZE, d_model=64, encoder_layers=2, decoder_layers=2,
                encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
                max_position_embeddings=128, tie_word_embeddings=False)
    config = configuration.Florence2Config(vision_config=vision, text_config=text, vocab_size=processor.VOCAB_SIZE,
                                           projection_dim=64, tie_word_embeddings=False)
    torch.manual_seed(21)
    model = modeling.Florence2ForConditionalGeneration(config)
    model.save_pretrained(str(folder))
    # The token embeddings of the encoder and the decoder, saved once as `shared` by the model,
    # written under their own names too: with untied word embeddings (so that a random model
    # does not just repeat its start token) they would otherwise be drawn anew at each load.
    from safetensors.torch import load_file, save_file

    weights = load_file(str(folder / "model.safetensors"))
    for part in ("encoder", "decoder"):
        weights[f"language_model.model.{part}.embed_tokens.weight"] = weights["language_model.model.shared.weight"].clone()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    # As Florence2's own config.json has it (a plain config's `model_type` is not saved).
    saved = json.loads((folder / "config.json").read_text())
    saved["vision_config"]["model_type"] = "davit"
    (folder / "config.json").write_text(json.dumps(saved))
    shutil.copy(processor.__file__, folder / "processing_tiny_florence2.py")
    (folder / "processor_config.json").write_text(json.dumps(
        {"processor_class": "TinyFlorence2Processor",
         "auto_map": {"AutoProcessor": "processing_tiny_florence2.TinyFlorence2Processor"}}))


def _caption(stock_nodes, florence, run=None):
    """A caption of a seeded random image by Florence2Run (or ``run``)."""
    g = torch.Generator().manual_seed(5)
    image = torch.rand(1, 48, 48, 3, generator=g)
    run = run or stock_nodes["Florence2Run"]()
    out = run.encode(image=image, text_input="", florence2_model=florence, task="caption", fill_mask=False,
                     keep_model_loaded=False, max_new_tokens=6, num_beams=1, do_sample=False, seed=1)
    return out[2]


@needs_florence2
def test_florence2_loaders_run_on_the_chosen_device_as_the_pack_does(tmp_path, monkeypatch):
    stock_nodes = _florence2(tmp_path, monkeypatch)
    pack = _registered()
    assert {"Florence2ModelLoader (mgc)", "DownloadAndLoadFlorence2Model (mgc)", "Florence2Run (mgc)"} <= set(
        pack.NODE_DISPLAY_NAME_MAPPINGS.values())
    from comfyui import florence2

    for loader in (florence2.Florence2ModelLoaderMGC, florence2.DownloadAndLoadFlorence2ModelMGC):
        inputs = loader.INPUT_TYPES()
        assert {"model", "precision", "attention", "device"} <= set(inputs["required"])
        assert "plan" in inputs["optional"]

    (stock,) = stock_nodes["Florence2ModelLoader"]().loadmodel(model=FLORENCE2_NAME, precision="fp32", attention="sdpa")
    expected = _caption(stock_nodes, stock)
    assert isinstance(expected, str) and expected

    (florence,) = florence2.Florence2ModelLoaderMGC().loadmodel(
        model=FLORENCE2_NAME, precision="fp32", attention="sdpa", device=DEVICE)
    assert florence["mgc_device"] == DEVICE
    seen = []
    # Where the language model's weights and inputs are at each decoding step.
    florence["model"].language_model.register_forward_pre_hook(
        lambda m, a, k: seen.extend([next(m.parameters()).device, k["encoder_outputs"][0].device]), with_kwargs=True)
    got = _caption(stock_nodes, florence, florence2.Florence2RunMGC())
    assert got == expected
    assert seen and all(d == torch.device(DEVICE) for d in seen), seen


@needs_florence2
def test_florence2_loader_places_the_weights_by_a_plan(tmp_path, monkeypatch):
    stock_nodes = _florence2(tmp_path, monkeypatch)
    from comfyui import core, florence2
    from comfyui.allocation import plan_for_files

    (stock,) = stock_nodes["Florence2ModelLoader"]().loadmodel(model=FLORENCE2_NAME, precision="fp32", attention="sdpa")
    expected = _caption(stock_nodes, stock)

    weights = tmp_path / "LLM" / FLORENCE2_NAME / "model.safetensors"
    other = "disk" if DEVICE == "cpu" else "cpu"
    plan = plan_for_files([("florence2", str(weights), "caption")], DEVICE, expert_mode_allocations=f"{DEVICE},10%;{other},*")
    (florence,) = florence2.Florence2ModelLoaderMGC().loadmodel(
        model=FLORENCE2_NAME, precision="fp32", attention="sdpa", device=DEVICE, plan=plan)
    applied = florence["mgc_plan"]
    entry = applied.model
    assert any(layer["streamed"] for layer in entry["layers"])
    homes = {t["name"]: str(core.torch_device(layer["home"])) for layer in entry["layers"] for t in layer["tensors"]}
    assert core.placement(florence["model"], entry) == homes
    got = _caption(stock_nodes, florence, florence2.Florence2RunMGC())
    assert got == expected
    assert applied.stats.copies == len([t for t in plan["transfers"] if plan["models"][t["model"]] is entry])
    # Florence2Run moved the model to the device and back: every weight is at its plan home again.
    assert core.placement(florence["model"], entry) == homes

    with pytest.raises(core.PlanError, match="set `device` to"):
        wrong = "cuda:0" if DEVICE == "cpu" else "cpu"
        florence2.Florence2ModelLoaderMGC().loadmodel(
            model=FLORENCE2_NAME, precision="fp32", attention="sdpa", device=wrong, plan=plan)
