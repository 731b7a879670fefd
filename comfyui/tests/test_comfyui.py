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
