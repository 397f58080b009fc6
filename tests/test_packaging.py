"""An installed package works without the repository: the wheel carries the notebooks and the example
photos, and outputs go under the current folder (not next to site-packages).

The wheel is built from this checkout and installed into a fresh venv that reuses the tested
packages (a .pth line to this environment's site-packages: nothing is downloaded), then run from an
empty folder as a user of `pip install git+URL` or of a ComfyUI venv would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # builds a wheel, makes a venv, runs the commands in it


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wheel")
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root), str(REPO)],
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr[-2000:]
    wheel = next(root.glob("siso_lab-*.whl"))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # the tested packages, without this checkout's editable siso_lib (.pth files there are not run)
    (site / "tested_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr[-2000:]
    empty = root / "work"
    empty.mkdir()
    return {"wheel": wheel, "bin": venv / "bin", "python": python, "site": site, "work": empty}


def run(installed, *command: str, **kwargs) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "SISO_OUTPUT_ROOT")}
    return subprocess.run([str(installed["bin"] / command[0]), *command[1:]], cwd=installed["work"], env=environment,
                          capture_output=True, text=True, timeout=900, **kwargs)


def test_the_wheel_holds_the_notebooks_and_the_photos(installed):
    names = zipfile.ZipFile(installed["wheel"]).namelist()
    for name in ("01_generate_lora.ipynb", "02_apply_lora.ipynb", "03_sweep_report.ipynb", "04_edit_image.ipynb"):
        assert f"siso_lib/_resources/notebooks/{name}" in names
    assert {"siso_lib/_resources/data/cat.png", "siso_lib/_resources/data/coffee.png", "siso_lib/_resources/data/LICENSE.md"} <= set(names)
    for package in ("cli", "io", "notebooks", "sweeps", "offline", "generators", "features", "editing", "evaluation"):
        assert f"siso_lib/{package}/__init__.py" in names, package
    where = subprocess.run([str(installed["python"]), "-c", "import siso_lib; print(siso_lib.__file__)"],
                           capture_output=True, text=True, cwd=installed["work"]).stdout
    assert where.startswith(str(installed["site"])), where  # the installed copy, not the checkout


def test_the_demo_runs_from_an_empty_folder_and_writes_there(installed):
    done = run(installed, "siso-demo")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((installed["work"] / "outputs" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "pytorch_lora_weights.safetensors").is_file() and (runs[0] / "run.json").is_file()
    assert (installed["work"] / "outputs" / "test-assets" / "ASSETS.json").is_file()
    assert not (installed["site"] / "outputs").exists() and not (installed["site"].parent / "outputs").exists()


def test_a_sweep_dry_run_finds_the_shipped_notebook(installed):
    done = run(installed, "siso-sweep", "--name", "one", "--grid", "rank=4", "--set", "models=offline", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "[1/1]" in done.stderr and "would run" in done.stderr and "dry run: 1 would run" in done.stderr
    assert not (installed["work"] / "outputs" / "sweeps").exists(), "a dry run writes nothing"
