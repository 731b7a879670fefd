"""ComfyUI-Florence2's loaders on any device of this machine, and optionally with an mgc plan.

Both loaders (`Florence2ModelLoader`, `DownloadAndLoadFlorence2Model`) keep their inputs and add
`device`; ComfyUI-Florence2 computes on ComfyUI's torch device, so `Florence2Run (mgc)` runs the
pack's own Florence2Run with the device the loader chose. With a plan (for the weights file, a
`model.safetensors` in the model folder), each weight lives where the plan says. Florence2 calls
parts of its modules outside their forward (the vision tower's features, the text embeddings),
so a streamed layer is brought to the device for each run of the model and released after it.
"""

from __future__ import annotations

import logging
import os

from . import core, packs
from .allocation import machine_devices

PACK = "ComfyUI-Florence2"
PLAN = "MGC_PLAN"
LOADERS = ("Florence2ModelLoader", "DownloadAndLoadFlorence2Model")
WEIGHTS = "model.safetensors"


def installed() -> bool:
    return packs.installed("Florence2ModelLoader")


def _loader_inputs(name: str) -> dict:
    """The pack's loader inputs, then `device` and, optional, the plan and its model's name."""
    base = packs.node(name, PACK).INPUT_TYPES()
    devices = machine_devices()
    required = dict(base["required"])
    required["device"] = (devices, {"default": devices[1] if len(devices) > 1 else devices[0],
                                    "tooltip": "where Florence2 computes (any device of this machine)"})
    optional = dict(base.get("optional", {}))
    optional["plan"] = (PLAN, {"tooltip": "where each weight lives (compiled for the folder's model.safetensors)"})
    optional["model_name"] = ("STRING", {"default": ""})
    return {"required": required, "optional": optional}


def load(name: str, device: str, plan=None, model_name: str = "", **inputs) -> dict:
    """Runs the pack's loader ``name``, then places the weights on ``device`` (or by the plan):
    the FL2MODEL the pack's nodes take, which remembers its device (``mgc_device``)."""
    stock = packs.node(name, PACK)
    with packs.on_device(device, packs.module_of(name, PACK)):
        (florence,) = getattr(stock(), stock.FUNCTION)(**inputs)
    model = florence["model"]
    florence = dict(florence, mgc_device=device)
    if plan is None:
        return florence  # on the pack's offload device until Florence2Run (mgc) moves it to `device`
    path = os.path.join(_model_folder(stock, name, inputs), WEIGHTS)
    if not os.path.isfile(path):
        raise core.PlanError(f"a plan needs the weights as `{WEIGHTS}`: set `convert_to_safetensors` on the loader "
                             f"(the folder of `{inputs.get('model')}` has none)")
    florence["mgc_plan"] = apply_plan(model, plan, model_name, path, device)
    return florence


def _model_folder(stock, name: str, inputs: dict) -> str:
    """The folder the pack's loader read the model from."""
    if name == "Florence2ModelLoader":
        return stock.model_paths[inputs["model"]]
    return os.path.join(packs.module_of(name, PACK).model_directory, inputs["model"].rsplit("/", 1)[-1])


def apply_plan(model, plan: dict, model_name: str, path: str, device: str) -> core.Applied:
    """Places every weight of ``model`` where the plan says; a streamed layer is copied to the
    compute device when the model generates, and released after. Refuses a plan that computes
    elsewhere than ``device``."""
    entry = core.model_for_file(plan, path, model_name or None)
    if core.torch_device(entry["compute"]) != core.torch_device(device):
        raise core.PlanError(f"the plan computes `{entry['name']}` on {entry['compute']}, the loader's device is "
                             f"{device}: set `device` to {entry['compute']}, or compile the plan for {device}")
    prefix = core.key_prefix(model, entry)
    applied = core.apply_plan(model, plan, entry, key_prefix=prefix)
    # Florence2 reaches into its modules outside their forward: the layers come in for a whole run.
    for handle in applied._handles:
        handle.remove()
    applied._handles.clear()
    core.check_placement(model, entry, prefix)
    _stream_per_run(model, applied)
    _keep_placement(model, applied)
    return applied


def _stream_per_run(model, applied: core.Applied) -> None:
    """``model.generate`` with the streamed layers' weights on the compute device while it runs."""
    streamed = [layer for layer in applied._layers if layer.streamed]
    generate = model.generate
    if not streamed:
        return

    def generate_with_plan(*args, **kwargs):
        for layer in streamed:
            applied._streamer.before(layer)
        try:
            return generate(*args, **kwargs)
        finally:
            for layer in streamed:
                applied._streamer.after(layer)

    model.generate = generate_with_plan


def _keep_placement(model, applied: core.Applied) -> None:
    """Florence2Run moves the whole model to the device and back: with a plan, the plan decides
    where each weight is, so a move of the model leaves every weight at its home."""

    def to(*_args, **_kwargs):
        applied.rehome()
        return model

    model.to = to


class _Loader:
    RETURN_TYPES = ("FL2MODEL",)
    RETURN_NAMES = ("florence2_model",)
    FUNCTION = "loadmodel"
    CATEGORY = "mgc/Florence2"
    STOCK = ""

    @classmethod
    def INPUT_TYPES(cls):
        return _loader_inputs(cls.STOCK)

    def loadmodel(self, device, plan=None, model_name="", **inputs):
        return (load(self.STOCK, device, plan, model_name, **inputs),)


class Florence2ModelLoaderMGC(_Loader):
    """ComfyUI-Florence2's Florence2ModelLoader (a model of ComfyUI/models/LLM) on a chosen device."""

    STOCK = "Florence2ModelLoader"


class DownloadAndLoadFlorence2ModelMGC(_Loader):
    """ComfyUI-Florence2's DownloadAndLoadFlorence2Model on a chosen device."""

    STOCK = "DownloadAndLoadFlorence2Model"


class Florence2RunMGC:
    """ComfyUI-Florence2's Florence2Run, computing on the device its model was loaded for."""

    @classmethod
    def INPUT_TYPES(cls):
        return packs.node("Florence2Run", PACK).INPUT_TYPES()

    RETURN_TYPES = ("IMAGE", "MASK", "STRING", "JSON")
    RETURN_NAMES = ("image", "mask", "caption", "data")
    FUNCTION = "encode"
    CATEGORY = "mgc/Florence2"

    def encode(self, florence2_model, **inputs):
        stock = packs.node("Florence2Run", PACK)
        device = florence2_model.get("mgc_device")
        if device is None:
            logging.info("mgc: this Florence2 model was not loaded by an mgc loader; it runs on ComfyUI's device")
            return stock().encode(florence2_model=florence2_model, **inputs)
        with packs.on_device(device, packs.module_of("Florence2Run", PACK)):
            return stock().encode(florence2_model=florence2_model, **inputs)


NODE_CLASS_MAPPINGS = {
    "Florence2ModelLoaderMGC": Florence2ModelLoaderMGC,
    "DownloadAndLoadFlorence2ModelMGC": DownloadAndLoadFlorence2ModelMGC,
    "Florence2RunMGC": Florence2RunMGC,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "Florence2ModelLoaderMGC": "Florence2ModelLoader (mgc)",
    "DownloadAndLoadFlorence2ModelMGC": "DownloadAndLoadFlorence2Model (mgc)",
    "Florence2RunMGC": "Florence2Run (mgc)",
}
