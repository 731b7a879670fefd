"""ComfyUI-WanVideoWrapper's nodes with mgc plans and device selection.

- `WanVideoModelLoader (mgc)`: the wrapper's loader, then a plan decides where each block of its
  transformer lives and which are streamed to the compute device (from RAM, another GPU or the
  model file), with the plan's prefetch and batching, instead of the wrapper's block swap. The
  plan comes from the `plan` input, from `WanVideoBlockSwap (mgc)`'s arguments, or from DisTorch's
  allocation inputs, in that order.
- `WanVideoBlockSwap (mgc)`: the wrapper's block-swap inputs and `swap_device`: that many blocks
  streamed from `swap_device`, compiled into a plan by the loader (the wrapper's own loader takes
  the same arguments as its block swap).
- The wrapper's text encoders, VAE, encode/decode and sampler nodes with a `compute_device`.

The wrapper's transformer keeps the Wan checkpoint's key names, so the plan's layers (`blocks.N`,
`head`, ...) are its modules as they are.
"""

from __future__ import annotations

import json
import logging
import os

from . import core, packs
from .allocation import allocation_inputs, machine_devices, plan_for_files

PACK = "ComfyUI-WanVideoWrapper"
PLAN = "MGC_PLAN"
LOADER = "WanVideoModelLoader"
BLOCK_SWAP = "WanVideoBlockSwap"

# The wrapper's nodes that compute somewhere, given a `compute_device` (those of later versions
# are added when the installed wrapper has them).
DEVICE_NODES = (
    "LoadWanVideoT5TextEncoder", "LoadWanVideoClipTextEncoder", "WanVideoVAELoader", "WanVideoTinyVAELoader",
    "WanVideoTextEncode", "WanVideoImageClipEncode", "WanVideoImageToVideoEncode", "WanVideoEncode",
    "WanVideoDecode", "WanVideoSampler",
)


def installed() -> bool:
    return packs.installed(LOADER)


def _device_input() -> tuple:
    devices = machine_devices()
    return (devices, {"default": devices[1] if len(devices) > 1 else devices[0],
                      "tooltip": "where this node computes"})


class WanVideoModelLoaderMGC:
    """The wrapper's WanVideoModelLoader, then an mgc plan applied to its transformer."""

    @classmethod
    def INPUT_TYPES(cls):
        base = packs.node(LOADER, PACK).INPUT_TYPES()
        required = dict(base["required"])
        required.update(allocation_inputs())
        optional = dict(base.get("optional", {}))
        optional["plan"] = (PLAN, {"tooltip": "decides where each block lives instead of the allocation inputs"})
        optional["model_name"] = ("STRING", {"default": ""})
        return {"required": required, "optional": optional}

    RETURN_TYPES = ("WANVIDEOMODEL",)
    RETURN_NAMES = ("model",)
    FUNCTION = "load_and_show"
    CATEGORY = "mgc/WanVideoWrapper"

    def load_and_show(self, **inputs):
        """What ComfyUI runs: the model, and the plan that placed it shown in the node."""
        from .loaders import with_preview

        (patcher,) = self.loadmodel(**inputs)
        applied = patcher.mgc_plan
        return with_preview((patcher,), [(applied.plan, applied.model, None)])

    def loadmodel(self, model, compute_device, virtual_vram_gb=4.0, donor_device="cpu", expert_mode_allocations="",
                  plan=None, model_name="", block_swap_args=None, vram_management_args=None, **inputs):
        import folder_paths

        _refuse_other_offloading(plan, block_swap_args, vram_management_args)
        path = folder_paths.get_full_path_or_raise("diffusion_models", model)
        name = model_name or "wan"
        if plan is None and block_swap_args is not None:
            plan = block_swap_plan(path, name, compute_device, block_swap_args)
        elif plan is None:
            plan = plan_for_files([(name, path, "diffusion")], compute_device, virtual_vram_gb, donor_device,
                                  expert_mode_allocations)
        if inputs.get("load_device") == "main_device":
            # The plan places the weights; all of them on the compute device first could not fit.
            logging.info("mgc: `%s` is loaded to the offload device first; the plan then places its weights", model)
            inputs["load_device"] = "offload_device"
        stock = packs.node(LOADER, PACK)
        with packs.on_device(compute_device, packs.module_of(LOADER, PACK)):
            (patcher,) = stock().loadmodel(model=model, **inputs)
        return (plan_transformer(patcher, plan, model_name or None, path, compute_device),)


def _refuse_other_offloading(plan, block_swap_args, vram_management_args) -> None:
    """The plan decides where weights live: the wrapper's own offloading cannot come with it."""
    if vram_management_args is not None:
        raise core.PlanError("`vram_management_args` (WanVideo VRAM Management) offloads the model its own way; "
                             "with WanVideoModelLoader (mgc) the plan decides: disconnect `vram_management_args`")
    if block_swap_args is None:
        return
    if not _is_ours(block_swap_args):
        raise core.PlanError(
            "`block_swap_args` come from the wrapper's WanVideoBlockSwap, whose block swap the plan replaces: "
            "use WanVideoBlockSwap (mgc) instead (it keeps `blocks_to_swap` and compiles it into a plan), "
            "or disconnect `block_swap_args`")
    if plan is not None:
        raise core.PlanError("both a `plan` and `block_swap_args` were given, and either decides where the blocks "
                             "live: disconnect `block_swap_args` (WanVideoBlockSwap (mgc)) or `plan`")


def _is_ours(block_swap_args) -> bool:
    return isinstance(block_swap_args, dict) and "swap_device" in block_swap_args


def plan_transformer(patcher, plan: dict, model_name, path: str, compute_device: str) -> object:
    """Applies the plan's entry for ``path`` to the wrapper's transformer and turns the wrapper's
    own offloading off (the sampler then leaves the weights where the plan put them). The `mgc`
    logger says what the plan does with it, then each forward's time against the prediction."""
    transformer = patcher.model.diffusion_model
    entry = core.model_for_file(plan, path, model_name, "diffusion")
    if core.torch_device(entry["compute"]) != core.torch_device(compute_device):
        raise core.PlanError(f"the plan computes `{entry['name']}` on {entry['compute']}, not on {compute_device}: "
                             f"set `compute_device` to {entry['compute']}, or compile the plan for {compute_device}")
    prefix = core.key_prefix(transformer, entry)
    applied = core.apply_plan(transformer, plan, entry, key_prefix=prefix)
    core.check_placement(transformer, entry, prefix)
    patcher.model["block_swap_args"] = None
    patcher.model["manual_offloading"] = False
    patcher.model["auto_cpu_offload"] = False
    patcher.model["mgc_compute"] = compute_device
    patcher.mgc_plan = applied
    applied.plan = plan
    return patcher


def block_swap_plan(path: str, name: str, compute_device: str, args: dict) -> dict:
    """The plan for the wrapper's block swap: ``blocks_to_swap`` blocks streamed from
    ``swap_device`` to the compute device and the rest of the model resident there; the plan
    keeps the resident part from the model's head (the wrapper's block swap swaps the first
    blocks, the plan the last: the same number of blocks and bytes). The embeddings the wrapper
    would offload (`offload_txt_emb`, `offload_img_emb`) count as swapped bytes."""
    from .allocation import _mgc

    mgc = _mgc()
    swap = str(args["swap_device"])
    model = _inspected_model(mgc, path)
    blocks = [layer for layer in model["layers"] if layer["name"].startswith("blocks.")]
    count = int(args.get("blocks_to_swap", 0))
    if count > len(blocks):
        logging.info("mgc: `blocks_to_swap` is %d, the model has %d blocks: all of them are swapped", count, len(blocks))
        count = len(blocks)
    swapped = sum(b["bytes"] for b in blocks[:count]) + _embeddings_swapped(model, args)
    if swapped == 0 or swap == compute_device:
        allocation = f"{compute_device},*"
    else:
        allocation = f"{compute_device},{model['bytes'] - swapped}b;{swap},*"
    prefetch = int(args.get("prefetch_blocks", 0) or 0)
    workflow = (
        f"[[model]]\nname = {_toml(name)}\nfile = {_toml(os.path.abspath(path))}\ncompute = {_toml(compute_device)}\n"
        f"allocation = {_toml(allocation)}\nplacement = \"head\"\n"
        f"[schedule]\nprefetch = {prefetch if prefetch > 0 else _toml('auto')}\n"
    )
    try:
        plan = mgc.compile(workflow)
    except mgc.MgcError as e:
        raise core.PlanError(f"{count} blocks swapped to {swap} cannot be planned on this machine:\n{e}") from None
    return core.compiled_plan(plan, f"compiled from {count} blocks swapped to {swap}")


def _inspected_model(mgc, path: str) -> dict:
    try:
        report = mgc.inspect(path)
    except mgc.MgcError as e:
        raise core.PlanError(str(e)) from None
    diffusion = [m for m in report["models"] if m["role"] == "diffusion"] or report["models"]
    return diffusion[0]


def _embeddings_swapped(model: dict, args: dict) -> int:
    names = {"text_embedding"} if args.get("offload_txt_emb") else set()
    if args.get("offload_img_emb"):
        names.add("img_emb")
    return sum(layer["bytes"] for layer in model["layers"] if layer["name"] in names)


def _toml(value: str) -> str:
    return json.dumps(value)


class WanVideoBlockSwapMGC:
    """The wrapper's WanVideoBlockSwap inputs and `swap_device`: the swapped blocks stream from there."""

    @classmethod
    def INPUT_TYPES(cls):
        base = packs.node(BLOCK_SWAP, PACK).INPUT_TYPES()
        required = dict(base["required"])
        optional = dict(base.get("optional", {}))
        devices = machine_devices() + ["disk"]
        required["swap_device"] = (devices, {"default": "cpu",
                                             "tooltip": "where the swapped blocks live: RAM, another GPU, or the model file"})
        if "prefetch_blocks" not in required and "prefetch_blocks" not in optional:
            optional["prefetch_blocks"] = ("INT", {"default": 0, "min": 0, "max": 40, "step": 1,
                                                   "tooltip": "blocks copied ahead; 0: the plan chooses"})
        return {"required": required, "optional": optional}

    RETURN_TYPES = ("BLOCKSWAPARGS",)
    RETURN_NAMES = ("block_swap_args",)
    FUNCTION = "setargs"
    CATEGORY = "mgc/WanVideoWrapper"

    def setargs(self, **kwargs):
        return (kwargs,)


class _StockOutputs(type):
    """The outputs of a node are the wrapper's node's, read when ComfyUI asks (the wrapper may be
    loaded after this pack)."""

    @property
    def RETURN_TYPES(cls):
        return packs.node(cls.STOCK, PACK).RETURN_TYPES

    @property
    def RETURN_NAMES(cls):
        stock = packs.node(cls.STOCK, PACK)
        return getattr(stock, "RETURN_NAMES", stock.RETURN_TYPES)


class _DeviceNode(metaclass=_StockOutputs):
    """Runs the wrapper's node ``STOCK`` with ``compute_device`` as ComfyUI's device."""

    STOCK = ""
    FUNCTION = "run"
    CATEGORY = "mgc/WanVideoWrapper"

    @classmethod
    def INPUT_TYPES(cls):
        base = packs.node(cls.STOCK, PACK).INPUT_TYPES()
        required = dict(base["required"])
        required["compute_device"] = _device_input()
        return {**base, "required": required}

    def run(self, compute_device, **inputs):
        planned = getattr(inputs.get("model"), "mgc_plan", None)
        if planned is not None and core.torch_device(compute_device) != planned.compute:
            raise core.PlanError(f"the model's plan computes on {planned.compute}: set `compute_device` to "
                                 f"{planned.compute}, or load the model for {compute_device}")
        stock = packs.node(self.STOCK, PACK)
        with packs.on_device(compute_device, packs.module_of(self.STOCK, PACK)):
            return getattr(stock(), stock.FUNCTION)(**inputs)


def _device_node(name: str) -> type:
    return _StockOutputs(f"{name}MGC", (_DeviceNode,), {
        "STOCK": name, "__doc__": f"The wrapper's {name}, computing on `compute_device`."})


def node_mappings() -> tuple:
    """This module's nodes (class and display-name mappings), for the wrapper in ComfyUI."""
    classes = {"WanVideoModelLoaderMGC": WanVideoModelLoaderMGC, "WanVideoBlockSwapMGC": WanVideoBlockSwapMGC}
    names = {"WanVideoModelLoaderMGC": "WanVideoModelLoader (mgc)", "WanVideoBlockSwapMGC": "WanVideoBlockSwap (mgc)"}
    present = packs.defined(DEVICE_NODES, LOADER)
    for name in DEVICE_NODES:
        if name in present:
            classes[f"{name}MGC"] = _device_node(name)
            names[f"{name}MGC"] = f"{name} (mgc)"
    return classes, names
