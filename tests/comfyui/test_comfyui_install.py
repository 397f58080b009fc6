"""install.sh / install.py: installing the pack never changes ComfyUI's packages without saying so first.

Each test makes a throw-away virtual environment standing for ComfyUI's, and a folder of small
hand-made wheels standing for the package index (pip runs with --no-index on it, no network).
"siso-lab" asks for what the real one asks (transformers >= 5.5, peft >= 0.22, kornia, torch): a
current ComfyUI's transformers 5.25 satisfies it, so only additions are installed; a real conflict
(another pack pinned peft 0.21.2) is listed and refused.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import types
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
    for name, version in (("transformers", "5.25.0"), ("transformers", "5.5.4"), ("peft", "0.21.2"), ("peft", "0.22.0"),
                          ("kornia", "0.9.0"), ("torch", "2.14.1"), ("torch", "2.15.0"), ("torchvision", "0.29.1")):
        make_wheel(folder, name, version)
    siso = make_wheel(folder, "siso-lab", "0.1.0", ("transformers>=5.5", "peft>=0.22", "kornia>=0.8", "torch>=2.4"))
    extras = tmp_path_factory.mktemp("other-wheels")  # not in the index folder: given by path only
    needs_new_torch = make_wheel(extras, "siso-lab", "0.2.0", ("torch>=2.15",))
    needs_unknown = make_wheel(extras, "siso-lab", "0.3.0", ("no-such-package>=1",))
    return {"folder": folder, "siso": siso, "needs_new_torch": needs_new_torch, "needs_unknown": needs_unknown}


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
    python = make_comfy_env(tmp_path, index, ["transformers==5.25.0", "peft==0.21.2", "torch==2.14.1"])
    before = versions(python)
    done = install_sh(python, index, "--source", str(index["siso"]))
    out = done.stdout + done.stderr
    assert done.returncode == 3, out
    assert "  peft 0.21.2 -> 0.22.0" in out
    assert "nothing was changed" in out and "--venv" in out and "--allow-changes" in out
    assert "would add: kornia 0.9.0" in out and "keeping torch 2.14.1" in out
    assert versions(python) == before  # nothing installed, nothing changed

    done = install_sh(python, index, "--source", str(index["siso"]), "--allow-changes")
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert out.index("  peft 0.21.2 -> 0.22.0") < out.index("SISO: done")  # said before doing it
    after = versions(python)
    assert after["peft"] == "0.22.0" and after["siso-lab"] == "0.1.0" and after["torch"] == "2.14.1"
    assert after["transformers"] == "5.25.0"


def test_a_current_comfyui_takes_it_without_changing_anything(tmp_path, index):
    """What a fresh ComfyUI resolves today (transformers 5.25): siso-lab only adds packages."""
    python = make_comfy_env(tmp_path, index, ["transformers==5.25.0", "torch==2.14.1"])
    before = versions(python)
    dry = install_sh(python, index, "--source", str(index["siso"]), "--dry-run")
    assert dry.returncode == 0 and "would add: kornia 0.9.0, peft 0.22.0" in dry.stdout and versions(python) == before
    assert "CHANGE" not in dry.stdout
    done = install_sh(python, index, "--source", str(index["siso"]))
    assert done.returncode == 0, done.stdout + done.stderr
    after = versions(python)
    assert {k: v for k, v in after.items() if k in before} == before
    assert set(after) - set(before) == {"siso-lab", "peft", "kornia"}

    # torch is ComfyUI's: a siso-lab that needs another torch is refused even with --allow-changes
    done = install_sh(python, index, "--source", str(index["needs_new_torch"]), "--allow-changes")
    assert done.returncode == 3, done.stdout + done.stderr
    assert "without replacing torch/torchvision/torchaudio" in done.stdout and "--venv" in done.stdout
    assert versions(python)["torch"] == "2.14.1"


def copied_pack(tmp_path: Path) -> Path:
    """The pack as ComfyUI-Manager leaves it: COPIED into <base>/custom_nodes, no siso-lab checkout around it."""
    target = tmp_path / "ComfyUI" / "custom_nodes" / "siso-lab"
    shutil.copytree(PACK, target, ignore=shutil.ignore_patterns("__pycache__", "siso_env.json", "*.whl"))
    return target


def test_without_a_source_or_with_an_unreachable_one_it_says_so(tmp_path, index):
    """No placeholder repository: a copied pack asks for --source; a source that cannot be fetched, or a
    requirement the index lacks, is named as such (not as a conflict, and no --venv that would fail the same)."""
    python = make_comfy_env(tmp_path, index, ["transformers==5.25.0", "torch==2.14.1"])
    before = versions(python)
    pack_copy = copied_pack(tmp_path)
    run = lambda *args: subprocess.run([str(python), str(pack_copy / "install.py"), *args], capture_output=True,  # noqa: E731
                                       text=True, cwd=tmp_path, env=offline_env(index), timeout=300)
    done = run()
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stdout.startswith("install.py: no siso-lab to install: this pack folder is not inside a siso-lab checkout")
    assert "--source" in done.stdout and "not on the package index" in done.stdout and "github" not in done.stdout.lower()

    done = run("--source", str(tmp_path / "nowhere" / "siso_lab-0.1.0-py3-none-any.whl"))
    assert done.returncode == 2 and "does not exist" in done.stdout

    done = run("--source", "http://127.0.0.1:9/siso-lab.zip")  # nothing listens there: a network failure
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SISO: pip could not reach the network (for http://127.0.0.1:9/siso-lab.zip" in done.stdout
    assert "--venv" not in done.stdout.split("SISO: pip could not reach", 1)[1]

    done = run("--source", str(index["needs_unknown"]))  # offline: a requirement the index does not have
    assert done.returncode == 1, done.stdout + done.stderr
    assert "SISO: pip found no no-such-package>=1 on the package index (offline" in done.stdout
    assert versions(python) == before

    # a wheel shipped inside the pack folder is its default source
    shutil.copy(index["siso"], pack_copy)
    done = run("--dry-run")
    assert done.returncode == 0 and "the wheel shipped with this pack" in done.stdout, done.stdout + done.stderr
    assert pack.needs_source(pack_copy) is False and pack.needs_source(copied_pack(tmp_path / "again")) is True
    assert pack.needs_source(PACK) is False  # this checkout's pack installs this checkout


def test_a_separate_environment_is_recorded_in_comfyuis_user_folder_and_the_node_uses_it(tmp_path, index, monkeypatch):
    """The record goes to <ComfyUI>/user/siso-lab/siso_env.json (a Manager update replaces the pack folder, not that)."""
    pack_copy = copied_pack(tmp_path)
    target = tmp_path / "siso-venv"
    env = offline_env(index)
    env.pop("SISO_ENV_FILE", None)
    done = subprocess.run([sys.executable, str(pack_copy / "install.py"), "--venv", str(target), "--source", str(index["siso"])],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    python = target / "bin" / "python"
    record = tmp_path / "ComfyUI" / "user" / "siso-lab" / "siso_env.json"
    assert json.loads(record.read_text())["python"] == str(python)
    assert f"SISO: environment ready: {python}" in done.stdout and str(record) in done.stdout
    assert not (pack_copy / "siso_env.json").exists()
    assert versions(python)["siso-lab"] == "0.1.0"
    # the node, inside that ComfyUI (its folder_paths names the user directory), uses it when python_executable is empty
    monkeypatch.delenv("SISO_ENV_FILE", raising=False)
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(get_user_directory=lambda: str(record.parent.parent)))
    assert pack.default_python() == str(python)
    monkeypatch.setitem(sys.modules, "folder_paths", types.SimpleNamespace(get_user_directory=lambda: str(tmp_path / "other")))
    assert pack.default_python() == sys.executable  # another ComfyUI: its own Python

    # outside a custom_nodes folder (no ComfyUI around the pack) it says what to do instead of recording it elsewhere
    done = subprocess.run([sys.executable, str(PACK / "install.py"), "--venv", str(target), "--source", str(index["siso"])],
                          capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"set the node's python_executable to {python}, or run this again with --user-dir" in done.stdout


@pytest.mark.parametrize("output, meaning", [
    ("fatal: unable to access 'https://example.invalid/siso-lab.git/': Could not resolve host: example.invalid", "network"),
    ("ERROR: HTTPSConnectionPool: Max retries exceeded (Failed to establish a new connection)", "network"),
    ("remote: Repository not found.\nfatal: repository 'https://github.com/x/y.git/' not found", "missing"),
    ("ERROR: ResolutionImpossible: conflicting dependencies", "conflict"),
])
def test_a_failed_pip_run_is_named_by_its_cause(output, meaning):
    """The fresh-user trial: an unreachable git+ source was reported as a package conflict (exit 3)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("siso_pack_install", PACK / "install.py")
    install = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(install)
    line, separate_environment_helps = install.pip_failure(output, "the source")
    expected = {"network": "could not reach the network", "missing": "was not found", "conflict": "cannot install siso-lab here"}
    assert expected[meaning] in line and separate_environment_helps == (meaning == "conflict")
