"""ComfyUI's loaders with DisTorch2's allocation inputs (ComfyUI-MultiGPU's node set, named
``<StockName>MGC``), and plain device loaders (``<StockName>DeviceMGC``: the whole model on one
device).

Each node takes the stock loader's inputs, and `compute_device`, `virtual_vram_gb`, `donor_device`
and `expert_mode_allocations` (``allocation.allocation_inputs``), or an optional `plan` that
overrides them. Before any weight is read it compiles its plan from the files' headers (or takes
the plan given, checking its devices and the files' fingerprints), recompiles it when a device
has less free memory now than the plan uses, then loads with the stock loader and applies the plan.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

from . import allocation, core
from .nodes import (
    _DYNAMIC_HELP, PLAN, _classic, _comfy, _gguf_node, _is_dynamic, _keep_plan_on_load, _load, _parameters, gguf_installed,
)

ALLOCATION_KEYS = ("compute_device", "virtual_vram_gb", "donor_device", "expert_mode_allocations")


@dataclass(frozen=True)
class Loader:
    """One stock loader: its node name, the inputs that name its files (and the folder of each),
    the role of its models in a plan, and how to call it and find its modules."""

    stock: str
    files: Tuple[Tuple[str, str], ...]
    role: str
    inputs: Callable[[], dict]  # the stock loader's inputs, without its own `device`
    load: Callable[[dict, List[str]], tuple]  # (its inputs, the files' paths) -> its outputs
    apply: Callable[[tuple, list, str], tuple]  # outputs, [(plan, entry, path)], compute


# --- where each kind of output keeps its model ----------------------------------------------


def _apply_entry(plan: dict, entry: dict, module, path: str):
    """Applies the plan's ``entry`` to ``module`` (the model's file at ``path``) and checks that
    every weight is where the plan says."""
    prefix = core.key_prefix(module, entry)
    applied = core.apply_plan(module, plan, entry, key_prefix=prefix, file=path)
    core.check_placement(module, entry, prefix)
    return applied


def _compute_on(patcher, compute: str) -> None:
    """ComfyUI loads a model, and gives it its inputs, on the patcher's load device: the plan's
    compute device."""
    import torch

    if patcher is not None:
        patcher.load_device = torch.device(core.torch_device(compute))


def _apply_model(outputs, pairs, compute):
    (patcher, *rest) = outputs
    plan, entry, path = pairs[0]
    patcher = _classic(patcher, f"`{os.path.basename(path)}`")
    patcher.mgc_plan = _apply_entry(plan, entry, patcher.model.diffusion_model, path)
    _keep_plan_on_load(patcher, patcher.mgc_plan, "diffusion_model.")
    _compute_on(patcher, compute)
    return (patcher, *rest)


def _apply_clip(outputs, pairs, compute):
    (clip, *rest) = outputs
    if _is_dynamic(clip.patcher):
        clip = clip.clone(disable_dynamic=True) if "disable_dynamic" in _parameters(clip.clone) else clip
        if _is_dynamic(clip.patcher):
            raise core.PlanError(_DYNAMIC_HELP.format(what="this text encoder", why=""))
    module = clip.patcher.model
    clip.mgc_plans = [_apply_entry(plan, entry, module, path) for plan, entry, path in pairs]
    clip.mgc_plan = clip.mgc_plans[0]
    for applied in clip.mgc_plans:
        _keep_plan_on_load(clip.patcher, applied)
    _compute_on(clip.patcher, compute)
    return (clip, *rest)


def _apply_vae(outputs, pairs, compute):
    (vae, *rest) = outputs
    plan, entry, path = pairs[0]
    patcher = getattr(vae, "patcher", None)
    if _is_dynamic(patcher):
        raise core.PlanError(_DYNAMIC_HELP.format(what=f"`{os.path.basename(path)}`", why=""))
    vae.mgc_plan = _apply_entry(plan, entry, vae.first_stage_model, path)
    if patcher is not None:
        _keep_plan_on_load(patcher, vae.mgc_plan)
    _compute_on(patcher, compute)
    vae.device = core.torch_device(compute)
    return (vae, *rest)


def _apply_wrapped(model_attribute: str, patcher_attribute: str):
    """For outputs that keep their module and its patcher as attributes (CLIP vision: `model`,
    `patcher`; a ControlNet: `control_model`, `control_model_wrapped`)."""

    def apply(outputs, pairs, compute):
        (out, *rest) = outputs
        plan, entry, path = pairs[0]
        module = getattr(out, model_attribute, None)
        if module is None:
            raise core.PlanError(
                f"`{os.path.basename(path)}` loads as a {type(out).__name__}, which keeps no model mgc can place: "
                "load it with ComfyUI's own loader"
            )
        patcher = getattr(out, patcher_attribute, None)
        out.mgc_plan = _apply_entry(plan, entry, module, path)
        if patcher is not None:
            _keep_plan_on_load(patcher, out.mgc_plan)
        _compute_on(patcher, compute)
        return (out, *rest)

    return apply


def _apply_checkpoint(outputs, pairs, _compute):
    """A checkpoint's planned models, each where ComfyUI keeps it (mgc plans a checkpoint's
    diffusion model: the MODEL), each on its own compute device."""
    model, clip, vae = (list(outputs) + [None, None, None])[:3]
    for pair in pairs:
        role, compute = pair[1]["role"], pair[1]["compute"]
        if role == "diffusion" and model is not None:
            (model,) = _apply_model((model,), [pair], compute)
        elif role == "text-encoder" and clip is not None:
            (clip,) = _apply_clip((clip,), [pair], compute)
        elif role == "vae" and vae is not None:
            (vae,) = _apply_vae((vae,), [pair], compute)
    return (model, clip, vae)


# --- the stock loaders ------------------------------------------------------------------------


def _stock(name: str):
    import nodes as comfy_nodes

    return comfy_nodes.NODE_CLASS_MAPPINGS[name]


def _without_device(inputs: dict) -> dict:
    """A loader's inputs without its own `device` option (the compute device decides)."""
    out = {kind: {k: v for k, v in section.items() if k != "device"} for kind, section in inputs.items()
           if isinstance(section, dict)}
    return {kind: section for kind, section in out.items() if section or kind == "required"}


def _stock_inputs(name: str) -> Callable[[], dict]:
    return lambda: _without_device(_stock(name).INPUT_TYPES())


def _clip_names(count: int) -> Callable[[], dict]:
    def inputs():
        _, folder_paths = _comfy()
        names = folder_paths.get_filename_list("text_encoders")
        return {"required": {f"clip_name{i}": (names,) for i in range(1, count + 1)}}

    return inputs


def _load_clip(args: dict, paths: List[str]) -> tuple:
    comfy, folder_paths = _comfy()
    options = {}
    if "type" in args:
        options["clip_type"] = getattr(comfy.sd.CLIPType, args["type"].upper(), comfy.sd.CLIPType.STABLE_DIFFUSION)
    clip = _load(comfy.sd.load_clip, ckpt_paths=paths, embedding_directory=folder_paths.get_folder_paths("embeddings"), **options)
    return (clip,)


def _call(name: str, function: str, **fixed):
    """Calls the stock node's function with its inputs (ComfyUI-GGUF's nodes, say)."""

    def load(args: dict, _paths: List[str]) -> tuple:
        node = _gguf_node(name) if "GGUF" in name else _stock(name)
        return tuple(getattr(node(), function)(**args, **fixed))

    return load


def _gguf_inputs(name: str) -> Callable[[], dict]:
    return lambda: _without_device(_gguf_node(name).INPUT_TYPES())


def _clip_loader(stock, count, gguf=False, typed=True):
    files = tuple((f"clip_name{i}" if count > 1 else "clip_name", "text_encoders" if not gguf else "clip")
                  for i in range(1, count + 1))
    if gguf:
        return Loader(stock, files, "text-encoder", _gguf_inputs(stock), _call(stock, "load_clip"), _apply_clip)
    inputs = _stock_inputs(stock) if typed else _clip_names(count)
    return Loader(stock, files, "text-encoder", inputs, _load_clip, _apply_clip)


LOADERS: List[Loader] = [
    Loader("UNETLoader", (("unet_name", "diffusion_models"),), "diffusion", _stock_inputs("UNETLoader"),
           _call("UNETLoader", "load_unet"), _apply_model),
    Loader("CheckpointLoaderSimple", (("ckpt_name", "checkpoints"),), "diffusion", _stock_inputs("CheckpointLoaderSimple"),
           _call("CheckpointLoaderSimple", "load_checkpoint"), _apply_checkpoint),
    _clip_loader("CLIPLoader", 1),
    _clip_loader("DualCLIPLoader", 2),
    _clip_loader("TripleCLIPLoader", 3, typed=False),
    _clip_loader("QuadrupleCLIPLoader", 4, typed=False),
    Loader("VAELoader", (("vae_name", "vae"),), "vae", _stock_inputs("VAELoader"), _call("VAELoader", "load_vae"), _apply_vae),
    Loader("CLIPVisionLoader", (("clip_name", "clip_vision"),), "image-encoder", _stock_inputs("CLIPVisionLoader"),
           _call("CLIPVisionLoader", "load_clip"), _apply_wrapped("model", "patcher")),
    Loader("ControlNetLoader", (("control_net_name", "controlnet"),), "controlnet", _stock_inputs("ControlNetLoader"),
           _call("ControlNetLoader", "load_controlnet"), _apply_wrapped("control_model", "control_model_wrapped")),
    Loader("DiffControlNetLoader", (("control_net_name", "controlnet"),), "controlnet", _stock_inputs("DiffControlNetLoader"),
           _call("DiffControlNetLoader", "load_controlnet"), _apply_wrapped("control_model", "control_model_wrapped")),
]

GGUF_LOADERS: List[Loader] = [
    Loader("UnetLoaderGGUF", (("unet_name", "unet"),), "diffusion", _gguf_inputs("UnetLoaderGGUF"),
           _call("UnetLoaderGGUF", "load_unet"), _apply_model),
    Loader("UnetLoaderGGUFAdvanced", (("unet_name", "unet"),), "diffusion", _gguf_inputs("UnetLoaderGGUFAdvanced"),
           _call("UnetLoaderGGUFAdvanced", "load_unet"), _apply_model),
    _clip_loader("CLIPLoaderGGUF", 1, gguf=True),
    _clip_loader("DualCLIPLoaderGGUF", 2, gguf=True),
    _clip_loader("TripleCLIPLoaderGGUF", 3, gguf=True),
    _clip_loader("QuadrupleCLIPLoaderGGUF", 4, gguf=True),
]


# --- the nodes --------------------------------------------------------------------------------


def _name_inputs(loader: Loader) -> List[str]:
    """The optional inputs that pick each file's model in a given plan."""
    return ["model_name"] if len(loader.files) == 1 else [f"model_name{i}" for i in range(1, len(loader.files) + 1)]


def _model_names(paths: List[str]) -> List[str]:
    """The names the files' models get in a compiled plan: each file's stem, made unique."""
    names: List[str] = []
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0] or "model"
        name, n = stem, 2
        while name in names:
            name, n = f"{stem}-{n}", n + 1
        names.append(name)
    return names


def _full_path(folder: str, name: str) -> str:
    _, folder_paths = _comfy()
    path = folder_paths.get_full_path(folder, name)
    if path is None or not os.path.isfile(path):
        raise core.PlanError(f"no such model file `{name}` in ComfyUI's `{folder}` folder")
    return path


def plan_and_entries(loader: Loader, paths: List[str], choice: dict, plan: Optional[dict],
                     names: List[str]) -> List[tuple]:
    """``(plan, entry, path)`` for each model the loader's files hold, from the plan given or one
    compiled from ``choice`` (the allocation inputs), checked before any weight is read: the
    devices are this machine's, the files are the ones the plan was compiled for, and what the
    plan keeps on each device is free there now (else that model is recompiled, spilling in
    allocation order)."""
    if plan is None:
        names = _model_names(paths)
        plan = allocation.plan_for_files([(n, p, loader.role) for n, p in zip(names, paths)], **choice)
    present = allocation.machine_devices()
    pairs = []
    for entry, path in _entries(loader, plan, paths, names):
        core.check_devices(plan, entry, present)
        pairs.append(fit_free_memory(plan, entry, path))
    return pairs


def _entries(loader: Loader, plan: dict, paths: List[str], names: List[str]) -> List[tuple]:
    """The plan's entry for each file, by name, else by the file's fingerprint (a checkpoint:
    every model in it), with the file."""
    if loader.apply is _apply_checkpoint:
        first = core.model_for_file(plan, paths[0], (names or [""])[0] or None, None)
        return [(m, paths[0]) for m in plan["models"] if m["input"] == first["input"]]
    names = list(names) + [""] * (len(paths) - len(names))
    return [(core.model_for_file(plan, path, name or None, loader.role), path) for path, name in zip(paths, names)]


def free_bytes(device: str) -> Optional[int]:
    """The memory free on ``device`` now, or ``None`` where it cannot be told (and for `disk`)."""
    import torch

    if device == "cpu":
        try:
            import psutil
        except ImportError:
            return None
        return int(psutil.virtual_memory().available)
    if device.startswith("cuda") and torch.cuda.is_available():
        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    return None


def fit_free_memory(plan: dict, entry: dict, path: str) -> tuple:
    """``(plan, entry, path)``, or, where a device has less free memory now than the model keeps
    there (other models hold it), the model recompiled against what is free: each short device
    keeps what is free, the rest spills to the next device of its allocation, the last to `disk`.
    Says so in the console."""
    spill = _spill(entry)
    if spill is None:
        return plan, entry, path
    allocation_now, (device, free, used) = spill
    logging.warning(
        "mgc: %s has %s free now, less than the %s plan `%s` keeps there for `%s` (other models hold it): "
        "recompiled with the allocation `%s`", device, _gib(free), _gib(used), core.plan_source(plan), entry["name"],
        allocation_now,
    )
    new = allocation.plan_for_files([(entry["name"], path, entry["role"])], entry["compute"], 0, "cpu", allocation_now)
    same_role = [m for m in new["models"] if m["role"] == entry["role"]] or new["models"]
    return new, same_role[0], path


def _spill(entry: dict) -> Optional[Tuple[str, tuple]]:
    """An allocation string for ``entry`` that keeps within what is free now on each device, and
    the first short device (name, free, planned), or ``None`` when every device has room."""
    order = [b["device"] for b in entry["budgets"]]
    used = {b["device"]: int(b.get("used_bytes", 0)) for b in entry["budgets"]}
    free = {d: free_bytes(d) for d in order}
    short = [d for d in order if d != "disk" and free[d] is not None and used[d] > free[d]]
    if not short:
        return None
    keep, carry = {}, 0
    for d in order:
        want = used[d] + carry
        room = want if d == "disk" or free[d] is None else min(want, free[d])
        keep[d], carry = room, want - room
    if "disk" not in order:
        order = order + ["disk"]
    keep["disk"] = keep.get("disk", 0) + carry
    parts = [f"{d},{keep[d]}b" for d in order[:-1] if keep[d] > 0] + [f"{order[-1]},*"]
    first = short[0]
    return ";".join(parts), (first, free[first], used[first])


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB"


def _node(loader: Loader, device_only: bool):
    """The node class for ``loader``: DisTorch's allocation inputs, or one `device`."""

    class Node:
        @classmethod
        def INPUT_TYPES(cls):
            inputs = loader.inputs()
            required = dict(inputs.get("required", {}))
            optional = dict(inputs.get("optional", {}))
            choices = allocation.allocation_inputs()
            if device_only:
                required["device"] = choices["compute_device"]
            else:
                required.update(choices)
                optional["plan"] = (PLAN, {"tooltip": "an mgc plan: when connected, it decides instead of the inputs above"})
                for name in _name_inputs(loader):
                    optional[name] = ("STRING", {"default": "", "tooltip": "the model's name in the plan (empty: found by its file)"})
            return {"required": required, "optional": optional}

        RETURN_TYPES = tuple(_stock_returns(loader))
        FUNCTION = "load"
        CATEGORY = "mgc"
        DESCRIPTION = (f"{loader.stock}, with the whole model on one device" if device_only else
                       f"{loader.stock}, with DisTorch2's allocation inputs (or an mgc plan) deciding where each layer lives")

        def load(self, **kwargs):
            if device_only:
                device = kwargs.pop("device")
                choice = {"compute_device": device, "virtual_vram_gb": 0.0, "donor_device": "cpu", "expert_mode_allocations": ""}
                plan, names = None, []
            else:
                choice = {k: kwargs.pop(k) for k in ALLOCATION_KEYS if k in kwargs}
                choice.setdefault("compute_device", allocation.allocation_inputs()["compute_device"][1]["default"])
                plan = kwargs.pop("plan", None)
                names = [kwargs.pop(n, "") for n in _name_inputs(loader)]
            paths = [_full_path(folder, kwargs[name]) for name, folder in loader.files]
            pairs = plan_and_entries(loader, paths, choice, plan, names)
            outputs = loader.load(kwargs, paths)
            return loader.apply(outputs, pairs, pairs[0][1]["compute"])

    suffix = "DeviceMGC" if device_only else "MGC"
    Node.__name__ = Node.__qualname__ = loader.stock + suffix
    return Node


def _stock_returns(loader: Loader) -> List[str]:
    returns = {
        "UNETLoader": ["MODEL"], "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"], "VAELoader": ["VAE"],
        "CLIPVisionLoader": ["CLIP_VISION"], "ControlNetLoader": ["CONTROL_NET"], "DiffControlNetLoader": ["CONTROL_NET"],
        "UnetLoaderGGUF": ["MODEL"], "UnetLoaderGGUFAdvanced": ["MODEL"],
    }
    return returns.get(loader.stock, ["CLIP"])


_CHECKPOINT = LOADERS[1]


class CheckpointLoaderAdvancedMGC:
    """ComfyUI-MultiGPU's advanced DisTorch2 checkpoint loader: the diffusion model placed by its
    own DisTorch2 inputs (`unet_…`) or a plan, the text encoders and the VAE each whole on their
    device (mgc plans a checkpoint's diffusion model; the `clip_…` amounts are not used)."""

    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        a = allocation.allocation_inputs()
        devices, device_options = a["compute_device"]
        return {
            "required": {
                "ckpt_name": (folder_paths.get_filename_list("checkpoints"),),
                "unet_compute_device": a["compute_device"],
                "unet_virtual_vram_gb": a["virtual_vram_gb"],
                "unet_donor_device": a["donor_device"],
                "clip_compute_device": (devices, {**device_options, "default": "cpu"}),
                "clip_virtual_vram_gb": ("FLOAT", {**a["virtual_vram_gb"][1], "default": 2.0}),
                "clip_donor_device": a["donor_device"],
                "vae_device": a["compute_device"],
            },
            "optional": {
                "unet_expert_mode_allocations": a["expert_mode_allocations"],
                "clip_expert_mode_allocations": a["expert_mode_allocations"],
                "plan": (PLAN, {"tooltip": "an mgc plan for the checkpoint: when connected, it places the diffusion model"}),
            },
        }

    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, ckpt_name, unet_compute_device, unet_virtual_vram_gb, unet_donor_device, clip_compute_device,
             clip_virtual_vram_gb, clip_donor_device, vae_device, unet_expert_mode_allocations="",
             clip_expert_mode_allocations="", plan=None):
        if (clip_virtual_vram_gb > 0 and clip_donor_device != clip_compute_device) or clip_expert_mode_allocations.strip():
            logging.info("mgc: `%s`: the text encoders go whole on %s (mgc plans a checkpoint's diffusion model; "
                         "the clip virtual VRAM and expert string are not used)", ckpt_name, clip_compute_device)
        choice = {"compute_device": unet_compute_device, "virtual_vram_gb": unet_virtual_vram_gb,
                  "donor_device": unet_donor_device, "expert_mode_allocations": unet_expert_mode_allocations}
        path = _full_path("checkpoints", ckpt_name)
        pairs = plan_and_entries(_CHECKPOINT, [path], choice, plan, [])
        model, clip, vae = _CHECKPOINT.load({"ckpt_name": ckpt_name}, [path])
        model, clip, vae = _apply_checkpoint((model, clip, vae), pairs, unet_compute_device)
        if clip is not None:
            _compute_on(clip.patcher, clip_compute_device)
        if vae is not None:
            _compute_on(getattr(vae, "patcher", None), vae_device)
            vae.device = core.torch_device(vae_device)
        return (model, clip, vae)


def node_mappings(with_gguf: bool) -> Tuple[Dict[str, type], Dict[str, str]]:
    """The loader nodes and their display names: `<StockName>MGC` (`<StockName> (mgc)`) and
    `<StockName>DeviceMGC` (`<StockName> on a device (mgc)`), the GGUF ones with ComfyUI-GGUF."""
    classes, names = {}, {}
    for loader in LOADERS + (GGUF_LOADERS if with_gguf else []):
        classes[f"{loader.stock}MGC"] = _node(loader, device_only=False)
        names[f"{loader.stock}MGC"] = f"{loader.stock} (mgc)"
        classes[f"{loader.stock}DeviceMGC"] = _node(loader, device_only=True)
        names[f"{loader.stock}DeviceMGC"] = f"{loader.stock} on a device (mgc)"
    classes["CheckpointLoaderAdvancedMGC"] = CheckpointLoaderAdvancedMGC
    names["CheckpointLoaderAdvancedMGC"] = "CheckpointLoaderAdvanced (mgc)"
    return classes, names


LOADER_CLASS_MAPPINGS, LOADER_DISPLAY_NAME_MAPPINGS = node_mappings(gguf_installed())
globals().update(LOADER_CLASS_MAPPINGS)
