"""The nodes inside a real ComfyUI: runs when MGC_COMFYUI names a ComfyUI checkout whose Python
deps are importable (skipped otherwise). Loads the tiny random-weight Wan 2.1 with the node,
streaming part of it from the file by an mgc plan, and checks ComfyUI's own forward pass still
gives the recorded output."""

import os
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMFYUI = os.environ.get("MGC_COMFYUI")
GGUF_NODES = os.environ.get("MGC_COMFYUI_GGUF")
TINY = os.environ.get("MGC_TINY", os.path.join(os.path.dirname(ROOT), "shared", "fixtures", "tiny"))

pytestmark = pytest.mark.skipif(
    not COMFYUI or not os.path.isdir(os.path.join(COMFYUI, "comfy")) or not os.path.isdir(TINY),
    reason="set MGC_COMFYUI to a ComfyUI checkout (and MGC_TINY to the tiny fixtures) to run the nodes inside ComfyUI",
)


def test_unet_loader_node_streams_by_the_plan_and_keeps_comfyuis_output(tmp_path, monkeypatch):
    sys.path.insert(0, ROOT)
    sys.path.insert(0, COMFYUI)
    monkeypatch.setattr(sys, "argv", ["main.py", "--cpu"])
    import comfy.options

    comfy.options.enable_args_parsing()
    import folder_paths
    from safetensors.torch import load_file

    from comfyui import core, nodes

    model_file = os.path.join(TINY, "tiny_wan21.safetensors")
    mgc = os.environ.get("MGC", os.path.join(ROOT, "target", "debug", "mgc"))
    workflow = tmp_path / "wan.toml"
    workflow.write_text(
        '[[device]]\nname = "cpu"\nmemory = "4gb"\n'
        f'[[model]]\nname = "wan"\nfile = "{model_file}"\ncompute = "cpu"\nallocation = "cpu,40%;disk,*"\n'
        '[schedule]\nprefetch = 1\nbatch_below = "64kb"\n'
    )
    out = subprocess.run([mgc, "compile", str(workflow), "-o", str(tmp_path / "wan.plan.json")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    plan = nodes.LoadPlan().load(str(tmp_path / "wan.plan.json"))[0]

    monkeypatch.setattr(folder_paths, "get_full_path_or_raise", lambda kind, name: model_file)
    (patcher,) = nodes.UNETLoaderMGC().load("tiny_wan21.safetensors", plan, "wan")
    streamed = [layer for layer in plan["models"][0]["layers"] if layer["streamed"]]
    assert streamed, "the plan streams part of the model"

    io = load_file(os.path.join(TINY, "io", "tiny_wan21_io.safetensors"))
    with torch.no_grad():
        got = patcher.model.apply_model(io["in.x"], io["in.sigma"], c_crossattn=io["in.context"])
    assert torch.allclose(got, io["out.apply_model"], atol=1e-4), (got - io["out.apply_model"]).abs().max()
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert patcher.mgc_plan.stats.copies == len(transfers) > 0, "every streamed layer was copied in, once"

    # ComfyUI's own loading for sampling: afterwards every weight is its plan home again, the very
    # tensor the plan placed (not a copy ComfyUI made), and the output is unchanged.
    import comfy.model_management

    homes = {id(h): h.data_ptr() for (_, _, h) in patcher.mgc_plan._homes}
    comfy.model_management.load_models_gpu([patcher])
    assert patcher.mgc_plan.stats.rehomed >= 1, "the plan was put back after ComfyUI's load"
    for owner, attribute, home in patcher.mgc_plan._homes:
        assert getattr(owner, attribute).data_ptr() == homes[id(home)]
    placement = core.placement(patcher.model.diffusion_model, plan["models"][0])
    assert set(placement.values()) == {"cpu"}
    with torch.no_grad():
        again = patcher.model.apply_model(io["in.x"], io["in.sigma"], c_crossattn=io["in.context"])
    assert torch.equal(again, got)


def _comfy(monkeypatch):
    sys.path.insert(0, ROOT)
    sys.path.insert(0, COMFYUI)
    monkeypatch.setattr(sys, "argv", ["main.py", "--cpu"])
    import comfy.options

    comfy.options.enable_args_parsing()


def _plan(tmp_path, model_file, allocation, name="model", batch_below="64kb"):
    mgc = os.environ.get("MGC", os.path.join(ROOT, "target", "debug", "mgc"))
    workflow = tmp_path / f"{name}.toml"
    workflow.write_text(
        '[[device]]\nname = "cpu"\nmemory = "4gb"\n'
        f'[[model]]\nname = "{name}"\nfile = "{model_file}"\ncompute = "cpu"\nallocation = "{allocation}"\n'
        f'[schedule]\nprefetch = 1\nbatch_below = "{batch_below}"\n'
    )
    out = subprocess.run([mgc, "compile", str(workflow), "-o", str(tmp_path / f"{name}.plan.json")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    from comfyui import nodes

    return nodes.LoadPlan().load(str(tmp_path / f"{name}.plan.json"))[0]


@pytest.mark.skipif(not GGUF_NODES or not os.path.isfile(os.path.join(GGUF_NODES or "", "nodes.py")),
                    reason="set MGC_COMFYUI_GGUF to a ComfyUI-GGUF checkout to run its loader with a plan")
def test_gguf_unet_loader_node_streams_quantized_weights(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import asyncio

    import folder_paths
    import nodes as comfy_nodes
    from safetensors.torch import load_file

    from comfyui import core, nodes
    from comfyui.tests.tiny_gguf import write_gguf

    # ComfyUI's own custom-node loading registers ComfyUI-GGUF's nodes.
    asyncio.run(comfy_nodes.load_custom_node(GGUF_NODES))
    assert "UnetLoaderGGUF" in comfy_nodes.NODE_CLASS_MAPPINGS
    assert nodes.gguf_installed()

    model_file = tmp_path / "tiny_wan21_q8.gguf"
    write_gguf(os.path.join(TINY, "tiny_wan21.safetensors"), model_file, "wan")
    plan = _plan(tmp_path, model_file, "cpu,40%;disk,*", "wan", batch_below="4mb")
    for getter in ("get_full_path", "get_full_path_or_raise"):
        monkeypatch.setattr(folder_paths, getter, lambda kind, name: str(model_file))

    io = load_file(os.path.join(TINY, "io", "tiny_wan21_io.safetensors"))
    args = (io["in.x"], io["in.sigma"])
    plain = comfy_nodes.NODE_CLASS_MAPPINGS["UnetLoaderGGUF"]().load_unet(model_file.name)[0]
    with torch.no_grad():
        expected = plain.model.apply_model(*args, c_crossattn=io["in.context"])

    # With ComfyUI-GGUF there, the pack registers its GGUF loaders when ComfyUI imports it.
    import importlib

    nodes = importlib.reload(nodes)
    assert {"UnetLoaderGGUF (mgc)", "CLIPLoaderGGUF (mgc)"} <= set(nodes.NODE_DISPLAY_NAME_MAPPINGS.values())
    (patcher,) = nodes.UnetLoaderGGUFMGC().load(model_file.name, plan, "")
    entry = plan["models"][0]
    streamed = [layer for layer in entry["layers"] if layer["streamed"]]
    assert streamed and any(not layer["streamed"] for layer in entry["layers"])
    # Quantized weights stay quantized where they live: the raw Q8_0 blocks, with their type.
    module = patcher.model.diffusion_model
    weight = module.get_submodule(streamed[-1]["name"] + ".ffn.0").weight
    assert getattr(weight, "tensor_type", None) is not None and weight.dtype == torch.uint8
    with torch.no_grad():
        got = patcher.model.apply_model(*args, c_crossattn=io["in.context"])
    assert torch.equal(got, expected)
    # Q8_0 is close to the recorded full-precision output.
    assert torch.allclose(got, io["out.apply_model"], atol=0.05), (got - io["out.apply_model"]).abs().max()
    transfers = [t for t in plan["transfers"] if t["model"] == 0]
    assert patcher.mgc_plan.stats.copies == len(transfers) > 0
    # Small layers went through the staging buffer as raw bytes and came out as GGUF weights.
    assert any(t["batched"] for t in transfers)
    assert patcher.mgc_plan.stats.batched_copies == sum(t["batched"] for t in transfers)

    import comfy.model_management

    comfy.model_management.load_models_gpu([patcher])
    core.check_placement(module, entry)
    with torch.no_grad():
        again = patcher.model.apply_model(*args, c_crossattn=io["in.context"])
    assert torch.equal(again, expected)


def test_clip_loader_node_finds_the_plans_keys_inside_comfyuis_text_encoder(tmp_path, monkeypatch):
    _comfy(monkeypatch)
    import folder_paths

    from comfyui import core, nodes

    mgc = os.environ.get("MGC", os.path.join(ROOT, "target", "debug", "mgc"))
    model_file = tmp_path / "clip_l.safetensors"
    inventory = os.path.join(ROOT, "tests", "fixtures", "models", "clip_l.json")
    made = subprocess.run([mgc, "synth-model", inventory, "-o", str(model_file)], capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    plan = _plan(tmp_path, model_file, "cpu,30%;disk,*", "clip")
    monkeypatch.setattr(folder_paths, "get_full_path_or_raise", lambda kind, name: str(model_file))
    (clip,) = nodes.CLIPLoaderMGC().load("clip_l.safetensors", plan, "")
    entry = plan["models"][0]
    module = clip.patcher.model
    prefix = core.key_prefix(module, entry)
    assert prefix.endswith("transformer."), prefix  # ComfyUI nests CLIP-L's keys
    homes = {t["name"]: str(core.torch_device(layer["home"])) for layer in entry["layers"] for t in layer["tensors"]}
    assert core.placement(module, entry, prefix) == homes
    tokens = clip.tokenize("a photo of a cat")
    with torch.no_grad():
        cond = clip.encode_from_tokens(tokens)
    assert cond.shape[-1] == 768
    assert clip.mgc_plan.stats.copies > 0
