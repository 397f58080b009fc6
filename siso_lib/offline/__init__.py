"""The offline default: tiny random-weight models in the hub's on-disk layout, for the demo, the
tests, the notebooks and the benchmarks (no model hub is reachable on the machines this project
is built and tested on).

Tiny random models prove that the whole pipeline works (generation with gradients, both losses,
the optimiser, early stopping, saving and reloading); they do not draw anything meaningful.
`offline_config()` is `SISOConfig()` with only what the tiny models need changed: their paths,
their 64 px resolution, and a learning rate large enough for a visible change in a few steps.
`ensure_test_assets()` writes them once (default outputs/test-assets/, io/locations.py) and
reuses them; `tiny_models.py` builds them (and the full-size models of the GPU benchmarks).

The tiny Sana renders at its 512 px resolution bin (as SanaPipeline does) and is resized to
64 px, so its iterations are the slowest.

A run of the tiny models on the CPU uses one torch thread (`single_thread_env`, the one place
that decides it): siso-demo, siso-generate and siso-edit on a tiny base model
(`use_single_thread_for`), the kernels siso-sweep starts, and notebook 01 run with
`models="offline"` (papermill, JupyterLab) all follow it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Mapping

from ..cli.common import quiet_libraries
from ..config import MODEL_FAMILIES, SISOConfig
from ..io.locations import test_assets_dir
from .tiny_models import TINY_RESOLUTION, write_test_assets

# changes to SISOConfig() that tiny random models need; everything else stays the default
OFFLINE_OVERRIDES = dict(
    resolution=TINY_RESOLUTION,
    learning_rate=5e-3,
    num_train_epochs=30,
    early_stopping_threshold_percentage=0.05,
    device="cpu",
)


THREADS_ENV = "OMP_NUM_THREADS"


def single_thread_env(models: str | None, device: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment a run of the tiny offline models on the CPU gets: {"OMP_NUM_THREADS": "1"},
    unless OMP_NUM_THREADS is set already (the caller's choice wins); {} for any other run.

    The tiny models gain nothing from more threads, and on a CPU that other jobs use, threads
    waiting on each other made them 3-4x slower (the edit demo 53 s instead of 13 s, a sweep's
    notebook runs 3-4x). `models` is the notebook's parameter ("offline"; "hub" and "auto" are
    not decided here: "auto" is resolved in the kernel, see `use_single_thread`); `device` None
    means the offline default, the CPU.
    """
    environ = os.environ if environ is None else environ
    if THREADS_ENV in environ or models != "offline" or (device or OFFLINE_OVERRIDES["device"]) != "cpu":
        return {}
    return {THREADS_ENV: "1"}


def use_single_thread(models: str | None, device: str | None = None) -> dict[str, str]:
    """`single_thread_env` applied to this process: the variable (torch reads it when it starts)
    and, if torch is already imported, torch.set_num_threads(1). Returns what was set."""
    env = single_thread_env(models, device)
    if env:
        os.environ.update(env)
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(int(env[THREADS_ENV]))
    return env


def is_tiny_model(path: str | os.PathLike | None) -> bool:
    """Whether `path` is one of the tiny offline models: the ASSETS.json beside it says "size": "tiny"."""
    if not path:
        return False
    try:
        manifest = json.loads((Path(path).parent / "ASSETS.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("size") == "tiny"


def use_single_thread_for(config: SISOConfig) -> dict[str, str]:
    """`use_single_thread` for a run of `config` (siso-generate, siso-edit): models "offline" when
    its base model is a tiny offline one, its device resolved ("auto": the first accelerator, else
    the CPU). Returns what was set."""
    if not is_tiny_model(config.pretrained_model_name_or_path):
        return {}
    device = config.device
    if device in (None, "", "auto"):
        from ..devices import pick_device

        device = pick_device("auto").type
    return use_single_thread("offline", str(device).split(":")[0])


def ensure_test_assets(directory: str | Path | None = None, families: tuple[str, ...] = ("sdxl",)) -> dict[str, str]:
    """Write the tiny models under `directory` (default outputs/test-assets) unless they are already
    there; return their paths ("sdxl", "dino", "ir", "clip", "grounding_dino", "sam", and "flux" /
    "sana" when asked for or already written)."""
    directory = Path(directory) if directory is not None else test_assets_dir()
    manifest = directory / "ASSETS.json"
    needed = ("dino", "ir", "clip", "grounding_dino", "sam", "sdxl", *families)
    if manifest.is_file():
        paths = json.loads(manifest.read_text())
        if paths.get("size") == "tiny" and all(paths.get(k) and Path(paths[k]).exists() for k in needed):
            return {k: paths[k] for k in (*needed, *(f for f in MODEL_FAMILIES if paths.get(f))) if k in paths}
    wanted = tuple(dict.fromkeys(("sdxl", *families)))
    quiet_libraries()  # no "Writing model shards" bars from the libraries the first time
    return write_test_assets(directory, "tiny", families=wanted, keep_existing=True)


def offline_config(assets: dict[str, str] | None = None, model_family: str = "sdxl", **overrides) -> SISOConfig:
    """SISOConfig for the tiny offline models of `model_family` (`assets` from `ensure_test_assets`)."""
    assets = assets or ensure_test_assets(families=(model_family,))
    values = dict(
        model_family=model_family,
        pretrained_model_name_or_path=assets[model_family],
        dino_model_name=assets["dino"],
        ir_features_path=assets["ir"],
        **OFFLINE_OVERRIDES,
    )
    values.update(overrides)
    return SISOConfig(**values)
