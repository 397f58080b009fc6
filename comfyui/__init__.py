"""SISO for ComfyUI: "SISO LoRA Generator" (one photo -> a LoRA), "SISO Subject Edit" (a subject into a scene photo) and "SISO Load LoRA".

Install by symlinking or copying this folder into ComfyUI/custom_nodes/ (see README.md).
"""

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

WEB_DIRECTORY = "./js"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
