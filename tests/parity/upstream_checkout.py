"""What every parity test needs from the authors' checkout, in one place.

* `SKIP_WITHOUT_CHECKOUT`: the module marks (slow: their scripts run in subprocesses; skipped
  unless SISO_UPSTREAM_DIR points at a checkout of github.com/yairshp/SISO, which is never
  committed here and CI cannot download).
* `checkout(*scripts, stubbed=())`: the checkout's path for a module-scoped fixture. A missing
  script fails the test (a wrong checkout is an error, not a skip). A package a script imports
  that is not installed skips it, unless the harness stands in for it (`stubbed`): which packages
  those are is READ FROM THE SCRIPT'S SOURCE, so FLUX and Sana, whose scripts do not import
  `datasets`, never skip for its absence, while the SDXL generation script, which does, says so.
* `TOLERANCES`: per comparison, the largest |ours - theirs| a test accepts, and why.
"""

from __future__ import annotations

import ast
import importlib.util
import os
from pathlib import Path

import pytest

UPSTREAM = os.environ.get("SISO_UPSTREAM_DIR")
OPTIONAL_PACKAGES = ("datasets", "pytorch_lightning")  # imported by some of their scripts, not our dependencies

SKIP_WITHOUT_CHECKOUT = [
    pytest.mark.slow,  # the authors' scripts in subprocesses
    pytest.mark.skipif(
        not UPSTREAM,
        reason="SISO_UPSTREAM_DIR is not set: clone github.com/yairshp/SISO and point it there (tests/parity/README.md)",
    ),
]

# Largest accepted max |ours - theirs| of a per-iteration loss over 10 iterations, per comparison.
# Each is a few times the agreement measured on the CPU with the tiny models (tests/parity/README.md
# has every number; re-measured with transformers 5.25.0 / peft 0.22.0), and well below the
# smallest real fault each comparison must see:
TOLERANCES = {
    # SDXL and FLUX generation agree to 2.4e-7 (FLUX's IR term 3.0e-7): float32 rounding, the
    # order of summation. 1e-6 is 3-4x that, and well below a 100x weight-decay error (6.7e-6 over
    # 10 SDXL iterations, measured), which the former single 1e-5 for every family could not see.
    "sdxl": 1e-6,
    "flux": 1e-6,
    # Sana agrees to 4.8e-7 on the total (20 steps with CFG: more arithmetic per iteration), with
    # the random numbers their model loading draws kept apart (without: 1e-4 and more, asserted by
    # test_sana_agrees_only_with_its_loading_rng_isolated); 1.5e-6 is 3x that, still under that
    # weight-decay error.
    "sana": 1.5e-6,
    # Editing agrees to 1.2e-6 on the total over 10 iterations (6.0e-7 DINO and IR, 1.2e-7
    # background; 1.8e-6 with transformers 5.5.4's tiny models), with iteration 1 bit-identical:
    # ReNoise's inversion and the background term amplify rounding more than generation does. 5e-6
    # is about 4x that; a tensor scene in the wrong memory layout, the smallest real fault found
    # here, gave 1.3e-5, and torch's fused-attention fast path on one side alone 1.3e-5.
    "edit": 5e-6,
    # ReNoise inversion and regeneration are bit-identical on one thread (0); the smallest difference
    # seen, our inversion on two threads, is 1.1e-5. 1e-6 accepts rounding of another CPU, not that.
    "renoise": 1e-6,
}


def imports_of(script: Path) -> set[str]:
    """The top-level packages `script` imports (read from its source, nothing is run)."""
    names = set()
    for node in ast.walk(ast.parse(script.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def missing_packages(path: Path, scripts: tuple[str, ...], stubbed: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """{optional package not installed: the scripts that import it}, leaving out what a harness stubs."""
    missing: dict[str, list[str]] = {}
    for script in scripts:
        for package in sorted(imports_of(path / script) & set(OPTIONAL_PACKAGES)):
            if package not in stubbed and importlib.util.find_spec(package) is None:
                missing.setdefault(package, []).append(script)
    return missing


def checkout(*scripts: str, stubbed: tuple[str, ...] = ()) -> Path:
    """The checkout (resolved) for a fixture: fails for a missing script, skips for a missing package."""
    path = Path(UPSTREAM).expanduser().resolve()
    for script in scripts:
        if not (path / script).is_file():
            pytest.fail(f"SISO_UPSTREAM_DIR={UPSTREAM!r} has no {script}: give a checkout of github.com/yairshp/SISO")
    for package, importers in missing_packages(path, scripts, stubbed).items():
        pytest.skip(f"the authors' {', '.join(importers)} import(s) `{package}`: run `.venv/bin/python -m pip install {package}`")
    return path
