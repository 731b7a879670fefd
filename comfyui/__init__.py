"""mgc for ComfyUI: load models with the plans `mgc compile` writes, or with DisTorch2's inputs."""

from .loaders import LOADER_CLASS_MAPPINGS, LOADER_DISPLAY_NAME_MAPPINGS
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, register_plans_folder

register_plans_folder()
NODE_CLASS_MAPPINGS = {**NODE_CLASS_MAPPINGS, **LOADER_CLASS_MAPPINGS}
NODE_DISPLAY_NAME_MAPPINGS = {**NODE_DISPLAY_NAME_MAPPINGS, **LOADER_DISPLAY_NAME_MAPPINGS}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
