"""The copied-folder route (ComfyUI-Manager, the Comfy Registry) in a REAL ComfyUI (skipped like
test_comfyui_real.py, whose settings and helpers it uses: SISO_COMFYUI_DIR, SISO_COMFYUI_PYTHON).

A second ComfyUI whose custom_nodes holds a COPY of the pack and whose Python is a fresh virtual
environment that sees SISO_COMFYUI_PYTHON's packages but not siso_lib: the node must name the one
install command, and after it (install.py --source <a copy of this checkout>) the workflow must
succeed with python_executable empty, with none of ComfyUI's packages changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import comfy_server
from siso_comfy_helpers import REPO
from test_comfyui_real import COMFY_DIR, COMFY_PYTHON, generation, pytestmark, report  # noqa: F401 (pytestmark: the same skips)


@pytest.fixture(scope="module")
def bare_comfy_python(tmp_path_factory):
    """A fresh environment that sees ComfyUI's packages (those of SISO_COMFYUI_PYTHON) but has no siso_lib."""
    folder = tmp_path_factory.mktemp("copied-route-env")
    # without pip of its own: pip, setuptools and the rest are ComfyUI's (an ensurepip setuptools 65 would
    # shadow ComfyUI's newer one, and install.py would rightly refuse to "change" it)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder / "venv")], check=True, capture_output=True)
    python = folder / "venv" / "bin" / "python"
    code = "import json, sys; print(json.dumps([p for p in sys.path if p.endswith('site-packages')]))"
    paths = json.loads(subprocess.run([COMFY_PYTHON, "-c", code], check=True, capture_output=True, text=True, cwd=folder).stdout)
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    Path(purelib, "comfy_packages.pth").write_text("\n".join(paths) + "\n")  # plain paths: no .pth of theirs runs
    if subprocess.run([str(python), "-c", "import siso_lib"], capture_output=True, cwd=folder).returncode == 0:
        pytest.skip("siso_lib is importable from SISO_COMFYUI_PYTHON's site-packages: use a ComfyUI Python without siso-lab")
    return python


def test_a_copied_pack_tells_the_one_command_and_works_after_it(tiny_assets, tmp_path_factory, bare_comfy_python):
    """ComfyUI-Manager / the Registry route: the pack folder COPIED into custom_nodes, python_executable empty."""
    base = tmp_path_factory.mktemp("comfy-copied")
    instance = comfy_server.start(COMFY_DIR, str(bare_comfy_python), base, copy_pack=True)
    try:
        comfy_server.copy_input(instance, str(REPO / "data" / "cat.png"), "cat.png")
        pack = base / "custom_nodes" / "siso-lab"
        assert pack.is_dir() and not pack.is_symlink()
        prompt = generation(tiny_assets, python_executable="", num_train_epochs=2)
        entry = instance.wait(instance.queue(prompt))
        status = comfy_server.ui_text(entry, "4")
        command = f"{bare_comfy_python} {pack / 'install.py'} --source SISO_LAB_SOURCE"
        assert status.startswith(f"Failed: siso-lab is not installed in the Python that runs SISO ({bare_comfy_python}): "
                                 f"run {command} (SISO_LAB_SOURCE: a siso-lab checkout folder, a siso_lab-*.whl wheel"), status
        # the documented command, with a copy of this checkout as its source (siso-lab is not on the package index)
        source = tmp_path_factory.mktemp("siso-lab-source")
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(REPO / name, source / name)
        shutil.copytree(REPO / "siso_lib", source / "siso_lib", ignore=shutil.ignore_patterns("__pycache__"))
        started = time.monotonic()
        done = subprocess.run([str(bare_comfy_python), str(pack / "install.py"), "--source", str(source)],
                              capture_output=True, text=True, cwd=base, timeout=900)
        print(f"\ncopied route: install.py took {time.monotonic() - started:.0f} s:\n{done.stdout[-1500:]}")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "CHANGE" not in done.stdout  # a current ComfyUI's packages (transformers 5.25, ...) satisfy siso-lab's ranges
        entry = instance.wait(instance.queue(generation(tiny_assets, python_executable="", num_train_epochs=2, seed=47)))
        text = report(entry)
        assert text.startswith("Success"), text
        lora_path = comfy_server.ui_text(entry, "5")
        assert lora_path.startswith(str(base / "models" / "loras" / "siso")) and Path(lora_path).is_file()
    finally:
        instance.stop()
