"""ComfyUI nodes that load models with ComfyUI's own loaders and apply an mgc plan to them.

The work is done by ``core`` (plain torch); this layer only finds files and models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from . import core
from .allocation import _mgc, _toml_string

PLAN = "MGC_PLAN"


def _comfy():
    import comfy.sd  # noqa: F401  (imported here so that the core imports without ComfyUI)
    import comfy.utils  # noqa: F401
    import folder_paths

    return comfy, folder_paths


def _keep_plan_on_load(patcher, applied, root="") -> None:
    """ComfyUI moves a model to its device before sampling; right after, put every weight back
    where the plan says, so that the plan, not ComfyUI's loader, decides placement. ``root`` is
    where the plan's module sits in the patcher's model (``diffusion_model.``)."""
    from comfy.patcher_extension import CallbacksMP

    def on_load(loaded, *_args, **_kwargs):
        # `loaded` is the patcher being loaded: a clone of ours when LoRAs were added to it.
        _take_over_patches(loaded, applied, root)
        applied.rehome()

    patcher.add_callback(CallbacksMP.ON_LOAD, on_load)


def _take_over_patches(patcher, applied, root) -> None:
    """ComfyUI patched (LoRA) the weights it moved to the GPU and set the rest to be patched as
    they are cast at forward. The plan puts the unpatched weights back, so the pack patches them
    itself, the way ComfyUI does (at full precision, then rounded as ComfyUI rounds): streamed
    weights right after their copy, resident ones just before their layer runs."""
    import comfy.model_patcher

    wipe = getattr(comfy.model_patcher, "wipe_lowvram_weight", None)
    if wipe is not None and applied.module is not None:
        for m in applied.module.modules():
            wipe(m)
    patches = getattr(patcher, "patches", {}) or {}
    applied.set_patches({
        key[len(root):]: _lora(key, patches[key])
        for key in patches
        if key.startswith(root) and not _quantized(patcher, key)
    })


def _quantized(patcher, key) -> bool:
    """A GGUF weight still in its quantized blocks: ComfyUI-GGUF keeps its LoRA patches on the
    weight and applies them as it dequantizes, wherever the weight is."""
    import comfy.utils
    import torch

    try:
        weight = comfy.utils.get_attr(patcher.model, key)
    except AttributeError:
        return False
    return hasattr(weight, "tensor_type") and weight.dtype == torch.uint8


def _lora(key, patches):
    """The weight patch ComfyUI applies for ``key``, as a function of the weight."""
    import comfy.lora
    import comfy.model_patcher
    import comfy.utils
    import torch

    # Where ComfyUI keeps it: `comfy.utils` now, `comfy.model_patcher` before.
    seed = getattr(comfy.utils, "string_to_seed", None) or getattr(comfy.model_patcher, "string_to_seed")
    try:
        import comfy.float

        def rounded(out, dtype):
            return comfy.float.stochastic_rounding(out, dtype, seed=seed(key))
    except ImportError:
        def rounded(out, dtype):
            return out.to(dtype)

    def apply(weight):
        return rounded(comfy.lora.calculate_weight(patches, weight.to(torch.float32, copy=True), key), weight.dtype)

    return apply


def dynamic_vram_enabled() -> bool:
    """Whether ComfyUI's dynamic VRAM (comfy-aimdo) is on: it then decides at every forward where
    each weight is, which would undo a plan."""
    try:
        import comfy.memory_management as memory_management
    except ImportError:
        return False
    return bool(getattr(memory_management, "aimdo_enabled", False))


_DYNAMIC_HELP = (
    "ComfyUI's dynamic VRAM (comfy-aimdo) manages {what} and would undo the mgc plan{why}. "
    "Start ComfyUI with --disable-dynamic-vram to use mgc plans."
)


def _is_dynamic(patcher) -> bool:
    is_dynamic = getattr(patcher, "is_dynamic", None)
    return bool(callable(is_dynamic) and is_dynamic())


def _load(loader, *args, **kwargs):
    """Calls one of ComfyUI's loaders, asking for a classic (not dynamic-VRAM) model patcher where
    the loader takes the option: the plan, not comfy-aimdo, then decides where weights live."""
    if dynamic_vram_enabled() and "disable_dynamic" in _parameters(loader):
        kwargs["disable_dynamic"] = True
    return loader(*args, **kwargs)


def _classic(patcher, what):
    """``patcher`` if it is a classic model patcher, else ComfyUI's classic clone of it (its own
    way to opt one model out of dynamic VRAM); a clear stop where that is not possible."""
    if not _is_dynamic(patcher):
        return patcher
    try:
        classic = patcher.clone(disable_dynamic=True)
    except (TypeError, RuntimeError, AttributeError) as e:
        raise core.PlanError(_DYNAMIC_HELP.format(what=what, why=f", and this ComfyUI cannot opt it out ({e})")) from None
    if _is_dynamic(classic):
        raise core.PlanError(_DYNAMIC_HELP.format(what=what, why=""))
    logging.info("mgc: dynamic VRAM is on; %s is loaded with ComfyUI's classic model patcher so that the plan decides where its weights live", what)
    return classic


PLANS_FOLDER = "mgc_plans"


def register_plans_folder() -> None:
    """Registers ComfyUI's `models/mgc_plans` folder for plans (`.json`) with `folder_paths`
    (nothing outside ComfyUI)."""
    try:
        import folder_paths
    except ImportError:
        return
    if PLANS_FOLDER not in folder_paths.folder_names_and_paths:
        folder_paths.folder_names_and_paths[PLANS_FOLDER] = ([os.path.join(folder_paths.models_dir, PLANS_FOLDER)], {".json"})


def plan_file(name: str) -> str:
    """The plan file ``name`` names: an absolute path, or a file in `models/mgc_plans`."""
    _, folder_paths = _comfy()
    if os.path.isabs(name):
        path = name
    else:
        path = folder_paths.get_full_path(PLANS_FOLDER, name) or os.path.join(folder_paths.get_folder_paths(PLANS_FOLDER)[0], name)
    if not os.path.isfile(path):
        raise core.PlanError(
            f"no such plan file `{name}`: put plans in ComfyUI's `models/{PLANS_FOLDER}` folder "
            "(`mgc compile workflow.toml -o ComfyUI/models/mgc_plans/NAME.plan.json`) or give an absolute path"
        )
    return path


class LoadPlan:
    """Reads a plan written by `mgc compile`: a file of `models/mgc_plans`, or `plan_path` (an
    absolute path) when given."""

    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        register_plans_folder()
        return {
            "required": {"plan_name": (folder_paths.get_filename_list(PLANS_FOLDER),)},
            "optional": {"plan_path": ("STRING", {"default": "", "tooltip": "an absolute path; when set, it is read instead of plan_name"})},
        }

    RETURN_TYPES = (PLAN,)
    FUNCTION = "load"
    CATEGORY = "mgc"

    @classmethod
    def VALIDATE_INPUTS(cls, plan_name="", plan_path=""):
        # `plan_path` decides when set, so `plan_name` need not be one of the listed files.
        return True

    @classmethod
    def IS_CHANGED(cls, plan_name="", plan_path=""):
        """The plan file's content hash: an edited plan is read again."""
        try:
            with open(plan_file(plan_path or plan_name), "rb") as f:
                return hashlib.sha256(f.read()).hexdigest()
        except (core.PlanError, OSError):
            return float("nan")  # never equal: the node runs and says what is wrong

    def load(self, plan_name="", plan_path=""):
        return (core.load_plan(plan_file(plan_path or plan_name)),)


def _parameters(function):
    import inspect

    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


def _gguf_node(name):
    """A node class of ComfyUI-GGUF, as ComfyUI registered it."""
    import nodes as comfy_nodes

    node = comfy_nodes.NODE_CLASS_MAPPINGS.get(name)
    if node is None:
        raise core.PlanError(
            f"ComfyUI-GGUF's `{name}` is not loaded: install ComfyUI-GGUF into ComfyUI/custom_nodes and restart ComfyUI"
        )
    return node


def gguf_installed() -> bool:
    """Whether ComfyUI-GGUF is in ComfyUI's custom nodes (loaded already, or to be loaded)."""
    try:
        import nodes as comfy_nodes
        import folder_paths
    except ImportError:
        return False
    if "UnetLoaderGGUF" in getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {}):
        return True
    for base in folder_paths.get_folder_paths("custom_nodes"):
        try:
            entries = os.listdir(base)
        except OSError:
            continue
        for entry in entries:
            if "gguf" in entry.lower() and os.path.isfile(os.path.join(base, entry, "nodes.py")):
                return True
    return False


class CompileAllocation:
    """Compiles a one-model workflow made from a model file and an allocation string (the `mgc` package)."""

    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return {
            "required": {
                "unet_name": (folder_paths.get_filename_list("diffusion_models"),),
                "compute": ("STRING", {"default": "cuda:0"}),
                "allocation": ("STRING", {"default": "cuda:0,8gb;cpu,*"}),
            }
        }

    RETURN_TYPES = (PLAN,)
    FUNCTION = "compile"
    CATEGORY = "mgc"

    def compile(self, unet_name, compute, allocation):
        _, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("diffusion_models", unet_name)
        return (compile_allocation(path, compute, allocation),)


def compile_allocation(path: str, compute: str, allocation: str) -> dict:
    """A plan for one model file from an allocation string, compiled in-process by the `mgc`
    package; mgc's own diagnostic when the string is wrong."""
    mgc = _mgc()
    workflow = (
        "[[model]]\nname = \"model\"\n"
        f"file = {_toml_string(os.path.abspath(path))}\ncompute = {_toml_string(compute)}\n"
        f"allocation = {_toml_string(allocation)}\n"
    )
    try:
        plan = mgc.compile(workflow)
    except mgc.MgcError as e:
        raise core.PlanError(str(e)) from None
    return core.load_plan(json.dumps(plan))


NODE_CLASS_MAPPINGS = {
    "MGCLoadPlan": LoadPlan,
    "MGCCompileAllocation": CompileAllocation,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "MGCLoadPlan": "Load mgc plan",
    "MGCCompileAllocation": "Compile allocation (mgc)",
}
