"""The node's widget defaults, read from siso_lib's `SISOConfig` (the one source of truth).

ComfyUI's Python environment usually does not have siso_lib installed (SISO may live in its
own environment, see `python_executable`), so the defaults are found in this order:

1. `siso_lib.config` if ComfyUI's Python can import it;
2. `siso_lib/config.py` of the repository this pack folder lives in (the pack ships inside
   the siso-lab repository; that `siso_lib` is imported under a private name, and its config
   imports nothing heavy);
3. `FALLBACK_DEFAULTS` below, a copy that a test keeps equal to `SISOConfig()`.

Nothing here imports ComfyUI, torch or siso_lib's heavy modules.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

# A copy of SISOConfig()'s values for the fields the node exposes; tests/comfyui checks it.
FALLBACK_DEFAULTS: dict[str, Any] = {
    "prompt": "a photo of a cat",
    "pretrained_model_name_or_path": "stabilityai/sdxl-turbo",
    "dino_model_name": "vit_large_patch14_dinov2.lvd142m",
    "ir_features_path": None,
    "resolution": 512,
    "num_inference_steps": 1,
    "seed": 42,
    "num_train_epochs": 50,
    "learning_rate": 2e-4,
    "rank": 4,
    "train_text_encoder": True,
    "dino_features_weight": 1.0,
    "ir_features_weight": 1.0,
    "early_stopping_threshold_percentage": 3.0,
    "early_stopping_max_count": 7,
    "device": "auto",
    "precision": "auto",
    "mode": "default",
}
FALLBACK_PRECISIONS = ("auto", "fp32", "bf16", "fp16")
FALLBACK_MODES = ("default", "reference", "low-memory")

REPO_CONFIG = Path(__file__).resolve().parent.parent / "siso_lib" / "config.py"
_PRIVATE_NAME = "_siso_comfyui_lib"  # the checkout's siso_lib, imported under a name of its own


def _config_module():
    try:
        import siso_lib.config as module  # noqa: PLC0415

        return module, "siso_lib.config"
    except Exception:  # noqa: BLE001 - not importable here: try the repository file
        pass
    if REPO_CONFIG.is_file():
        # as a package, so that config.py's relative imports (.errors, ...) resolve; siso_lib's
        # __init__ imports nothing heavy
        package_dir = REPO_CONFIG.parent
        try:
            spec = importlib.util.spec_from_file_location(
                _PRIVATE_NAME, package_dir / "__init__.py", submodule_search_locations=[str(package_dir)]
            )
            package = importlib.util.module_from_spec(spec)
            sys.modules[_PRIVATE_NAME] = package
            spec.loader.exec_module(package)
            return importlib.import_module(f"{_PRIVATE_NAME}.{REPO_CONFIG.stem}"), str(REPO_CONFIG)
        except Exception:  # noqa: BLE001
            for name in [n for n in sys.modules if n == _PRIVATE_NAME or n.startswith(_PRIVATE_NAME + ".")]:
                sys.modules.pop(name, None)
    return None, "built-in copy"


def load_defaults() -> tuple[dict[str, Any], tuple[str, ...], tuple[str, ...], str]:
    """(defaults for FALLBACK_DEFAULTS' keys, precisions, modes, where they came from)."""
    module, source = _config_module()
    if module is None:
        return dict(FALLBACK_DEFAULTS), FALLBACK_PRECISIONS, FALLBACK_MODES, source
    config = dataclasses.asdict(module.SISOConfig())
    values = {key: config.get(key, fallback) for key, fallback in FALLBACK_DEFAULTS.items()}
    precisions = tuple(getattr(module, "PRECISIONS", FALLBACK_PRECISIONS))
    modes = tuple(getattr(module, "MODES", FALLBACK_MODES))
    return values, precisions, modes, source


DEFAULTS, PRECISIONS, MODES, DEFAULTS_SOURCE = load_defaults()
