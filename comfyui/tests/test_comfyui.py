"""The nodes inside a real ComfyUI: runs when MGC_COMFYUI names a ComfyUI checkout whose Python
deps are importable (skipped otherwise). Loads a tiny random-weight Wan 2.1 with the nodes,
part of it streamed by an mgc plan, and checks that ComfyUI's own forward pass gives what it gives
without the plan, and that the plan's placement survives ComfyUI's own model loading.

- MGC_COMFYUI_DEVICE: `cpu` (default) or `cuda:0`: where the plan computes (ComfyUI runs with
  `--cpu` for `cpu`). On CUDA, streamed layers come from pinned RAM on the side stream.
- MGC_TINY: the tiny fixtures (with their recorded outputs); without them the model is made from
  its inventory with random weights by `mgc synth-model`.
- MGC_COMFYUI_GGUF: a ComfyUI-GGUF checkout, for the GGUF loader.
"""

import json
import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMFYUI = os.environ.get("MGC_COMFYUI")
GGUF_NODES = os.environ.get("MGC_COMFYUI_GGUF")
DEVICE = os.environ.get("MGC_COMFYUI_DEVICE", "cpu")
TINY = os.environ.get("MGC_TINY", os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "tiny"))
# The `mgc` command of the `mgc` package, run with this Python.
MGC = [sys.executable, "-m", "mgc"]

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI, "comfy")),
    reason="set MGC_COMFYUI to a ComfyUI checkout to run the nodes inside ComfyUI",
)


def _comfy(monkeypatch):
    sys.path.insert(0, ROOT)
    sys.path.insert(0, COMFYUI)
    monkeypatch.setattr(sys, "argv", ["main.py", "--cpu"] if DEVICE == "cpu" else ["main.py"])
    import comfy.options

    comfy.options.enable_args_parsing()


def _tiny_wan(tmp_path):
    """The tiny Wan 2.1 and, when it is the recorded fixture, its recorded inputs and output."""
    fixture = os.path.join(TINY, "tiny_wan21.safetensors")
    if os.path.isfile(fixture):
        from safetensors.torch import load_file

        return fixture, load_file(os.path.join(TINY, "io", "tiny_wan21_io.safetensors"))
    made = tmp_path / "tiny_wan21.safetensors"
    inventory = os.path.join(ROOT, "tests", "fixtures", "models", "tiny_wan21.json")
    out = subprocess.run([*MGC, "synth-model", inventory, "-o", str(made), "--random"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    g = torch.Generator().manual_seed(1000)
    io = {"in.x": torch.randn(1, 16, 2, 16, 16, generator=g), "in.sigma": torch.tensor([0.5]),
          "in.context": torch.randn(1, 8, 4096, generator=g)}
    return str(made), io


def _plan(tmp_path, model_file, allocation, name="model", batch_below="64kb"):
    gpu = '[[device]]\nname = "cuda:0"\nmemory = "4gb"\n' if DEVICE != "cpu" else ""
    workflow = tmp_path / f"{name}.toml"
    workflow.write_text(
        '[[device]]\nname = "cpu"\nmemory = "4gb"\n' + gpu +
        f'[[model]]\nname = "{name}"\nfile = "{model_file}"\ncompute = "{DEVICE}"\nallocation = "{allocation}"\n'
        f'[schedule]\nprefetch = 1\nbatch_below = "{batch_below}"\n'
    )
    import mgc

    (tmp_path / f"{name}.plan.json").write_text(json.dumps(mgc.compile(workflow), separators=(",", ":")))
    from comfyui import nodes

    return nodes.LoadPlan().load(plan_path=str(tmp_path / f"{name}.plan.json"))[0]


def _allocation(cpu_part):
    """Part of the model resident where it computes, the rest streamed to it."""
    return cpu_part if DEVICE == "cpu" else f"{DEVICE},40%;cpu,*"


def _forward(patcher, io):
    inputs = [io["in.x"].to(DEVICE), io["in.sigma"].to(DEVICE)]
    with torch.no_grad():
        out = patcher.model.apply_model(*inputs, c_crossattn=io["in.context"].to(DEVICE))
    return out.cpu()


def _forward_with_lora(patcher, lora, io):
    """ComfyUI's own LoRA loading onto `patcher`, its loading for sampling, and a forward pass."""
    import comfy.model_management
    import comfy.sd

    patched, _ = comfy.sd.load_lora_for_models(patcher, None, lora, 1.0, 0.0)
    comfy.model_management.load_models_gpu([patched])
    return _forward(patched, io)


def _model_folder(monkeypatch, kind, path):
    """Puts ``path``'s folder among ComfyUI's folders of ``kind`` (as `extra_model_paths.yaml` would)."""
    import folder_paths

    monkeypatch.setitem(folder_paths.folder_names_and_paths, kind, (
        [os.path.dirname(str(path))] + list(folder_paths.folder_names_and_paths[kind][0]),
        folder_paths.folder_names_and_paths[kind][1],
    ))


def _with_plan(plan, **inputs):
    """A loader's inputs when a plan decides (the allocation inputs then do not matter)."""
    return {"compute_device": "cpu", "virtual_vram_gb": 0.0, "donor_device": "cpu", "expert_mode_allocations": "",
            "plan": plan, **inputs}


def _homes(entry):
    return {t["name"]: str(torch.device("cpu" if layer["home"] == "disk" else layer["home"]))
            for layer in entry["layers"] for t in layer["tensors"]}


def test_unet_loader_node_streams_by_the_plan_and_keeps_comfyuis_output(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management
    import comfy.sd

    from comfyui import core, loaders

    model_file, io = _tiny_wan(tmp_path)
    plan = _plan(tmp_path, model_file, _allocation("cpu,40%;disk,*"), "wan")
    plain = comfy.sd.load_diffusion_model(model_file)
    comfy.model_management.load_models_gpu([plain])
    expected = _forward(plain, io)
    del plain
    comfy.model_management.unload_all_models()

    _model_folder(monkeypatch, "diffusion_models", model_file)
    (patcher,) = loaders.UNETLoaderMGC().load(**_with_plan(plan, unet_name=os.path.basename(model_file),
                                                            weight_dtype="default", model_name="wan"))
    entry = plan["models"][0]
    assert any(layer["streamed"] for layer in entry["layers"]), "the plan streams part of the model"
    module = patcher.model.diffusion_model
    assert core.placement(module, entry) == _homes(entry)
    got = _forward(patcher, io)
    assert torch.equal(got, expected), (got - expected).abs().max()
    if "out.apply_model" in io and DEVICE == "cpu":
        assert torch.allclose(got, io["out.apply_model"], atol=1e-4), (got - io["out.apply_model"]).abs().max()
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert patcher.mgc_plan.stats.copies == len(transfers) > 0, "every streamed layer was copied in, once"

    # ComfyUI's own loading for sampling: afterwards every weight is its plan home again, the very
    # tensor the plan placed (not a copy ComfyUI made), and the output is unchanged.
    homes = {id(h): h.data_ptr() for (_, _, h) in patcher.mgc_plan._homes}
    comfy.model_management.load_models_gpu([patcher])
    assert patcher.mgc_plan.stats.rehomed >= 1, "the plan was put back after ComfyUI's load"
    for owner, attribute, home in patcher.mgc_plan._homes:
        assert getattr(owner, attribute).data_ptr() == homes[id(home)]
    assert core.placement(module, entry) == _homes(entry)
    assert torch.equal(_forward(patcher, io), got)
    if DEVICE != "cpu":
        assert patcher.mgc_plan.stats.prefetched > 0, "streamed layers were copied ahead on the side stream"


@pytest.mark.skipif(not GGUF_NODES or not os.path.isfile(os.path.join(GGUF_NODES or "", "nodes.py")),
                    reason="set MGC_COMFYUI_GGUF to a ComfyUI-GGUF checkout to run its loader with a plan")
def test_gguf_unet_loader_node_streams_quantized_weights(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import asyncio
    import importlib

    import comfy.model_management
    import nodes as comfy_nodes

    from comfyui import core, loaders, nodes
    from comfyui.tests.tiny_gguf import write_gguf

    # ComfyUI's own custom-node loading registers ComfyUI-GGUF's nodes.
    asyncio.run(comfy_nodes.load_custom_node(GGUF_NODES))
    assert "UnetLoaderGGUF" in comfy_nodes.NODE_CLASS_MAPPINGS
    # With ComfyUI-GGUF there, the pack registers its GGUF loaders when ComfyUI imports it.
    loaders = importlib.reload(loaders)
    assert nodes.gguf_installed()
    gguf = ["UnetLoaderGGUF", "UnetLoaderGGUFAdvanced", "CLIPLoaderGGUF", "DualCLIPLoaderGGUF", "TripleCLIPLoaderGGUF",
            "QuadrupleCLIPLoaderGGUF"]
    assert {f"{n} (mgc)" for n in gguf} <= set(loaders.LOADER_DISPLAY_NAME_MAPPINGS.values())
    # Their inputs are ComfyUI-GGUF's, DisTorch2's, and the plan.
    for name in gguf:
        inputs = loaders.LOADER_CLASS_MAPPINGS[f"{name}MGC"].INPUT_TYPES()
        stock = comfy_nodes.NODE_CLASS_MAPPINGS[name].INPUT_TYPES()
        assert set(stock["required"]) | {"compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations"} \
            == set(inputs["required"]), name
        assert "plan" in inputs["optional"], name

    source, io = _tiny_wan(tmp_path)
    model_file = tmp_path / "tiny_wan21_q8.gguf"
    write_gguf(source, model_file, "wan")
    plan = _plan(tmp_path, model_file, _allocation("cpu,40%;disk,*"), "wan", batch_below="4mb")
    _model_folder(monkeypatch, "diffusion_models", model_file)

    plain = comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(model_file.name)[0]
    comfy.model_management.load_models_gpu([plain])
    expected = _forward(plain, io)
    del plain
    comfy.model_management.unload_all_models()

    (patcher,) = loaders.UnetLoaderGGUFMGC().load(**_with_plan(plan, unet_name=model_file.name))
    entry = plan["models"][0]
    streamed = [layer for layer in entry["layers"] if layer["streamed"]]
    assert streamed and any(not layer["streamed"] for layer in entry["layers"])
    # Quantized weights stay quantized where they live: the raw Q8_0 blocks, with their type.
    module = patcher.model.diffusion_model
    weight = module.get_submodule(streamed[-1]["name"] + ".ffn.0").weight
    assert getattr(weight, "tensor_type", None) is not None and weight.dtype == torch.uint8
    got = _forward(patcher, io)
    assert torch.equal(got, expected), (got - expected).abs().max()
    if "out.apply_model" in io and DEVICE == "cpu":
        # Q8_0 is close to the recorded full-precision output.
        assert torch.allclose(got, io["out.apply_model"], atol=0.05), (got - io["out.apply_model"]).abs().max()
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert patcher.mgc_plan.stats.copies == len(transfers) > 0
    # Small layers went through the staging buffer as raw bytes and came out as GGUF weights.
    assert any(t["batched"] for t in transfers)
    assert patcher.mgc_plan.stats.batched_copies == sum(t["batched"] for t in transfers)

    comfy.model_management.load_models_gpu([patcher])
    core.check_placement(module, entry)
    assert torch.equal(_forward(patcher, io), expected)

    # A LoRA on the quantized model: ComfyUI-GGUF applies it as it dequantizes, with the plan as
    # without it (the pack leaves quantized weights' patches to it).
    lora = _lora_for(entry)
    plain = comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(model_file.name)[0]
    expected_lora = _forward_with_lora(plain, lora, io)
    assert not torch.equal(expected_lora, expected), "the LoRA changes the output"
    del plain
    comfy.model_management.unload_all_models()
    got_lora = _forward_with_lora(patcher, lora, io)
    assert torch.equal(got_lora, expected_lora), (got_lora - expected_lora).abs().max()
    core.check_placement(module, entry)


def test_clip_loader_node_finds_the_plans_keys_inside_comfyuis_text_encoder(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    from comfyui import core, loaders

    model_file = tmp_path / "clip_l.safetensors"
    inventory = os.path.join(ROOT, "tests", "fixtures", "models", "clip_l.json")
    made = subprocess.run([*MGC, "synth-model", inventory, "-o", str(model_file)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    plan = _plan(tmp_path, model_file, _allocation("cpu,30%;disk,*"), "clip")
    _model_folder(monkeypatch, "text_encoders", model_file)
    (clip,) = loaders.CLIPLoaderMGC().load(**_with_plan(plan, clip_name="clip_l.safetensors", type="stable_diffusion"))
    entry = plan["models"][0]
    module = clip.patcher.model
    prefix = core.key_prefix(module, entry)
    assert prefix.endswith("transformer."), prefix  # ComfyUI nests CLIP-L's keys
    assert core.placement(module, entry, prefix) == _homes(entry)
    tokens = clip.tokenize("a photo of a cat")
    with torch.no_grad():
        cond = clip.encode_from_tokens(tokens)
    assert cond.shape[-1] == 768
    assert clip.mgc_plan.stats.copies > 0


def _lora_for(entry):
    """A rank-4 LoRA on two projections of a streamed and a resident block of the plan."""
    blocks = [layer for layer in entry["layers"] if layer["name"].startswith("blocks.")]
    chosen = [next(b for b in blocks if b["streamed"]), next(b for b in blocks if not b["streamed"])]
    shapes = {t["name"]: t["shape"] for layer in chosen for t in layer["tensors"]}
    g = torch.Generator().manual_seed(7)
    lora = {}
    for block in chosen:
        for proj in ("self_attn.q", "ffn.0"):
            out_features, in_features = shapes[f"{block['name']}.{proj}.weight"]
            lora[f"diffusion_model.{block['name']}.{proj}.lora_up.weight"] = torch.randn(out_features, 4, generator=g) * 0.1
            lora[f"diffusion_model.{block['name']}.{proj}.lora_down.weight"] = torch.randn(4, in_features, generator=g) * 0.1
    return lora


def test_loras_apply_to_streamed_and_resident_layers_as_comfyui_applies_them(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management
    import comfy.sd

    from comfyui import core, loaders

    model_file, io = _tiny_wan(tmp_path)
    plan = _plan(tmp_path, model_file, _allocation("cpu,40%;disk,*"), "wan")
    entry = plan["models"][0]
    lora = _lora_for(entry)

    plain = comfy.sd.load_diffusion_model(model_file)
    comfy.model_management.load_models_gpu([plain])
    without_lora = _forward(plain, io)
    expected = _forward_with_lora(plain, lora, io)
    assert not torch.equal(expected, without_lora), "the LoRA changes the output"
    del plain
    comfy.model_management.unload_all_models()

    _model_folder(monkeypatch, "diffusion_models", model_file)
    (patcher,) = loaders.UNETLoaderMGC().load(**_with_plan(plan, unet_name=os.path.basename(model_file),
                                                            weight_dtype="default", model_name="wan"))
    module = patcher.model.diffusion_model
    stored = {k: v.detach().clone() for k, v in module.state_dict().items()}
    got = _forward_with_lora(patcher, lora, io)
    assert torch.equal(got, expected), (got - expected).abs().max()
    core.check_placement(module, entry)
    # The plan's weights are the unpatched ones; the LoRA is applied where each layer computes.
    for k, v in module.state_dict().items():
        assert torch.equal(v.cpu(), stored[k].cpu()), k
    assert len(patcher.mgc_plan.patches) == 4
