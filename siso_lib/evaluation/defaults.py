"""Which judges score a run, decided without torch (the command line checks input first).

"auto" means DreamBench's judges, DINO ViT-S/16 (`vit_small_patch16_224.dino`) and CLIP ViT-B/32
with OpenAI's weights, except for a run made with the offline tiny test models: those are judged
by the tiny random-weight DINO and CLIP written beside them (ASSETS.json says "tiny"), so that
siso-eval, notebook 02 and `siso-sweep --eval` work with no download. IR always uses the run's
own checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import DEFAULT_DETECTOR  # noqa: F401 (siso-eval's --detector_model default)

DEFAULT_EVAL_DINO = "vit_small_patch16_224.dino"
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "openai"
AUTO = "auto"


def offline_judges(base_model: str) -> dict[str, str] | None:
    """The tiny test assets beside a tiny offline base model (their "dino" and "clip"), else None.

    The offline models' folder has an ASSETS.json manifest (offline/tiny_models.py writes it)
    that names each model; "size": "tiny" marks the random-weight test models.
    """
    manifest = Path(base_model).parent / "ASSETS.json"
    try:
        assets = json.loads(manifest.read_text()) if manifest.is_file() else {}
    except (OSError, ValueError):
        return None
    if not isinstance(assets, dict) or assets.get("size") != "tiny" or not assets.get("dino") or not assets.get("clip"):
        return None
    return assets


def judge_names(base_model: str, dino: str = AUTO, clip: str = AUTO) -> tuple[str, str, bool]:
    """(DINO name, CLIP name, whether they are the tiny offline judges) for a run of `base_model`."""
    tiny = offline_judges(base_model) if AUTO in (dino, clip) else None
    dino = dino if dino != AUTO else (tiny["dino"] if tiny else DEFAULT_EVAL_DINO)
    clip = clip if clip != AUTO else (tiny["clip"] if tiny else DEFAULT_CLIP_MODEL)
    return dino, clip, tiny is not None
