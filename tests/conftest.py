"""Shared fixtures: the tiny offline models (random weights, written once per session), a photo,
and the runs, sweeps and notebook executions several test files read.

Tests marked `slow` start something heavy: a Jupyter kernel (papermill), a Ray cluster, a browser,
a pip venv, a ComfyUI server, or a Python subprocess that imports torch. `make test-fast` runs
everything else (`pytest -m "not slow"`); `make test` and CI run all. A test that uses one of
the fixtures in SLOW_FIXTURES (they run notebooks or sweeps) is marked slow here, so the marker
cannot be forgotten on it.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # helper modules: cli_cases, nb_helpers, graph_safety

from nb_helpers import FAMILY_ITERATIONS, ITERATIONS, TIMINGS, assets_dir  # noqa: E402

from siso_lib.offline.tiny_models import FAMILIES, write_test_assets  # noqa: E402

# one torch thread per pytest-xdist worker (workers share the cores; more threads wait on each other)
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else min(2, os.cpu_count() or 1))
SUBJECT = REPO / "data" / "cat.png"
# fixtures that execute notebooks or sweeps (kernels): a test using one is slow
SLOW_FIXTURES = {"demo_run", "family_run", "small_sweep", "eval_sweep", "edit_notebook_run", "ray_cluster", "comfy_server"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, str]:
    """Every tiny offline model (SDXL, FLUX, Sana, DINO, IR, CLIP, Grounding-DINO, SAM), written once."""
    return write_test_assets(tmp_path_factory.mktemp("assets"), "tiny", families=FAMILIES)


@pytest.fixture(scope="session")
def family_assets(tiny_assets) -> dict[str, str]:
    """The same models, for tests that read them by family."""
    return tiny_assets


@pytest.fixture(scope="session")
def subject_path() -> str:
    return str(SUBJECT)


@pytest.fixture
def tiny_config(tiny_assets):
    from siso_lib.offline import offline_config

    def make(**overrides):
        return offline_config(tiny_assets, **overrides)

    return make


@pytest.fixture(scope="session")
def finished_run(tiny_assets, subject_path, tmp_path_factory):
    from siso_lib.offline import offline_config
    from siso_lib.runner import run_siso

    folder = tmp_path_factory.mktemp("runs") / "cat"
    config = offline_config(tiny_assets, num_train_epochs=6, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=folder)
    assert outcome.result.completed and outcome.artifacts.lora_path
    return folder


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run, for tests that write into it."""
    return shutil.copytree(finished_run, tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_judges(tiny_assets):
    from siso_lib.evaluation import Judges

    return Judges.from_names(tiny_assets["dino"], tiny_assets["clip"], None, tiny_assets["ir"], device="cpu")


@pytest.fixture(scope="session")
def demo_run(tiny_assets, tmp_path_factory):
    """`make demo`'s code path: 01_generate_lora.ipynb headless with papermill, offline models."""
    from siso_lib.cli.demo import main as demo_main

    out = tmp_path_factory.mktemp("demo") / "run"
    started = time.perf_counter()
    code = demo_main(["--notebook",
        "--assets_dir", assets_dir(tiny_assets), "--output_dir", str(out), "-p", f"num_train_epochs={ITERATIONS}",
    ])
    TIMINGS["01_generate_lora (papermill)"] = time.perf_counter() - started
    return {"code": code, "dir": out, "notebook": out / "01_generate_lora.ipynb"}


@pytest.fixture(scope="session")
def family_run(family_assets, tmp_path_factory):
    """`family_run("flux")`: 01_generate_lora.ipynb headless (make demo's code path) with that
    model_family on the tiny models, FAMILY_ITERATIONS iterations; run once per family and kept."""
    from siso_lib.cli.demo import main as demo_main

    runs: dict[str, dict] = {}

    def run(family: str) -> dict:
        if family not in runs:
            out = tmp_path_factory.mktemp(f"demo-{family}") / "run"
            started = time.perf_counter()
            code = demo_main(["--notebook",
                "--assets_dir", assets_dir(family_assets), "--output_dir", str(out),
                "-p", f"model_family={family}", "-p", f"num_train_epochs={FAMILY_ITERATIONS}",
            ])
            TIMINGS[f"01_generate_lora model_family={family} (papermill, {FAMILY_ITERATIONS} iterations)"] = time.perf_counter() - started
            runs[family] = {"code": code, "dir": out, "notebook": out / "01_generate_lora.ipynb"}
        return runs[family]

    return run


@pytest.fixture(scope="session")
def small_sweep(tiny_assets, tmp_path_factory):
    """A 2x2 sweep (learning_rate x rank) of 01_generate_lora.ipynb on the tiny models."""
    from siso_lib.sweeps.spec import build_sweep
    from siso_lib.sweeps.local import run_sweep

    root = tmp_path_factory.mktemp("sweeps")
    sweep = build_sweep(
        name="lr-rank",
        grid={"learning_rate": [1e-3, 5e-3], "rank": [2, 4]},
        fixed={"models": "offline", "assets_dir": assets_dir(tiny_assets), "num_train_epochs": 2},
        root=root,
    )
    lines: list[str] = []
    started = time.perf_counter()
    summary = run_sweep(sweep, echo=lines.append)
    TIMINGS["sweep 2x2 (first invocation)"] = time.perf_counter() - started
    return {"sweep": sweep, "summary": summary, "lines": lines}


EVAL_PROMPTS = ("a photo of a {class}", "a {class} on the beach")


@pytest.fixture(scope="session")
def eval_sweep(tiny_assets, tmp_path_factory):
    """A 2-run sweep (rank) with --eval (2 prompts x 2 seeds), run in this process with the judges'
    network loads and the evaluations counted (the notebooks run in kernels; the scoring here)."""
    from siso_lib.evaluation import Evaluator, Judges
    from siso_lib.sweeps.spec import build_sweep, eval_options
    from siso_lib.sweeps.local import run_sweep

    root = tmp_path_factory.mktemp("eval-sweeps")
    prompts = root / "prompts.txt"
    prompts.write_text("\n".join(EVAL_PROMPTS) + "\n")
    sweep = build_sweep(
        name="rank-eval", grid={"rank": [2, 4]},
        fixed={"models": "offline", "assets_dir": assets_dir(tiny_assets), "num_train_epochs": 2},
        root=root, evaluation=eval_options(2, str(prompts)),
    )
    calls: dict[str, list] = {"load_dino": [], "load_clip": [], "evaluate": []}

    def counted(name, original):
        def wrapper(self, *args, **kwargs):
            calls[name].append(id(self))
            return original(self, *args, **kwargs)
        return wrapper

    lines: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Judges, "load_dino", counted("load_dino", Judges.load_dino))
        patch.setattr(Judges, "load_clip", counted("load_clip", Judges.load_clip))
        patch.setattr(Evaluator, "evaluate", counted("evaluate", Evaluator.evaluate))
        started = time.perf_counter()
        summary = run_sweep(sweep, echo=lines.append)
        TIMINGS["sweep with --eval (2 runs, 2 prompts x 2 seeds)"] = time.perf_counter() - started
    return {"sweep": sweep, "summary": summary, "lines": lines, "calls": calls, "prompts": prompts}


def pytest_terminal_summary(terminalreporter):
    if TIMINGS:
        terminalreporter.write_sep("-", "notebook timings")
        for name, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {seconds:.1f} s")
