"""Helpers shared by the notebook tests (imported as a plain module: tests/ is not a package)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
# few iterations: the tests check what the notebooks produce, not how well SISO converges
ITERATIONS = 3
FAMILY_ITERATIONS = 2  # the FLUX and Sana runs (the tiny Sana draws at 512 px inside: ~1 s per iteration)
TIMINGS: dict[str, float] = {}


def assets_dir(tiny_assets: dict[str, str]) -> str:
    return str(Path(tiny_assets["sdxl"]).parent)


def outputs_of(notebook_path: str | Path) -> list[dict]:
    nb = nbformat.read(str(notebook_path), as_version=4)
    return [output for cell in nb.cells if cell.cell_type == "code" for output in cell.get("outputs", [])]


def png_outputs(notebook_path: str | Path) -> list[bytes]:
    return [base64.b64decode(o["data"]["image/png"]) for o in outputs_of(notebook_path) if "image/png" in o.get("data", {})]


def assert_clean_report(notebook_path: str | Path, min_images: int) -> None:
    """Executed headless: no error output, no widget (dead in a saved notebook), real PNG figures."""
    outputs = outputs_of(notebook_path)
    errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o["output_type"] == "error"]
    assert not errors, errors
    widgets = [o for o in outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert not widgets, "a headless notebook must not contain widgets (they show as 'Error displaying widget')"
    images = png_outputs(notebook_path)
    assert len(images) >= min_images, f"{len(images)} image/png outputs in {notebook_path}, expected >= {min_images}"
    for image in images:
        assert image.startswith(b"\x89PNG\r\n\x1a\n") and len(image) > 1000


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())
