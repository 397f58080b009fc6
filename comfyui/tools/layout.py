"""Where each node of the UI-format example workflows sits, and how much room it gets.

    python comfyui/tools/layout.py        rewrite pos/size in example_workflows/*.json from LAYOUTS

`ui_workflows.py` applies the same layout to what ComfyUI's frontend serialises, so both ways
give the same files. The room is planned for what the frontend shows at run time, not just for
the widgets: a node's title bar sits above its `pos`; Load Image, Preview Image and Save Image
draw their picture below their widgets (the frontend grows them to at least IMAGE_ROOM for it);
the SISO nodes gain a status box under their widgets after a run (STATUS_ROOM). The test
`tests/comfyui/test_comfyui_pack.py` checks that no two nodes overlap with all of that counted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
WORKFLOWS = PACK / "example_workflows"

TITLE_HEIGHT = 30  # LiteGraph.NODE_TITLE_HEIGHT
IMAGE_ROOM = 220  # below the widgets, for the picture of an image node
IMAGE_NODES = {"LoadImage": 102, "PreviewImage": 26, "SaveImage": 58}  # type -> height of its widgets
STATUS_ROOM = {"SISOLoRAGenerator": 200, "SISOSubjectEdit": 200, "SISOLoadLoRA": 120}  # the status box the pack's JS adds
GAP = 40

# workflow name -> node id -> (x, y, width, height); columns of nodes, top to bottom, in the
# order the data flows
_GEN = {
    1: (60, 90, 300, 340),  # Load Image (the photo preview needs the height)
    2: (60, 500, 300, 58),  # Run SISO?
    3: (420, 90, 320, 700),  # SISO LoRA Generator (+ its status box below)
    5: (800, 90, 420, 88),  # lora_path
    4: (800, 248, 420, 88),  # status
    6: (800, 406, 300, 300),  # best image
}
_RENDER = {
    10: (60, 628, 300, 98),  # checkpoint
    14: (60, 796, 300, 106),  # empty latent
    16: (60, 972, 300, 58),  # sampler select
    11: (800, 776, 300, 122),  # SISO Load LoRA (+ its status box)
    15: (1280, 90, 400, 82),  # SD Turbo scheduler
    12: (1280, 242, 400, 120),  # new prompt
    13: (1280, 432, 400, 120),  # negative
    20: (1280, 622, 400, 88),  # lora_info
    17: (1740, 90, 300, 230),  # SamplerCustom
    18: (1740, 390, 300, 46),  # VAE decode
    19: (1740, 506, 300, 300),  # Save Image
}
_FLUX_RENDER = {
    10: (60, 628, 300, 82),  # UNETLoader (FLUX.1-schnell)
    21: (60, 780, 300, 106),  # DualCLIPLoader (CLIP-L + T5-XXL, type flux)
    22: (60, 956, 300, 58),  # VAE
    14: (60, 1084, 300, 106),  # empty SD3/FLUX latent
    11: (800, 776, 300, 122),  # SISO Load LoRA (+ its status box)
    12: (1280, 90, 400, 120),  # new prompt
    13: (1280, 280, 400, 120),  # negative
    20: (1280, 470, 400, 88),  # lora_info
    17: (1740, 90, 300, 262),  # KSampler
    18: (1740, 422, 300, 46),  # VAE decode
    19: (1740, 538, 300, 300),  # Save Image
}
_EDIT = {
    1: (60, 90, 300, 340),  # Load Image: the scene (its mask editor paints the region)
    2: (60, 500, 300, 340),  # Load Image: the subject
    3: (60, 910, 300, 58),  # Run SISO?
    4: (420, 90, 320, 700),  # SISO Subject Edit (+ its status box below)
    5: (800, 90, 300, 300),  # edited scene
    6: (800, 460, 420, 88),  # status
}
LAYOUTS: dict[str, dict[int, tuple[float, float, float, float]]] = {
    "siso_generate_lora": dict(_GEN),
    "siso_generate_and_render": {**_GEN, **_RENDER},
    "siso_subject_edit": dict(_EDIT),
    "siso_flux_generate_and_render": {**_GEN, **_FLUX_RENDER},
    "siso_inference_with_lora": {
        9: (60, 90, 420, 58),  # LoRA path
        10: (60, 218, 420, 98),
        14: (60, 386, 420, 106),
        16: (60, 562, 420, 58),
        11: (540, 90, 300, 122),
        20: (540, 402, 300, 88),
        15: (900, 90, 400, 82),
        12: (900, 242, 400, 120),
        13: (900, 432, 400, 120),
        17: (1360, 90, 300, 230),
        18: (1360, 390, 300, 46),
        19: (1360, 506, 300, 300),
    },
}


def apply(graph: dict, name: str) -> dict:
    """Set pos/size of every node of a serialised (UI-format) workflow from LAYOUTS[name]."""
    layout = LAYOUTS[name]
    missing = [node["id"] for node in graph["nodes"] if node["id"] not in layout]
    if missing:
        raise KeyError(f"{name}: no layout for nodes {missing}: add them to LAYOUTS in {__file__}")
    for node in graph["nodes"]:
        x, y, width, height = layout[node["id"]]
        node["pos"] = [x, y]
        node["size"] = [max(width, node.get("size", [0, 0])[0]), max(height, node.get("size", [0, 0])[1])]
    return graph


def footprint(node: dict) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) a node covers on the canvas at run time: title bar, picture, status box."""
    x, y = node["pos"]
    width, height = node["size"]
    kind = node["type"]
    if kind in IMAGE_NODES:
        height = max(height, IMAGE_NODES[kind] + IMAGE_ROOM)
    height += STATUS_ROOM.get(kind, 0)
    return (x, y - TITLE_HEIGHT, x + width, y + height)


def main() -> int:
    for name in LAYOUTS:
        path = WORKFLOWS / f"{name}.json"
        graph = apply(json.loads(path.read_text()), name)
        path.write_text(json.dumps(graph, indent=2) + "\n")
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
