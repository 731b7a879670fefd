"""The DisTorch-shaped loaders inside a real ComfyUI (runs when MGC_COMFYUI names a checkout; see
test_comfyui.py): every loader ComfyUI-MultiGPU's DisTorch2 wraps has an mgc node with the stock
inputs and DisTorch2's; a loader compiles its plan from its inputs and gives the stock loader's
output with part of the model on another tier (`disk`: views of the model file); bad inputs,
a plan for another file or another machine are refused before any weight is read; a device with
less free memory than planned gets a recompiled plan; *Load mgc plan* reads `models/mgc_plans`.

The loaders of models ComfyUI builds from fixed configs (CLIP-G, CLIP ViT-L, a Flux ControlNet's
width) load files of the real size, written with random weights (`fixture_models.py`, `mgc
synth-model`): those tests are marked `slow` (about two minutes together on two cores). The triple
and quadruple CLIP loaders are not run: ComfyUI builds both with T5-XXL (4.9B parameters: 9.8 GB
in F16, twice that in the F32 it computes in on the CPU), the quadruple one with Llama 3.1 8B too.
"""

import asyncio
import importlib
import json
import logging
import os
import shutil
import subprocess

import pytest
import torch

from comfyui.tests.test_comfyui import COMFYUI, DEVICE, GGUF_NODES, MGC, ROOT, TINY, _comfy, _forward, _homes, _model_folder, _plan, _tiny_wan

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI or "", "comfy")),
    reason="set MGC_COMFYUI to a ComfyUI checkout to run the nodes inside ComfyUI",
)

ALLOCATION_INPUTS = {"compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations"}
# The stock loaders ComfyUI-MultiGPU wraps with DisTorch2 (and with a plain device input).
STOCK = ["UNETLoader", "CheckpointLoaderSimple", "CLIPLoader", "DualCLIPLoader", "TripleCLIPLoader",
         "QuadrupleCLIPLoader", "VAELoader", "CLIPVisionLoader", "ControlNetLoader", "DiffControlNetLoader"]


def _inputs(compute=DEVICE, virtual_vram_gb=0.0, donor="cpu", expert="", **inputs):
    return {"compute_device": compute, "virtual_vram_gb": virtual_vram_gb, "donor_device": donor,
            "expert_mode_allocations": expert, **inputs}


def _reads(monkeypatch):
    """Counts the model files ComfyUI reads (`comfy.utils.load_torch_file`)."""
    import comfy.utils

    calls = []
    real = comfy.utils.load_torch_file

    def counted(*args, **kwargs):
        calls.append(args[0] if args else kwargs.get("ckpt"))
        return real(*args, **kwargs)

    monkeypatch.setattr(comfy.utils, "load_torch_file", counted)
    return calls


def _stock_unet(model_file):
    import comfy.model_management
    import nodes as comfy_nodes

    (plain,) = comfy_nodes.UNETLoader().load_unet(os.path.basename(model_file), "default")
    comfy.model_management.load_models_gpu([plain])
    return plain


def _f32(model_file, tmp_path):
    """The model in F32, the dtype ComfyUI computes in on the CPU: its loader then keeps the file's
    weights as they are, so those homed on `disk` can be views of the file."""
    from safetensors.torch import load_file, save_file

    path = tmp_path / "f32" / os.path.basename(model_file)
    path.parent.mkdir(exist_ok=True)
    save_file({k: v.float() for k, v in load_file(model_file).items()}, str(path))
    return str(path)


def test_every_distorch2_loader_has_an_mgc_node_with_the_stock_and_distorch_inputs(monkeypatch):
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    import comfyui
    from comfyui import loaders

    # ComfyUI's own loading of the extra nodes that define the triple and quadruple CLIP loaders.
    for extra in ("nodes_sd3.py", "nodes_hidream.py"):
        asyncio.run(comfy_nodes.load_custom_node(os.path.join(COMFYUI, "comfy_extras", extra), module_parent="comfy_extras"))
    for stock in STOCK:
        node = comfyui.NODE_CLASS_MAPPINGS[f"{stock}MGC"]
        assert comfyui.NODE_DISPLAY_NAME_MAPPINGS[f"{stock}MGC"] == f"{stock} (mgc)"
        inputs = node.INPUT_TYPES()
        stock_inputs = comfy_nodes.NODE_CLASS_MAPPINGS[stock].INPUT_TYPES()
        assert set(stock_inputs["required"]) | ALLOCATION_INPUTS == set(inputs["required"]), stock
        assert "plan" in inputs["optional"], stock
        device = comfyui.NODE_CLASS_MAPPINGS[f"{stock}DeviceMGC"].INPUT_TYPES()
        assert set(stock_inputs["required"]) | {"device"} == set(device["required"]), stock
        assert comfyui.NODE_DISPLAY_NAME_MAPPINGS[f"{stock}DeviceMGC"] == f"{stock} on a device (mgc)"
        assert node.RETURN_TYPES == tuple(comfy_nodes.NODE_CLASS_MAPPINGS[stock].RETURN_TYPES), stock
    assert loaders.UNETLoaderMGC.INPUT_TYPES()["required"]["weight_dtype"] == \
        comfy_nodes.UNETLoader.INPUT_TYPES()["required"]["weight_dtype"]


def test_unet_loader_compiles_distorchs_virtual_vram_onto_disk_and_keeps_comfyuis_output(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management

    from comfyui import core, loaders

    model_file, io = _tiny_wan(tmp_path)
    model_file = _f32(model_file, tmp_path) if DEVICE == "cpu" else model_file
    _model_folder(monkeypatch, "diffusion_models", model_file)
    expected = _forward(_stock_unet(model_file), io)
    comfy.model_management.unload_all_models()

    # 60% of the model moved off the compute device onto `disk`, as DisTorch2's inputs say it.
    virtual = 0.6 * os.path.getsize(model_file) / (1 << 30)
    (patcher,) = loaders.UNETLoaderMGC().load(**_inputs(virtual_vram_gb=virtual, donor="disk",
                                                        unet_name=os.path.basename(model_file), weight_dtype="default"))
    entry = patcher.mgc_plan.model
    assert entry["allocation"].startswith(f"#{DEVICE};") and entry["allocation"].endswith(";disk")
    on_disk = [layer for layer in entry["layers"] if layer["home"] == "disk"]
    assert on_disk and all(layer["streamed"] for layer in on_disk)
    assert core.placement(patcher.model.diffusion_model, entry) == _homes(entry)
    # Weights homed on `disk` are views of the model file, read each step, no RAM of their own.
    assert patcher.mgc_plan.stats.mapped == sum(len(layer["tensors"]) for layer in on_disk)
    got = _forward(patcher, io)
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert patcher.mgc_plan.stats.copies > 0


def test_device_loader_puts_the_whole_model_on_its_device(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management

    from comfyui import loaders

    model_file, io = _tiny_wan(tmp_path)
    _model_folder(monkeypatch, "diffusion_models", model_file)
    expected = _forward(_stock_unet(model_file), io)
    comfy.model_management.unload_all_models()
    (patcher,) = loaders.UNETLoaderDeviceMGC().load(device=DEVICE, unet_name=os.path.basename(model_file), weight_dtype="default")
    entry = patcher.mgc_plan.model
    assert {layer["home"] for layer in entry["layers"]} == {DEVICE}
    assert not any(layer["streamed"] for layer in entry["layers"])
    assert torch.equal(_forward(patcher, io), expected)


def test_checkpoint_loader_plans_the_checkpoints_diffusion_model(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management
    import nodes as comfy_nodes
    from safetensors.torch import load_file, save_file

    from comfyui import core, loaders

    model_file, io = _tiny_wan(tmp_path)
    dtype = torch.float32 if DEVICE == "cpu" else torch.bfloat16
    checkpoint = tmp_path / "checkpoints" / "tiny_wan21_checkpoint.safetensors"
    checkpoint.parent.mkdir()
    save_file({"model.diffusion_model." + k: v.to(dtype) for k, v in load_file(model_file).items()}, str(checkpoint))
    _model_folder(monkeypatch, "checkpoints", checkpoint)
    plain = comfy_nodes.CheckpointLoaderSimple().load_checkpoint(checkpoint.name)[0]
    comfy.model_management.load_models_gpu([plain])
    expected = _forward(plain, io)
    del plain
    comfy.model_management.unload_all_models()

    virtual = 0.5 * os.path.getsize(checkpoint) / (1 << 30)
    model, _clip, _vae = loaders.CheckpointLoaderSimpleMGC().load(
        **_inputs(virtual_vram_gb=virtual, donor="disk", ckpt_name=checkpoint.name))
    entry = model.mgc_plan.model
    assert entry["prefix"] == "model.diffusion_model." and entry["role"] == "diffusion"
    assert any(layer["home"] == "disk" for layer in entry["layers"])
    assert core.placement(model.model.diffusion_model, entry) == _homes(entry)
    if DEVICE == "cpu":
        assert model.mgc_plan.stats.mapped > 0
    got = _forward(model, io)
    assert torch.equal(got, expected), (got - expected).abs().max()
    del model
    comfy.model_management.unload_all_models()

    # ComfyUI-MultiGPU's advanced checkpoint loader: the diffusion model by its `unet_…` inputs.
    inputs = loaders.CheckpointLoaderAdvancedMGC.INPUT_TYPES()
    assert {"unet_compute_device", "unet_virtual_vram_gb", "unet_donor_device", "clip_compute_device",
            "clip_virtual_vram_gb", "clip_donor_device", "vae_device"} <= set(inputs["required"])
    assert inputs["required"]["clip_virtual_vram_gb"][1]["default"] == 2.0
    model, _clip, _vae = loaders.CheckpointLoaderAdvancedMGC().load(
        checkpoint.name, DEVICE, 0.0, "cpu", "cpu", 2.0, "cpu", DEVICE, unet_expert_mode_allocations=f"{DEVICE},40%;disk,*")
    entry = model.mgc_plan.model
    assert entry["allocation"] == f"{DEVICE},40%;disk,*" and any(layer["home"] == "disk" for layer in entry["layers"])
    got = _forward(model, io)
    assert torch.equal(got, expected), (got - expected).abs().max()


def _synth(tmp_path, inventory, name):
    path = tmp_path / name
    out = subprocess.run([*MGC, "synth-model", os.path.join(ROOT, "tests", "fixtures", "models", inventory), "-o",
                          str(path), "--random"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return path


def test_vae_loader_with_an_expert_string_decodes_as_comfyuis_vae_loader(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    from comfyui import core, loaders

    vae_file = _synth(tmp_path, "wan_2.1_vae.json", "wan_2.1_vae.safetensors")
    _model_folder(monkeypatch, "vae", vae_file)
    latent = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(3))
    (plain,) = comfy_nodes.VAELoader().load_vae(vae_file.name)
    expected = plain.decode(latent)
    del plain

    expert = "cpu,50%;disk,*" if DEVICE == "cpu" else f"{DEVICE},50%;cpu,*"
    (vae,) = loaders.VAELoaderMGC().load(**_inputs(expert=expert, vae_name=vae_file.name))
    entry = vae.mgc_plan.model
    assert entry["role"] == "vae" and entry["allocation"] == expert
    assert any(layer["streamed"] for layer in entry["layers"])
    assert core.placement(vae.first_stage_model, entry) == _homes(entry)
    got = vae.decode(latent)
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert vae.mgc_plan.stats.copies > 0


def test_clip_loader_with_distorch_inputs_encodes_as_comfyuis_clip_loader(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    from comfyui import loaders

    clip_file = _synth(tmp_path, "clip_l.json", "clip_l.safetensors")
    _model_folder(monkeypatch, "text_encoders", clip_file)
    (plain,) = comfy_nodes.CLIPLoader().load_clip(clip_file.name, "stable_diffusion")
    tokens = plain.tokenize("a photo of a cat")
    expected = plain.encode_from_tokens(tokens)
    del plain

    virtual = 0.7 * os.path.getsize(clip_file) / (1 << 30)
    (clip,) = loaders.CLIPLoaderMGC().load(**_inputs(virtual_vram_gb=virtual, donor="disk", clip_name=clip_file.name,
                                                     type="stable_diffusion"))
    entry = clip.mgc_plan.model
    assert any(layer["home"] == "disk" for layer in entry["layers"])
    got = clip.encode_from_tokens(clip.tokenize("a photo of a cat"))
    assert torch.equal(got, expected), (got - expected).abs().max()
    assert clip.mgc_plan.stats.copies > 0
    del clip

    (clip,) = loaders.CLIPLoaderDeviceMGC().load(device=DEVICE, clip_name=clip_file.name, type="stable_diffusion")
    assert {layer["home"] for layer in clip.mgc_plan.model["layers"]} == {DEVICE}
    assert torch.equal(clip.encode_from_tokens(clip.tokenize("a photo of a cat")), expected)


def test_a_bad_string_is_mgcs_diagnostic_before_any_weight_is_read(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    from comfyui import core, loaders

    model_file, _ = _tiny_wan(tmp_path)
    _model_folder(monkeypatch, "diffusion_models", model_file)
    reads = _reads(monkeypatch)
    with pytest.raises(core.PlanError) as e:
        loaders.UNETLoaderMGC().load(**_inputs(expert=f"{DEVICE},4tbs;disk,*", unet_name=os.path.basename(model_file),
                                               weight_dtype="default"))
    message = str(e.value)
    assert "`expert_mode_allocations`" in message and "unknown unit `tbs`" in message and "did you mean `tb`?" in message
    assert "Traceback" not in message
    with pytest.raises(core.PlanError, match="no such model file `missing.safetensors`"):
        loaders.UNETLoaderMGC().load(**_inputs(unet_name="missing.safetensors", weight_dtype="default"))
    assert reads == []


def test_a_plan_for_another_file_or_another_machine_is_refused_before_loading(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    from comfyui import core, loaders

    model_file, _ = _tiny_wan(tmp_path)
    plan = _plan(tmp_path, model_file, "cpu,50%;disk,*", "wan")
    other = tmp_path / "other" / "tiny_wan21.safetensors"
    other.parent.mkdir()
    shutil.copyfile(model_file, other)
    with open(other, "ab") as f:
        f.write(b"\0" * 8)
    _model_folder(monkeypatch, "diffusion_models", other)
    reads = _reads(monkeypatch)
    with pytest.raises(core.PlanError, match="is not the file the plan was compiled for"):
        loaders.UNETLoaderMGC().load(**_inputs(plan=plan, unet_name=other.name, weight_dtype="default", model_name="wan"))

    workflow = tmp_path / "elsewhere.toml"
    workflow.write_text('[[device]]\nname = "cuda:15"\nmemory = "8gb"\n[[model]]\nname = "wan"\n'
                        f'file = "{model_file}"\ncompute = "cuda:15"\nallocation = "cuda:15,50%;cpu,*"\n')
    import mgc

    (tmp_path / "elsewhere.plan.json").write_text(json.dumps(mgc.compile(workflow)))
    plan = core.load_plan(str(tmp_path / "elsewhere.plan.json"))
    _model_folder(monkeypatch, "diffusion_models", model_file)
    with pytest.raises(core.PlanError, match=r"plan `.*elsewhere\.plan\.json` puts model `wan` on `cuda:15`, which this machine does not have"):
        loaders.UNETLoaderMGC().load(**_inputs(plan=plan, unet_name=os.path.basename(model_file), weight_dtype="default"))
    assert reads == []


def test_less_free_memory_than_planned_recompiles_spilling_in_allocation_order(tmp_path, monkeypatch, caplog):
    _comfy(monkeypatch)
    import comfy.model_management

    from comfyui import loaders

    model_file, io = _tiny_wan(tmp_path)
    _model_folder(monkeypatch, "diffusion_models", model_file)
    expected = _forward(_stock_unet(model_file), io)
    comfy.model_management.unload_all_models()
    free = int(os.path.getsize(model_file) * 0.3)
    # Other models hold the compute device's memory: 30% of this model is free there now.
    monkeypatch.setattr(loaders, "free_bytes", lambda device: free if device == DEVICE else None)
    with caplog.at_level(logging.WARNING):
        (patcher,) = loaders.UNETLoaderMGC().load(**_inputs(virtual_vram_gb=0.0, unet_name=os.path.basename(model_file),
                                                            weight_dtype="default"))
    assert any("recompiled" in r.getMessage() and DEVICE in r.getMessage() for r in caplog.records), caplog.text
    entry = patcher.mgc_plan.model
    kept = {b["device"]: b["used_bytes"] for b in entry["budgets"]}
    assert kept[DEVICE] <= free and kept.get("disk", 0) > 0, kept
    assert entry["allocation"] == f"{DEVICE},{free}b;disk,*"
    assert torch.equal(_forward(patcher, io), expected)


def test_load_plan_reads_models_mgc_plans_and_reloads_an_edited_plan(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import folder_paths

    from comfyui import core, nodes

    nodes.register_plans_folder()
    assert folder_paths.folder_names_and_paths["mgc_plans"][0][0] == os.path.join(folder_paths.models_dir, "mgc_plans")
    plans = tmp_path / "mgc_plans"
    plans.mkdir()
    monkeypatch.setitem(folder_paths.folder_names_and_paths, "mgc_plans", ([str(plans)], {".json"}))
    model_file, _ = _tiny_wan(tmp_path)
    plan = _plan(tmp_path, model_file, "cpu,50%;disk,*", "wan")
    (plans / "wan.plan.json").write_text(json.dumps(dict(plan)))
    assert nodes.LoadPlan.INPUT_TYPES()["required"]["plan_name"][0] == ["wan.plan.json"]
    (read,) = nodes.LoadPlan().load(plan_name="wan.plan.json")
    assert read["models"][0]["name"] == "wan" and core.plan_source(read) == str(plans / "wan.plan.json")
    before = nodes.LoadPlan.IS_CHANGED(plan_name="wan.plan.json")
    edited = dict(plan, models=[dict(plan["models"][0], name="wan-edited")])
    (plans / "wan.plan.json").write_text(json.dumps(edited))
    assert nodes.LoadPlan.IS_CHANGED(plan_name="wan.plan.json") != before
    assert nodes.LoadPlan().load(plan_name="wan.plan.json")[0]["models"][0]["name"] == "wan-edited"
    # An absolute path still works; a missing one says so.
    assert nodes.LoadPlan().load(plan_name="", plan_path=str(plans / "wan.plan.json"))[0]["models"][0]["name"] == "wan-edited"
    with pytest.raises(core.PlanError, match="no such plan file `gone.plan.json`"):
        nodes.LoadPlan().load(plan_name="gone.plan.json")
    with pytest.raises(core.PlanError, match="no such plan file"):
        nodes.LoadPlan().load(plan_path=str(tmp_path / "nowhere" / "x.plan.json"))


@pytest.mark.skipif(not GGUF_NODES or not os.path.isfile(os.path.join(GGUF_NODES or "", "nodes.py")),
                    reason="set MGC_COMFYUI_GGUF to a ComfyUI-GGUF checkout to run its loaders with DisTorch2's inputs")
def test_gguf_unet_loaders_with_distorch_inputs_give_comfyui_ggufs_output(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management
    import nodes as comfy_nodes

    from comfyui import loaders
    from comfyui.tests.tiny_gguf import write_gguf

    asyncio.run(comfy_nodes.load_custom_node(GGUF_NODES))
    loaders = importlib.reload(loaders)
    source, io = _tiny_wan(tmp_path)
    model_file = tmp_path / "gguf" / "tiny_wan21_q8.gguf"
    model_file.parent.mkdir()
    write_gguf(source, model_file, "wan")
    _model_folder(monkeypatch, "diffusion_models", model_file)
    plain = comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(model_file.name)[0]
    comfy.model_management.load_models_gpu([plain])
    expected = _forward(plain, io)
    del plain
    comfy.model_management.unload_all_models()

    virtual = 0.5 * os.path.getsize(model_file) / (1 << 30)
    donor = "disk" if DEVICE == "cpu" else "cpu"
    advanced = {"dequant_dtype": "default", "patch_dtype": "default", "patch_on_device": False}
    for node, extra in ((loaders.UnetLoaderGGUFMGC, {}), (loaders.UnetLoaderGGUFAdvancedMGC, advanced)):
        (patcher,) = node().load(**_inputs(virtual_vram_gb=virtual, donor=donor, unet_name=model_file.name, **extra))
        entry = patcher.mgc_plan.model
        assert entry["allocation"].startswith(f"#{DEVICE};") and entry["allocation"].endswith(f";{donor}")
        assert any(layer["home"] == donor and layer["streamed"] for layer in entry["layers"])
        got = _forward(patcher, io)
        assert torch.equal(got, expected), (node.__name__, (got - expected).abs().max())
        del patcher
        comfy.model_management.unload_all_models()


MULTIGPU = os.environ.get("MGC_COMFYUI_MULTIGPU")
# Declared devices for the side-by-side check: a GPU and the CPU, as both sides are told of them.
# cuda:0 of 2 GiB: what is left of it past the default reserve holds the runtime's own memory and the tiny
# model at the peak mgc predicts (mgc refuses a plan that does not fit; DisTorch2 has no such check).
DECLARED = {"cuda:0": 2 << 30, "cpu": 4 << 30}


def _load_multigpu(monkeypatch):
    """ComfyUI-MultiGPU loaded by ComfyUI's own custom-node loading, told of the declared devices
    (its device list and ComfyUI's `get_total_memory`, which its allocation reads)."""
    import sys

    import comfy.model_management
    import comfy.model_patcher
    import nodes as comfy_nodes

    # ComfyUI-MultiGPU replaces some of ComfyUI's functions when it loads or first loads a model:
    # the test puts ComfyUI's back afterwards.
    for name in ("get_torch_device", "text_encoder_device", "unet_offload_device", "soft_empty_cache", "load_models_gpu"):
        monkeypatch.setattr(comfy.model_management, name, getattr(comfy.model_management, name))
    patcher = comfy.model_patcher.ModelPatcher
    monkeypatch.setattr(patcher, "partially_load", patcher.partially_load)
    monkeypatch.setattr(patcher, "_distorch_patched", False, raising=False)
    monkeypatch.delattr(patcher, "_distorch_patched")
    # ComfyUI's `utils` package, which its server imports (ComfyUI's `nodes` put `comfy/` first on
    # the path, where `utils.py` would shadow it; ComfyUI's main imports it before `nodes`).
    if not hasattr(sys.modules.get("utils"), "__path__"):
        sys.modules.pop("utils", None)
        monkeypatch.setattr(sys, "path", [COMFYUI] + sys.path)
        importlib.import_module("utils.install_util")

    for extra in ("nodes_sd3.py", "nodes_hidream.py"):
        asyncio.run(comfy_nodes.load_custom_node(os.path.join(COMFYUI, "comfy_extras", extra), module_parent="comfy_extras"))
    assert asyncio.run(comfy_nodes.load_custom_node(MULTIGPU)), "ComfyUI-MultiGPU did not load (it needs `accelerate`)"
    modules = {name.rsplit(".", 1)[-1]: module for name, module in sys.modules.items() if "MultiGPU" in name}
    monkeypatch.setattr(modules["device_utils"], "_DEVICE_LIST_CACHE", list(DECLARED)[::-1])
    monkeypatch.setattr(comfy.model_management, "get_total_memory",
                        lambda dev=None, torch_total_too=False: DECLARED[str(dev)])
    return comfy_nodes.NODE_CLASS_MAPPINGS, modules["distorch_2"]


def _bytes_by_device(pairs):
    out = {}
    for device, size in pairs:
        out[device] = out.get(device, 0) + size
    return out


@pytest.mark.skipif(not MULTIGPU, reason="set MGC_COMFYUI_MULTIGPU to a ComfyUI-MultiGPU checkout to compare with DisTorch2")
@pytest.mark.parametrize("virtual_vram_gb,expert", [
    (0.006, ""), (0.01, ""), (4.0, ""), (0.0, "cuda:0,8mb;cpu,*"), (0.0, "cuda:0,30%;cpu,70%"), (0.0, "cuda:0,0.005;cpu,0.003"),
])
def test_distorch2_widgets_place_the_bytes_distorch2_places(tmp_path, monkeypatch, virtual_vram_gb, expert):
    """The same widgets on ComfyUI-MultiGPU's UNETLoaderDisTorch2MultiGPU and on UNETLoaderMGC,
    with the same declared devices: DisTorch2's own allocation (`analyze_safetensor_loading`, on
    the model its node loaded) and mgc's plan put the same bytes on each device, to within one
    layer of the model (mgc places whole layers; DisTorch2 single modules, and the modules no
    device share has room for left go to its compute device) and 0.01% of the device's memory
    (DisTorch2 rounds each device's share to that)."""
    _comfy(monkeypatch)
    from comfyui import allocation

    node_classes, distorch = _load_multigpu(monkeypatch)
    model_file, _ = _tiny_wan(tmp_path)
    model_file = _f32(model_file, tmp_path)  # the dtype the model is loaded in here, so module sizes are file bytes
    _model_folder(monkeypatch, "diffusion_models", model_file)
    widgets = {"compute_device": "cuda:0", "virtual_vram_gb": virtual_vram_gb, "donor_device": "cpu",
               "expert_mode_allocations": expert}

    (patcher,) = node_classes["UNETLoaderDisTorch2MultiGPU"]().override(
        unet_name=os.path.basename(model_file), weight_dtype="default", eject_models=False, **widgets)
    full = patcher.model._distorch_v2_meta["full_allocation"]
    theirs = distorch.analyze_safetensor_loading(patcher, full, is_clip=False)["block_assignments"]
    sizes = {name: size for size, name, _, _ in patcher._load_list()}
    distorch_bytes = _bytes_by_device((device, sizes[name]) for name, device in theirs.items())

    ours = allocation.allocation_string(**widgets)
    assert ours == (full.split("#", 1)[0] or full), "the allocation string is the one DisTorch2 builds"
    plan = allocation.plan_for_files([("wan", model_file, "diffusion")], hardware=[
        {"device": d, "memory": m} for d, m in DECLARED.items()], **widgets)
    layers = plan["models"][0]["layers"]
    layer_bytes = [sum(t["bytes"] for t in layer["tensors"]) for layer in layers]
    mgc_bytes = _bytes_by_device((layer["home"], size) for layer, size in zip(layers, layer_bytes))
    assert abs(sum(mgc_bytes.values()) - sum(distorch_bytes.values())) <= 0.01 * sum(mgc_bytes.values())
    for device, memory in DECLARED.items():
        gap = abs(mgc_bytes.get(device, 0) - distorch_bytes.get(device, 0))
        assert gap <= max(layer_bytes) + memory // 10_000, (device, mgc_bytes, distorch_bytes, full)


PROMPT = "a photo of a cat"


def _encode(clip):
    """ComfyUI's conditioning of ``PROMPT`` by ``clip``: the tokens' and the pooled output."""
    cond, pooled = clip.encode_from_tokens(clip.tokenize(PROMPT), return_pooled=True)
    return cond, pooled


def _assert_equal(got, expected, what):
    for g, e in zip(got, expected):
        assert torch.equal(g, e), (what, (g - e).abs().max())


def _assert_where_planned(module, applied):
    """Every weight of the plan's model is where the plan says, and something is on `disk`."""
    from comfyui import core

    entry = applied.model
    assert core.placement(module, entry, core.key_prefix(module, entry)) == _homes(entry)
    assert any(layer["home"] == "disk" and layer["streamed"] for layer in entry["layers"]), entry["allocation"]


def _gib(*paths, share=1.0):
    return share * sum(os.path.getsize(p) for p in paths) / (1 << 30)


@pytest.fixture(scope="module")
def sdxl_text_encoders(tmp_path_factory):
    """CLIP-L and CLIP-G at their real size (ComfyUI builds both from fixed configs), random
    weights: written once for the tests that load them."""
    folder = tmp_path_factory.mktemp("text_encoders")
    return _synth(folder, "clip_l.json", "clip_l.safetensors"), _synth(folder, "clip_g.json", "clip_g.safetensors")


@pytest.mark.slow
def test_dual_clip_loader_streams_both_encoders_from_disk_and_encodes_as_comfyuis(sdxl_text_encoders, monkeypatch):
    """CLIP-L and CLIP-G as SDXL's pair (`sdxl`) and as SD3's without its T5 (`sd3`: another model
    class, the encoders under other names)."""
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    from comfyui import loaders

    clip_l, clip_g = sdxl_text_encoders
    _model_folder(monkeypatch, "text_encoders", clip_l)
    for kind in ("sdxl", "sd3"):
        (plain,) = comfy_nodes.DualCLIPLoader().load_clip(clip_l.name, clip_g.name, kind)
        expected = _encode(plain)
        del plain

        (clip,) = loaders.DualCLIPLoaderMGC().load(**_inputs(
            virtual_vram_gb=_gib(clip_l, clip_g, share=0.6), donor="disk", clip_name1=clip_l.name,
            clip_name2=clip_g.name, type=kind))
        assert [applied.model["name"] for applied in clip.mgc_plans] == ["clip_l", "clip_g"]
        for applied in clip.mgc_plans:
            _assert_where_planned(clip.patcher.model, applied)
        _assert_equal(_encode(clip), expected, f"DualCLIPLoaderMGC {kind}")
        assert all(applied.stats.copies > 0 for applied in clip.mgc_plans), kind
        del clip


@pytest.mark.slow
@pytest.mark.skipif(not GGUF_NODES or not os.path.isfile(os.path.join(GGUF_NODES or "", "nodes.py")),
                    reason="set MGC_COMFYUI_GGUF to a ComfyUI-GGUF checkout to run its loaders with DisTorch2's inputs")
def test_gguf_clip_loaders_stream_safetensors_encoders_from_disk_and_encode_as_comfyui_ggufs(sdxl_text_encoders,
                                                                                             monkeypatch):
    """ComfyUI-GGUF's CLIP loaders also take `.safetensors` files (a GGUF T5 beside a safetensors
    CLIP-L is the usual mix). The text encoders ComfyUI-GGUF reads from a GGUF file are T5 and
    LLMs of fixed configs (T5-XXL: 4.9B parameters), too large for a test: these load CLIP-L and
    CLIP-G through its loaders' own code."""
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    from comfyui import loaders

    asyncio.run(comfy_nodes.load_custom_node(GGUF_NODES))
    loaders = importlib.reload(loaders)
    clip_l, clip_g = sdxl_text_encoders
    _model_folder(monkeypatch, "text_encoders", clip_l)
    cases = [("CLIPLoaderGGUF", {"clip_name": clip_l.name, "type": "stable_diffusion"}, [clip_l]),
             ("DualCLIPLoaderGGUF", {"clip_name1": clip_l.name, "clip_name2": clip_g.name, "type": "sdxl"}, [clip_l, clip_g])]
    for stock, args, files in cases:
        (plain,) = comfy_nodes.NODE_CLASS_MAPPINGS[stock]().load_clip(**args)
        expected = _encode(plain)
        del plain
        (clip,) = getattr(loaders, f"{stock}MGC")().load(**_inputs(virtual_vram_gb=_gib(*files, share=0.6), donor="disk",
                                                                  **args))
        assert len(clip.mgc_plans) == len(files), stock
        for applied in clip.mgc_plans:
            _assert_where_planned(clip.patcher.model, applied)
        _assert_equal(_encode(clip), expected, f"{stock}MGC")
        assert all(applied.stats.copies > 0 for applied in clip.mgc_plans), stock
        del clip


@pytest.mark.slow
def test_clip_vision_loader_streams_vit_l_from_disk_and_encodes_an_image_as_comfyuis(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import nodes as comfy_nodes

    from comfyui import loaders
    from comfyui.tests.fixture_models import clip_vision_vit_l

    model_file = clip_vision_vit_l(COMFYUI, tmp_path / "clip_vision_vit_l.safetensors")
    _model_folder(monkeypatch, "clip_vision", model_file)
    image = torch.rand(1, 96, 128, 3, generator=torch.Generator().manual_seed(5))
    keys = ("last_hidden_state", "image_embeds", "penultimate_hidden_states")
    (plain,) = comfy_nodes.CLIPVisionLoader().load_clip(model_file.name)
    expected = [plain.encode_image(image)[k] for k in keys]
    del plain

    (vision,) = loaders.CLIPVisionLoaderMGC().load(**_inputs(
        virtual_vram_gb=_gib(model_file, share=0.5), donor="disk", clip_name=model_file.name))
    _assert_where_planned(vision.model, vision.mgc_plan)
    got = vision.encode_image(image)
    _assert_equal([got[k] for k in keys], expected, "CLIPVisionLoaderMGC")
    assert vision.mgc_plan.stats.copies > 0


def _flux_sampling():
    """What a ControlNet reads of the model it is applied with: Flux's model sampling (timesteps)."""
    import types

    import comfy.model_base
    import comfy.supported_models

    config = comfy.supported_models.Flux({"image_model": "flux"})
    return types.SimpleNamespace(model_sampling=comfy.model_base.model_sampling(config, comfy.model_base.ModelType.FLUX))


def _control(control_net):
    """What a ControlNet gives one Flux sampling step: applied to a conditioning by ComfyUI's
    *Apply ControlNet* node, loaded as sampling loads it, and run on a noisy latent."""
    import comfy.model_management
    import nodes as comfy_nodes

    g = torch.Generator().manual_seed(11)
    context, pooled = torch.randn(1, 8, 4096, generator=g), torch.randn(1, 768, generator=g)
    conditioning = [[context, {"pooled_output": pooled}]]
    hint = torch.rand(1, 64, 64, 3, generator=g)
    positive, _ = comfy_nodes.ControlNetApplyAdvanced().apply_controlnet(conditioning, conditioning, control_net, hint,
                                                                          1.0, 0.0, 1.0)
    control = positive[0][1]["control"]
    control.pre_run(_flux_sampling(), lambda percent: 1000 * (1 - percent))
    comfy.model_management.load_models_gpu(control.get_models())
    x = torch.randn(1, 16, 8, 8, generator=g)
    cond = {"c_crossattn": context, "y": pooled, "guidance": torch.tensor([3.5])}
    with torch.no_grad():
        out = control.get_control(x, torch.tensor([0.7]), cond, 1, {})
    control.cleanup()
    return [t for kind in sorted(out) for t in out[kind] if t is not None]


@pytest.mark.slow
def test_controlnet_loaders_stream_a_flux_controlnet_from_disk_and_control_as_comfyuis(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import comfy.model_management
    import nodes as comfy_nodes

    from comfyui import loaders
    from comfyui.tests.fixture_models import flux_controlnet

    control_file = flux_controlnet(tmp_path / "flux_controlnet_xlabs.safetensors")
    _model_folder(monkeypatch, "controlnet", control_file)
    (plain,) = comfy_nodes.ControlNetLoader().load_controlnet(control_file.name)
    expected = _control(plain)
    assert expected and all(torch.isfinite(t).all() for t in expected)
    del plain
    comfy.model_management.unload_all_models()

    # DiffControlNetLoader takes the diffusion model a difference file is added to; this file is
    # a whole ControlNet, which it loads as ControlNetLoader does.
    model_file, _ = _tiny_wan(tmp_path)
    _model_folder(monkeypatch, "diffusion_models", model_file)
    (model,) = comfy_nodes.UNETLoader().load_unet(os.path.basename(model_file), "default")
    virtual = _gib(control_file, share=0.5)
    for node, extra in ((loaders.ControlNetLoaderMGC, {}), (loaders.DiffControlNetLoaderMGC, {"model": model})):
        (control_net,) = node().load(**_inputs(virtual_vram_gb=virtual, donor="disk",
                                               control_net_name=control_file.name, **extra))
        _assert_where_planned(control_net.control_model, control_net.mgc_plan)
        _assert_equal(_control(control_net), expected, node.__name__)
        assert control_net.mgc_plan.stats.copies > 0
        del control_net
        comfy.model_management.unload_all_models()
