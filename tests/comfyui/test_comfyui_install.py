"""install.sh / install.py: installing the pack never changes ComfyUI's packages without saying so first.

Each test makes a throw-away virtual environment standing for ComfyUI's, and a folder of small
hand-made wheels standing for the package index (pip runs with --no-index on it, no network):
"transformers" 5.24.0 installed, while "siso-lab" asks for transformers < 5.24 as the real one does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from siso_comfy_helpers import REPO

from comfyui.siso import pack

pytestmark = pytest.mark.slow  # pip venvs

PACK = REPO / "comfyui"


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = ()) -> Path:
    """A minimal pure-Python wheel: one module and its metadata."""
    stem = name.replace("-", "_")
    dist_info = f"{stem}-{version}.dist-info"
    files = {
        f"{stem}_stub.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {item}\n" for item in requires),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: siso-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{dist_info}/RECORD"] = "".join(f"{path},,\n" for path in files) + f"{dist_info}/RECORD,,\n"
    path = folder / f"{stem}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wheels")
    for name, version in (("transformers", "5.24.0"), ("transformers", "5.23.0"), ("kornia", "0.9.0"),
                          ("torch", "2.14.1"), ("torch", "2.15.0"), ("torchvision", "0.29.1")):
        make_wheel(folder, name, version)
    siso = make_wheel(folder, "siso-lab", "0.1.0", ("transformers>=5.5,<5.24", "kornia>=0.8", "torch>=2.4"))
    needs_new_torch = make_wheel(folder, "siso-lab", "0.2.0", ("torch>=2.15",))
    return {"folder": folder, "siso": siso, "needs_new_torch": needs_new_torch}


def offline_env(index, **extra) -> dict:
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(index["folder"]),
               PIP_DISABLE_PIP_VERSION_CHECK="1", **extra)
    env.pop("PIP_CONSTRAINT", None)
    return env


def make_comfy_env(tmp_path: Path, index, packages: list[str]) -> Path:
    """A virtual environment with pip, holding `packages` (from the wheel folder): ComfyUI's stand-in."""
    folder = tmp_path / "comfy-env"
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True, capture_output=True)
    python = folder / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *packages], check=True, env=offline_env(index))
    return python


def versions(python: Path) -> dict[str, str]:
    code = "import json, importlib.metadata as m; print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))"
    done = subprocess.run([str(python), "-c", code], check=True, capture_output=True, text=True, cwd=python.parent)
    return json.loads(done.stdout)


def install_sh(python: Path, index, *args: str, **env) -> subprocess.CompletedProcess:
    """The documented command: ComfyUI's python in $PYTHON, then ./install.sh."""
    return subprocess.run(["bash", str(PACK / "install.sh"), *args], capture_output=True, text=True, cwd=python.parent,
                          env=offline_env(index, PYTHON=str(python), **env), timeout=300)


def test_a_change_to_an_installed_package_is_listed_and_refused(tmp_path, index):
    python = make_comfy_env(tmp_path, index, ["transformers==5.24.0", "torch==2.14.1"])
    before = versions(python)
    done = install_sh(python, index, "--source", str(index["siso"]))
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert "  transformers 5.24.0 -> 5.23.0" in out
    assert "nothing was changed" in out and "--venv" in out and "--allow-changes" in out
    assert "would add: kornia 0.9.0" in out and "keeping torch 2.14.1" in out
    assert versions(python) == before  # nothing installed, nothing changed

    done = install_sh(python, index, "--source", str(index["siso"]), "--allow-changes")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.index("  transformers 5.24.0 -> 5.23.0") < out.index("SISO: done")  # said before doing it
    after = versions(python)
    assert after["transformers"] == "5.23.0" and after["siso-lab"] == "0.1.0" and after["torch"] == "2.14.1"


def test_without_conflicts_it_installs_and_changes_nothing_installed(tmp_path, index):
    python = make_comfy_env(tmp_path, index, ["transformers==5.23.0", "torch==2.14.1"])
    before = versions(python)
    dry = install_sh(python, index, "--source", str(index["siso"]), "--dry-run")
    assert dry.returncode == 0 and "would add: kornia 0.9.0" in dry.stdout and versions(python) == before
    done = install_sh(python, index, "--source", str(index["siso"]))
    assert done.returncode == 0, done.stdout + done.stderr
    after = versions(python)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"siso-lab", "kornia"}

    # torch is ComfyUI's: a siso-lab that needs another torch is refused even with --allow-changes
    done = install_sh(python, index, "--source", str(index["needs_new_torch"]), "--allow-changes")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "without replacing torch/torchvision/torchaudio" in done.stdout and "--venv" in done.stdout
    assert versions(python)["torch"] == "2.14.1"


def test_a_separate_environment_is_made_and_the_node_uses_it(tmp_path, index, monkeypatch):
    record = tmp_path / "siso_env.json"
    target = tmp_path / "siso-venv"
    done = subprocess.run([sys.executable, str(PACK / "install.py"), "--venv", str(target), "--source", str(index["siso"])],
                          capture_output=True, text=True, env=offline_env(index, SISO_ENV_FILE=str(record)), timeout=300,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    python = target / "bin" / "python"
    assert json.loads(record.read_text())["python"] == str(python)
    assert f"SISO: environment ready: {python}" in done.stdout
    assert versions(python)["siso-lab"] == "0.1.0"
    monkeypatch.setenv("SISO_ENV_FILE", str(record))
    assert pack.default_python() == str(python)  # an empty python_executable now means this environment
