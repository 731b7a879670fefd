"""ComfyUI nodes that load models with ComfyUI's own loaders and apply an mgc plan to them.

The work is done by ``core`` (plain torch); this layer only finds files and models.
"""

from __future__ import annotations

import json
import logging
import os

from . import core

PLAN = "MGC_PLAN"


def _comfy():
    import comfy.sd  # noqa: F401  (imported here so that the core imports without ComfyUI)
    import comfy.utils  # noqa: F401
    import folder_paths

    return comfy, folder_paths


def _apply(plan, name, role, path, module):
    """Applies the plan's entry for the model in ``path`` to ``module`` and checks that every
    weight is where the plan says."""
    model = core.model_for_file(plan, path, name or None, role)
    prefix = core.key_prefix(module, model)
    applied = core.apply_plan(module, plan, model, key_prefix=prefix)
    core.check_placement(module, model, prefix)
    return applied


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


def _with_plan(inputs):
    """A loader's inputs, and the plan with the name of its model in it."""
    required = dict(inputs["required"])
    required.update({"plan": (PLAN,), "model_name": ("STRING", {"default": ""})})
    return {"required": required}


class LoadPlan:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"plan_path": ("STRING", {"default": "workflow.plan.json"})}}

    RETURN_TYPES = (PLAN,)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, plan_path):
        return (core.load_plan(plan_path),)


class UNETLoaderMGC:
    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return _with_plan({"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),)}})

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, unet_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("diffusion_models", unet_name)
        patcher = _classic(_load(comfy.sd.load_diffusion_model, path), f"`{unet_name}`")
        return (_plan_diffusion(patcher, plan, model_name, path),)


def _plan_diffusion(patcher, plan, model_name, path):
    # Kept on the patcher: what the hooks did (`.stats`), and `.remove()` to undo them.
    patcher.mgc_plan = _apply(plan, model_name, "diffusion", path, patcher.model.diffusion_model)
    _keep_plan_on_load(patcher, patcher.mgc_plan, "diffusion_model.")
    return patcher


def _plan_clip(clip, plan, names, paths):
    """Applies the plan's entry for each text encoder file to the CLIP object's model."""
    if _is_dynamic(clip.patcher):
        clip = clip.clone(disable_dynamic=True) if "disable_dynamic" in _parameters(clip.clone) else clip
        if _is_dynamic(clip.patcher):
            raise core.PlanError(_DYNAMIC_HELP.format(what="this text encoder", why=""))
    module = clip.patcher.model
    clip.mgc_plans = [_apply(plan, name, "text-encoder", path, module) for name, path in zip(names, paths)]
    clip.mgc_plan = clip.mgc_plans[0]
    for applied in clip.mgc_plans:
        _keep_plan_on_load(clip.patcher, applied)
    return clip


def _parameters(function):
    import inspect

    try:
        return inspect.signature(function).parameters
    except (TypeError, ValueError):
        return {}


class CLIPLoaderMGC:
    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return _with_plan({"required": {"clip_name": (folder_paths.get_filename_list("text_encoders"),)}})

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, clip_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        clip = _load(comfy.sd.load_clip, ckpt_paths=[path], embedding_directory=folder_paths.get_folder_paths("embeddings"))
        return (_plan_clip(clip, plan, [model_name], [path]),)


class DualCLIPLoaderMGC:
    """ComfyUI's DualCLIPLoader, then the plan's entry for each of the two files."""

    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        import nodes as comfy_nodes

        base = comfy_nodes.DualCLIPLoader.INPUT_TYPES()["required"]
        return {
            "required": {
                "clip_name1": base["clip_name1"],
                "clip_name2": base["clip_name2"],
                "type": base["type"],
                "plan": (PLAN,),
                "model_name1": ("STRING", {"default": ""}),
                "model_name2": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, clip_name1, clip_name2, type, plan, model_name1="", model_name2=""):
        comfy, folder_paths = _comfy()
        paths = [folder_paths.get_full_path_or_raise("text_encoders", n) for n in (clip_name1, clip_name2)]
        clip_type = getattr(comfy.sd.CLIPType, type.upper(), comfy.sd.CLIPType.STABLE_DIFFUSION)
        clip = _load(comfy.sd.load_clip, ckpt_paths=paths, embedding_directory=folder_paths.get_folder_paths("embeddings"),
                     clip_type=clip_type)
        return (_plan_clip(clip, plan, [model_name1, model_name2], paths),)


class VAELoaderMGC:
    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return _with_plan({"required": {"vae_name": (folder_paths.get_filename_list("vae"),)}})

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, vae_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("vae", vae_name)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(path))
        patcher = getattr(vae, "patcher", None)
        if _is_dynamic(patcher):
            raise core.PlanError(_DYNAMIC_HELP.format(what=f"`{vae_name}`", why=""))
        vae.mgc_plan = _apply(plan, model_name, "vae", path, vae.first_stage_model)
        if patcher is not None:
            _keep_plan_on_load(patcher, vae.mgc_plan)
        return (vae,)


def _gguf_node(name):
    """A node class of ComfyUI-GGUF, as ComfyUI registered it."""
    import nodes as comfy_nodes

    node = comfy_nodes.NODE_CLASS_MAPPINGS.get(name)
    if node is None:
        raise core.PlanError(
            f"ComfyUI-GGUF's `{name}` is not loaded: install ComfyUI-GGUF into ComfyUI/custom_nodes and restart ComfyUI"
        )
    return node


class UnetLoaderGGUFMGC:
    """ComfyUI-GGUF's Unet Loader (GGUF), then the plan: quantized weights move as they are
    stored and are dequantized on the compute device by ComfyUI-GGUF's own layers."""

    @classmethod
    def INPUT_TYPES(cls):
        return _with_plan(_gguf_node("UnetLoaderGGUF").INPUT_TYPES())

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, unet_name, plan, model_name="", **options):
        _, folder_paths = _comfy()
        (patcher,) = _gguf_node("UnetLoaderGGUF")().load_unet(unet_name, **options)
        path = folder_paths.get_full_path_or_raise("unet", unet_name)
        return (_plan_diffusion(_classic(patcher, f"`{unet_name}`"), plan, model_name, path),)


class CLIPLoaderGGUFMGC:
    """ComfyUI-GGUF's CLIPLoader (GGUF), then the plan."""

    @classmethod
    def INPUT_TYPES(cls):
        return _with_plan(_gguf_node("CLIPLoaderGGUF").INPUT_TYPES())

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, clip_name, plan, model_name="", **options):
        _, folder_paths = _comfy()
        (clip,) = _gguf_node("CLIPLoaderGGUF")().load_clip(clip_name, **options)
        path = folder_paths.get_full_path_or_raise("clip", clip_name)
        return (_plan_clip(clip, plan, [model_name], [path]),)


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


def _mgc():
    """The compiler: the `mgc` Python package, built from this repository."""
    try:
        import mgc
    except ImportError:
        raise core.PlanError(
            "the mgc compiler (Python package `mgc`) is not installed: run `pip install -r requirements.txt` "
            "in this node pack's folder with ComfyUI's Python"
        ) from None
    return mgc


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


NODE_CLASS_MAPPINGS = {
    "MGCLoadPlan": LoadPlan,
    "UNETLoaderMGC": UNETLoaderMGC,
    "CLIPLoaderMGC": CLIPLoaderMGC,
    "DualCLIPLoaderMGC": DualCLIPLoaderMGC,
    "VAELoaderMGC": VAELoaderMGC,
    "MGCCompileAllocation": CompileAllocation,
}

# The UI's nodes, in `ui` (which imports this module's PLAN: hence here, after it).
from .ui import ExplainPlan  # noqa: E402

NODE_CLASS_MAPPINGS["MGCExplainPlan"] = ExplainPlan

NODE_DISPLAY_NAME_MAPPINGS = {
    "MGCLoadPlan": "Load mgc plan",
    "UNETLoaderMGC": "UNETLoader (mgc)",
    "CLIPLoaderMGC": "CLIPLoader (mgc)",
    "DualCLIPLoaderMGC": "DualCLIPLoader (mgc)",
    "VAELoaderMGC": "VAELoader (mgc)",
    "MGCCompileAllocation": "Compile allocation (mgc)",
    "MGCExplainPlan": "Explain plan (mgc)",
}

if gguf_installed():
    NODE_CLASS_MAPPINGS.update({"UnetLoaderGGUFMGC": UnetLoaderGGUFMGC, "CLIPLoaderGGUFMGC": CLIPLoaderGGUFMGC})
    NODE_DISPLAY_NAME_MAPPINGS.update({"UnetLoaderGGUFMGC": "UnetLoaderGGUF (mgc)", "CLIPLoaderGGUFMGC": "CLIPLoaderGGUF (mgc)"})
