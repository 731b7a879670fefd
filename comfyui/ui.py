"""What the node pack shows in ComfyUI's UI: a plan as ``mgc explain`` prints it (memory per
device, placement per model, the predicted step) and its picture (memory bars, one step's
timeline), drawn to PNG by the ``mgc`` package, before anything is sampled.

``plan_preview`` gives the ``ui`` payload of a node; *Explain plan (mgc)* shows a plan with it,
and a loader may return ``{"ui": plan_preview(plan, [its model]), "result": ...}``.
"""

from __future__ import annotations

import hashlib
import os
from typing import Iterable, List, Optional

from . import core
from .allocation import _mgc
from .nodes import PLAN


def plan_preview(plan: dict, models: Optional[Iterable[str]] = None) -> dict:
    """ComfyUI's ``ui`` payload that shows ``plan``: its table as text and its picture as a PNG in
    ComfyUI's temp folder (an ``images`` entry, as ComfyUI's own previews give). ``models``
    names the models whose sections the table keeps (a loader's own); the device table and the
    picture are the whole plan's, since the models share the devices."""
    mgc = _mgc()
    try:
        explained = mgc.explain(plan)
        png = mgc.render_png(explained["svg"])
    except mgc.MgcError as e:
        raise core.PlanError(str(e)) from None
    table = explained["table"] if models is None else only_models(explained["table"], list(models))
    return {"text": (table,), "images": [{"filename": save_temp(png), "subfolder": "", "type": "temp"}]}


def only_models(table: str, names: List[str]) -> str:
    """``mgc explain``'s text with the sections of the models not in ``names`` left out. Its
    sections are separated by a blank line; a model's begins with ``model `NAME` (``."""
    sections = table.rstrip("\n").split("\n\n")
    shown = [s[len("model `"):].split("` (", 1)[0] for s in sections if s.startswith("model `")]
    unknown = [n for n in names if n not in shown]
    if unknown:
        raise core.PlanError(f"the plan has no model `{unknown[0]}`; it has {', '.join(shown)}")
    kept = [s for s in sections if not s.startswith("model `") or s[len("model `"):].split("` (", 1)[0] in names]
    return "\n\n".join(kept) + "\n"


def save_temp(png: bytes) -> str:
    """Saves a PNG in ComfyUI's temp folder (emptied when ComfyUI starts) under a name made from
    its bytes, so that the same picture is one file; returns the file's name."""
    import folder_paths

    folder = folder_paths.get_temp_directory()
    os.makedirs(folder, exist_ok=True)
    name = f"mgc_plan_{hashlib.sha256(png).hexdigest()[:16]}.png"
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        partial = f"{path}.{os.getpid()}.partial"
        with open(partial, "wb") as f:
            f.write(png)
        os.replace(partial, path)
    return name


class ExplainPlan:
    """Shows a plan in the node before anything runs: its table and its picture. The plan passes
    through, so the node can sit between *Load mgc plan* and the loaders."""

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"plan": (PLAN,)}}

    RETURN_TYPES = (PLAN,)
    FUNCTION = "explain"
    OUTPUT_NODE = True
    CATEGORY = "mgc"
    DESCRIPTION = "Shows the plan: memory per device, where each model's layers live, the predicted step, and its picture."

    def explain(self, plan):
        return {"ui": plan_preview(plan), "result": (plan,)}


UI_CLASS_MAPPINGS = {"MGCExplainPlan": ExplainPlan}
UI_DISPLAY_NAME_MAPPINGS = {"MGCExplainPlan": "Explain plan (mgc)"}
