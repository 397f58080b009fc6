"""The thumbnails of the example workflows in ComfyUI's template browser: example_workflows/<name>.jpg.

    python comfyui/tools/make_thumbnails.py          (re)write one JPEG per UI-format workflow
    python comfyui/tools/make_thumbnails.py --check  only report which are missing or out of date

ComfyUI (0.3.64, frontend 1.27) lists a pack's templates from example_workflows/*.json and asks
for each one's picture at /api/workflow_templates/<pack folder>/<name>.jpg, which it serves from
the same folder; without the file the browser shows a broken image. The picture is the graph
itself, drawn from the workflow file (node boxes where the file places them, their titles, the
links between them), so it needs no browser and changes only when the workflow does. Pillow
only; run it with any Python that has it (siso-lab's or ComfyUI's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PACK = Path(__file__).resolve().parents[1]
WORKFLOWS = PACK / "example_workflows"
SIZE = (640, 400)  # the template cards show a 4:3-ish picture; this keeps the text readable
MARGIN = 24
HEADER = 44
TITLE_HEIGHT = 30  # LiteGraph's node title bar, above a node's pos
BACKGROUND, NODE, SISO_NODE, TEXT, LINK = (32, 32, 36), (58, 58, 64), (46, 84, 132), (235, 235, 235), (150, 150, 160)
LINK_COLOURS = {"IMAGE": (100, 180, 220), "MASK": (120, 200, 120), "MODEL": (180, 150, 220), "CLIP": (230, 200, 90),
                "STRING": (170, 220, 170), "LATENT": (230, 140, 170), "VAE": (230, 120, 120)}
TITLES = {"SISOLoRAGenerator": "SISO LoRA Generator", "SISOSubjectEdit": "SISO Subject Edit", "SISOLoadLoRA": "SISO Load LoRA"}


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()


def _label(node: dict) -> str:
    return node.get("title") or TITLES.get(node["type"], node["type"])


def _heading(name: str) -> str:
    return name.replace("siso_", "SISO ").replace("_", " ").replace("lora", "LoRA").replace("flux", "FLUX")


def thumbnail(workflow: dict, name: str):
    """The picture of one UI-format workflow (a PIL image of SIZE)."""
    from PIL import Image, ImageDraw

    nodes = {node["id"]: node for node in workflow["nodes"]}
    left = min(node["pos"][0] for node in nodes.values())
    top = min(node["pos"][1] - TITLE_HEIGHT for node in nodes.values())
    right = max(node["pos"][0] + node["size"][0] for node in nodes.values())
    bottom = max(node["pos"][1] + node["size"][1] for node in nodes.values())
    width, height = SIZE
    scale = min((width - 2 * MARGIN) / (right - left), (height - HEADER - MARGIN) / (bottom - top))

    def at(x: float, y: float) -> tuple[float, float]:
        return MARGIN + (x - left) * scale, HEADER + (y - top) * scale

    picture = Image.new("RGB", SIZE, BACKGROUND)
    draw = ImageDraw.Draw(picture)
    draw.text((MARGIN, 12), _heading(name), fill=TEXT, font=_font(22))
    for link in workflow.get("links", []):
        _, source, _, target, _, kind = link[:6]
        if source not in nodes or target not in nodes:
            continue
        a, b = nodes[source], nodes[target]
        start = at(a["pos"][0] + a["size"][0], a["pos"][1] + 10)
        end = at(b["pos"][0], b["pos"][1] + 10)
        draw.line([start, end], fill=LINK_COLOURS.get(str(kind), LINK), width=2)
    font = _font(max(10, min(16, int(13 * scale / 0.45))))
    for node in nodes.values():
        x0, y0 = at(node["pos"][0], node["pos"][1] - TITLE_HEIGHT)
        x1, y1 = at(node["pos"][0] + node["size"][0], node["pos"][1] + node["size"][1])
        siso = node["type"] in TITLES
        draw.rounded_rectangle([x0, y0, x1, y1], radius=6, fill=SISO_NODE if siso else NODE, outline=(90, 90, 100))
        draw.rectangle([x0, y0, x1, y0 + TITLE_HEIGHT * scale], fill=(30, 60, 100) if siso else (44, 44, 50))
        label = _label(node)
        while label and draw.textlength(label, font=font) > x1 - x0 - 8:
            label = label[:-2] + "…" if len(label) > 2 else ""
        draw.text((x0 + 5, y0 + 3), label, fill=TEXT, font=font)
    return picture


def outputs() -> dict[Path, object]:
    """Each thumbnail file and its picture."""
    found = {}
    for path in sorted(WORKFLOWS.glob("*.json")):
        found[path.with_suffix(".jpg")] = thumbnail(json.loads(path.read_text(encoding="utf-8")), path.stem)
    return found


def same_picture(path: Path, picture, tolerance: float = 4.0) -> bool:
    """True when the JPEG at `path` shows `picture` (mean difference below `tolerance` levels: JPEG is lossy)."""
    from PIL import Image, ImageChops, ImageStat

    try:
        with Image.open(path) as existing:
            if existing.size != picture.size:
                return False
            difference = ImageChops.difference(existing.convert("RGB"), picture)
    except OSError:
        return False
    return max(ImageStat.Stat(difference).mean) < tolerance


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report missing or outdated thumbnails")
    args = parser.parse_args(argv)
    stale = [path for path, picture in outputs().items() if not same_picture(path, picture)]
    if args.check:
        for path in stale:
            print(f"{path.relative_to(PACK.parent)} is missing or out of date: run python comfyui/tools/make_thumbnails.py")
        return 1 if stale else 0
    for path, picture in outputs().items():
        picture.save(path, format="JPEG", quality=88)
        print(f"wrote {path.relative_to(PACK.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
