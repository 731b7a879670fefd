"""Other node packs this pack adds nodes for (ComfyUI-WanVideoWrapper, ComfyUI-Florence2): found
the way ComfyUI loads them, and their node classes as ComfyUI registered them."""

from __future__ import annotations

import contextlib
import inspect
import os
import re

from . import core


def installed(node_name: str) -> bool:
    """Whether a node pack defining the node ``node_name`` is in ComfyUI: registered already, or
    in one of ComfyUI's custom-node folders (a package whose modules define the class), to be
    loaded after this one. The folder's name does not matter: packs are renamed on install."""
    return node_name in defined([node_name], node_name)


def defined(node_names, marker: str) -> set:
    """Which of ``node_names`` the pack that defines the node ``marker`` has: as ComfyUI
    registered them, or, before ComfyUI loaded the pack, as its source defines them."""
    try:
        import folder_paths
        import nodes as comfy_nodes
    except ImportError:
        return set()
    mappings = getattr(comfy_nodes, "NODE_CLASS_MAPPINGS", {})
    if marker in mappings:
        return {n for n in node_names if n in mappings}
    for base in folder_paths.get_folder_paths("custom_nodes"):
        try:
            entries = sorted(os.listdir(base))
        except OSError:
            continue
        for entry in entries:
            if entry.endswith(".disabled") or not os.path.isfile(os.path.join(base, entry, "__init__.py")):
                continue
            source = b"".join(_read(os.path.join(base, entry, f)) for f in ("nodes.py", "__init__.py"))
            if _defines(source, marker):
                return {n for n in node_names if _defines(source, n)}
    return set()


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def _defines(source: bytes, name: str) -> bool:
    return re.search(rb"^class\s+" + re.escape(name.encode()) + rb"\b", source, re.MULTILINE) is not None


def node(name: str, pack: str):
    """The node class ``name`` as ComfyUI registered it; a clear stop when its pack is not loaded."""
    import nodes as comfy_nodes

    found = comfy_nodes.NODE_CLASS_MAPPINGS.get(name)
    if found is None:
        raise core.PlanError(f"{pack}'s `{name}` is not loaded: install {pack} into ComfyUI/custom_nodes and restart ComfyUI")
    return found


def module_of(name: str, pack: str):
    """The module that defines the node class ``name`` (the pack's `nodes`, as ComfyUI imported it)."""
    return inspect.getmodule(node(name, pack))


@contextlib.contextmanager
def on_device(device: str, *modules):
    """Runs a pack's node with ``device`` as ComfyUI's torch device: the packs ask
    ``comfy.model_management.get_torch_device()`` where to compute, and later versions keep it in a
    module-level ``device`` too (patched in each of ``modules`` that has one)."""
    import torch
    import comfy.model_management as mm

    chosen = torch.device(device)
    saved = mm.get_torch_device
    saved_globals = [(m, m.device) for m in modules if isinstance(getattr(m, "device", None), torch.device)]
    mm.get_torch_device = lambda: chosen
    for m, _ in saved_globals:
        m.device = chosen
    try:
        yield chosen
    finally:
        mm.get_torch_device = saved
        for m, value in saved_globals:
            m.device = value
