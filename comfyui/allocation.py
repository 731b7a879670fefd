"""DisTorch's allocation inputs, and the plan they ask for, compiled in-process by the `mgc` package.

ComfyUI-MultiGPU's DisTorch2 loaders take a compute device, an amount of *virtual VRAM* moved off
it onto a donor device, and an expert allocation string that overrides both. The loaders of this
pack take the same inputs, with the same names, defaults and meaning; ``plan_for_files`` turns
them into the allocation string DisTorch itself would build and compiles a plan from the model
files' headers (no weight is read), with the devices mgc detects on this machine.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Iterable, List, Optional, Tuple

from . import core

# DisTorch2's defaults and range for `virtual_vram_gb`.
VIRTUAL_VRAM_DEFAULT = 4.0
VIRTUAL_VRAM_MAX = 128.0


def machine_devices() -> List[str]:
    """The devices of this machine that can hold weights, as torch names them: `cpu` first, then
    every accelerator (the list DisTorch's device inputs offer)."""
    import torch

    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    xpu = getattr(torch, "xpu", None)
    if xpu is not None and xpu.is_available():
        devices += [f"xpu:{i}" for i in range(xpu.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def allocation_inputs() -> dict:
    """The INPUT_TYPES entries of DisTorch2's allocation inputs, with this machine's devices:
    `compute_device`, `virtual_vram_gb`, `donor_device` (also `disk`: the layers stay in the model
    file and are read from it every step) and `expert_mode_allocations`."""
    devices = machine_devices()
    return {
        "compute_device": (devices, {
            "default": devices[1] if len(devices) > 1 else devices[0],
            "tooltip": "where the model computes; streamed layers are copied here when they run",
        }),
        "virtual_vram_gb": ("FLOAT", {
            "default": VIRTUAL_VRAM_DEFAULT, "min": 0.0, "max": VIRTUAL_VRAM_MAX, "step": 0.1,
            "tooltip": "GiB of the model moved off the compute device onto the donor (0: the whole model on the compute device)",
        }),
        "donor_device": (devices + ["disk"], {
            "default": "cpu",
            "tooltip": "who holds the virtual VRAM; `disk` leaves those layers in the model file",
        }),
        "expert_mode_allocations": ("STRING", {
            "multiline": False, "default": "",
            "tooltip": "an allocation string (`cuda:0,4gb;cpu,*`, `cuda:0,25%;cpu,75%`, ...); when set, it decides",
        }),
    }


def allocation_string(compute_device: str, virtual_vram_gb: float, donor_device: str,
                      expert_mode_allocations: str) -> str:
    """The allocation DisTorch2 builds from its inputs, in mgc's language: the expert string when
    there is one (its `#<compute>` tail dropped: `compute_device` is the compute device), else
    `#<compute>;<GiB>;<donor>`, else (no virtual VRAM, or the donor is the compute device itself)
    the whole model on the compute device. An expert string that is only a virtual VRAM part
    (`#cuda:0;4.0;cpu`) is kept whole."""
    expert = (expert_mode_allocations or "").strip()
    if expert:
        # A full virtual VRAM string (`#cuda:0;4.0;cpu`) is kept whole: mgc reads it, and checks
        # that its compute device is `compute_device`.
        return expert.split("#", 1)[0].strip() or expert
    amount = float(virtual_vram_gb)
    if amount <= 0:
        return f"{compute_device},*"
    if donor_device == compute_device:
        logging.info("mgc: the donor `%s` is the compute device: nothing is moved off it, the whole model stays there",
                     donor_device)
        return f"{compute_device},*"
    return f"#{compute_device};{_gib_text(amount)};{donor_device}"


def _gib_text(amount: float) -> str:
    """An amount of GiB as DisTorch's strings write it (`4.0`), to the byte: at most nine decimals,
    never an exponent."""
    text = f"{amount:.9f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


def plan_for_files(
    files: Iterable[Tuple[str, str, str]],
    compute_device: str,
    virtual_vram_gb: float = VIRTUAL_VRAM_DEFAULT,
    donor_device: str = "cpu",
    expert_mode_allocations: str = "",
    hardware: Optional[list] = None,
) -> dict:
    """A plan for model files from DisTorch's allocation inputs, compiled in-process from the
    files' headers (milliseconds, no weight read); the plan as ``core.load_plan`` returns it.

    ``files`` is a list of ``(model_name, path, role)``: the name each model gets in the plan (as
    the loaders' ``model_name``), its file, and its role as the loader applies it (``diffusion``,
    ``text-encoder``, ``vae``, ...; the compiler reads the role from the file's header). Every
    file gets the same allocation, as DisTorch gives each of a loader's files. ``hardware``
    replaces the devices mgc detects (the format of ``mgc.compile``). A wrong string, or an
    amount that does not fit, raises ``core.PlanError`` with mgc's own diagnostic. The plan is
    the compiler's own output: it is not validated again (``core.compiled_plan``).
    """
    files = list(files)
    allocation = allocation_string(compute_device, virtual_vram_gb, donor_device, expert_mode_allocations)
    mgc = _mgc()
    if (expert_mode_allocations or "").strip():
        try:
            mgc.check_allocation(allocation)
        except mgc.MgcError as e:
            raise core.PlanError(f"`expert_mode_allocations` is not an allocation mgc can read:\n{e}") from None
    workflow = "".join(_model_table(name, path, compute_device, allocation) for name, path, _role in files)
    try:
        plan = mgc.compile(workflow, hardware=hardware)
    except mgc.MgcError as e:
        raise core.PlanError(f"the allocation `{allocation}` cannot be planned on this machine:\n{e}") from None
    return core.compiled_plan(plan, f"compiled for `{allocation}`")


def _model_table(name: str, path: str, compute: str, allocation: str) -> str:
    """One `[[model]]` of a workflow; `placement = "tail"` is DisTorch2's rule (layers from the
    model's tail onto the donors)."""
    return (
        f"[[model]]\nname = {_toml_string(name)}\nfile = {_toml_string(os.path.abspath(path))}\n"
        f"compute = {_toml_string(compute)}\nallocation = {_toml_string(allocation)}\nplacement = \"tail\"\n"
    )


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
    return json.dumps(value)
