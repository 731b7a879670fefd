"""ComfyUI nodes that load models with ComfyUI's own loaders and apply an mgc plan to them.

The work is done by ``core`` (plain torch); this layer only finds files and models.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile

from . import core

PLAN = "MGC_PLAN"


def _comfy():
    import comfy.sd  # noqa: F401  (imported here so that the core imports without ComfyUI)
    import comfy.utils  # noqa: F401
    import folder_paths

    return comfy, folder_paths


def _apply(plan, name, role, path, module, key_prefix=""):
    model = core.model_entry(plan, name or None, role)
    core.check_model_file(plan, model, path)
    return core.apply_plan(module, plan, model, key_prefix=key_prefix)


def _keep_plan_on_load(patcher, applied) -> None:
    """ComfyUI moves a model to its device before sampling; right after, put every weight back
    where the plan says, so that the plan, not ComfyUI's loader, decides placement."""
    from comfy.patcher_extension import CallbacksMP

    patcher.add_callback(CallbacksMP.ON_LOAD, lambda *_args, **_kwargs: applied.rehome())


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
        return {
            "required": {
                "unet_name": (folder_paths.get_filename_list("diffusion_models"),),
                "plan": (PLAN,),
                "model_name": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, unet_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("diffusion_models", unet_name)
        patcher = comfy.sd.load_diffusion_model(path)
        # Kept on the patcher: what the hooks did (`.stats`), and `.remove()` to undo them.
        patcher.mgc_plan = _apply(plan, model_name, "diffusion", path, patcher.model.diffusion_model)
        _keep_plan_on_load(patcher, patcher.mgc_plan)
        return (patcher,)


class CLIPLoaderMGC:
    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return {
            "required": {
                "clip_name": (folder_paths.get_filename_list("text_encoders"),),
                "plan": (PLAN,),
                "model_name": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, clip_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("text_encoders", clip_name)
        clip = comfy.sd.load_clip(ckpt_paths=[path], embedding_directory=folder_paths.get_folder_paths("embeddings"))
        clip.mgc_plan = _apply(plan, model_name, "text-encoder", path, clip.cond_stage_model)
        return (clip,)


class VAELoaderMGC:
    @classmethod
    def INPUT_TYPES(cls):
        _, folder_paths = _comfy()
        return {
            "required": {
                "vae_name": (folder_paths.get_filename_list("vae"),),
                "plan": (PLAN,),
                "model_name": ("STRING", {"default": ""}),
            }
        }

    RETURN_TYPES = ("VAE",)
    FUNCTION = "load"
    CATEGORY = "mgc"

    def load(self, vae_name, plan, model_name):
        comfy, folder_paths = _comfy()
        path = folder_paths.get_full_path_or_raise("vae", vae_name)
        vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(path))
        vae.mgc_plan = _apply(plan, model_name, "vae", path, vae.first_stage_model)
        return (vae,)


class CompileAllocation:
    """Runs `mgc compile` on a one-model workflow made from a model file and an allocation string."""

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


def compile_allocation(path: str, compute: str, allocation: str, mgc: str | None = None) -> dict:
    """A plan for one model file from an allocation string, by the `mgc` binary; mgc's own
    diagnostic when the string is wrong."""
    binary = mgc or shutil.which("mgc")
    if not binary:
        raise core.PlanError("`mgc` is not on PATH: install it (cargo build --release -p mgc) or add it to PATH")
    with tempfile.TemporaryDirectory() as tmp:
        workflow = os.path.join(tmp, "workflow.toml")
        with open(workflow, "w", encoding="utf-8") as f:
            f.write(
                "[[model]]\nname = \"model\"\n"
                f"file = {_toml_string(os.path.abspath(path))}\ncompute = {_toml_string(compute)}\n"
                f"allocation = {_toml_string(allocation)}\n"
            )
        plan_path = os.path.join(tmp, "workflow.plan.json")
        result = subprocess.run([binary, "compile", workflow, "-o", plan_path], capture_output=True, text=True)
        if result.returncode != 0:
            raise core.PlanError(result.stderr.strip() or result.stdout.strip())
        return core.load_plan(plan_path)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


NODE_CLASS_MAPPINGS = {
    "MGCLoadPlan": LoadPlan,
    "UNETLoaderMGC": UNETLoaderMGC,
    "CLIPLoaderMGC": CLIPLoaderMGC,
    "VAELoaderMGC": VAELoaderMGC,
    "MGCCompileAllocation": CompileAllocation,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "MGCLoadPlan": "Load mgc plan",
    "UNETLoaderMGC": "UNETLoader (mgc)",
    "CLIPLoaderMGC": "CLIPLoader (mgc)",
    "VAELoaderMGC": "VAELoader (mgc)",
    "MGCCompileAllocation": "Compile allocation (mgc)",
}
