"""Fixtures for the notebook tests: one tiny-asset folder per session (tests/conftest.py), one
with the tiny FLUX and Sana models too, one headless run of 01_generate_lora.ipynb (what `make
demo` does) per model family and one small sweep, each made once and read by several tests, so
that the suite stays short on a 2-core CPU."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nb_helpers import FAMILY_ITERATIONS, ITERATIONS, TIMINGS, assets_dir  # noqa: E402


@pytest.fixture(scope="session")
def demo_run(tiny_assets, tmp_path_factory):
    """`make demo`'s code path: 01_generate_lora.ipynb headless with papermill, offline models."""
    from siso_lib.notebook_run import demo_main

    out = tmp_path_factory.mktemp("demo") / "run"
    started = time.perf_counter()
    code = demo_main([
        "--assets_dir", assets_dir(tiny_assets), "--output_dir", str(out), "-p", f"num_train_epochs={ITERATIONS}",
    ])
    TIMINGS["01_generate_lora (papermill)"] = time.perf_counter() - started
    return {"code": code, "dir": out, "notebook": out / "01_generate_lora.ipynb"}


@pytest.fixture(scope="session")
def family_assets(tmp_path_factory) -> dict[str, str]:
    """Tiny SDXL, FLUX and Sana models (and DINO, IR) in one folder, as `ensure_test_assets` writes them."""
    from siso_lib.offline import ensure_test_assets

    started = time.perf_counter()
    assets = ensure_test_assets(tmp_path_factory.mktemp("family-assets"), families=("flux", "sana"))
    TIMINGS["tiny SDXL + FLUX + Sana models (written once)"] = time.perf_counter() - started
    return assets


@pytest.fixture(scope="session")
def family_run(family_assets, tmp_path_factory):
    """`family_run("flux")`: 01_generate_lora.ipynb headless (make demo's code path) with that
    model_family on the tiny models, FAMILY_ITERATIONS iterations; run once per family and kept."""
    from siso_lib.notebook_run import demo_main

    runs: dict[str, dict] = {}

    def run(family: str) -> dict:
        if family not in runs:
            out = tmp_path_factory.mktemp(f"demo-{family}") / "run"
            started = time.perf_counter()
            code = demo_main([
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
    from siso_lib.sweep import build_sweep, run_sweep

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
    from siso_lib.sweep import build_sweep, eval_options, run_sweep

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
