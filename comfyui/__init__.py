"""mgc for ComfyUI: load models with the plans `mgc compile` writes, or with DisTorch2's inputs."""

from . import florence2, wanvideo
from .loaders import LOADER_CLASS_MAPPINGS, LOADER_DISPLAY_NAME_MAPPINGS
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_plans_folder
from .ui import UI_CLASS_MAPPINGS, UI_DISPLAY_NAME_MAPPINGS

register_plans_folder()
NODE_CLASS_MAPPINGS = {**NODE_CLASS_MAPPINGS, **LOADER_CLASS_MAPPINGS, **UI_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {**NODE_DISPLAY_NAME_MAPPINGS, **LOADER_DISPLAY_NAME_MAPPINGS, **UI_DISPLAY_NAME_MAPPINGS}

# Nodes for other packs, registered when ComfyUI has them.
if wanvideo.installed():
    _classes, _names = wanvideo.node_mappings()
    NODE_CLASS_MAPPINGS.update(_classes)
    NODE_DISPLAY_NAME_MAPPINGS.update(_names)
if florence2.installed():
    NODE_CLASS_MAPPINGS.update(florence2.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(florence2.NODE_DISPLAY_NAME_MAPPINGS)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
