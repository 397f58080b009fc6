"""Where the pack's own files are, where siso-lab is installed from, and which Python runs SISO.

siso-lab is not on the package index, so installing it needs a source. By default that is the
siso-lab checkout this pack folder sits in (a symlinked or cloned install), else a siso-lab
wheel shipped inside the pack folder (`siso_lab-*.whl`); a copied pack with neither needs
`install.py --source` (a checkout, a wheel, an archive or a URL), and every "not installed"
status names that command (`install_hint`).

`install.py --venv DIR` records the separate environment it made in `siso_env.json` under
ComfyUI's user directory (`<user>/siso-lab/`), where a ComfyUI-Manager update of the pack cannot
delete it; an empty python_executable means that environment while it exists, else ComfyUI's own
Python. Only the standard library: install.py and the launchers read this file too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent  # comfyui/
LAUNCHER = PACK_DIR / "siso_generate.py"  # the generator's default script (runs siso_lib.cli.generate)
EDIT_LAUNCHER = PACK_DIR / "siso_edit.py"  # the edit node's script (runs siso_lib.cli.edit)
INSTALLER = PACK_DIR / "install.py"
ENV_RECORD_NAME = "siso_env.json"  # written by `install.py --venv DIR`: {"python": ".../bin/python"}
RECORD_FOLDER = "siso-lab"  # under ComfyUI's user directory
WHEEL_GLOB = "siso_lab-*.whl"
SOURCE_ENV = "SISO_LAB_SOURCE"
SOURCE_PLACEHOLDER = "SISO_LAB_SOURCE"  # stands for the source in a printed command
SOURCE_WORDS = ("a siso-lab checkout folder, a siso_lab-*.whl wheel, an archive or a URL "
                "(siso-lab is not on the package index)")
IS_WINDOWS = os.name == "nt"


# ----------------------------------------------------------------------------- where siso-lab comes from
def checkout(pack_dir: Path = PACK_DIR) -> Path | None:
    """The siso-lab checkout the pack folder sits in (comfyui/ of a clone, symlinked or not), if it does."""
    root = Path(pack_dir).resolve().parent
    try:
        text = (root / "pyproject.toml").read_text(encoding="utf-8")
    except OSError:
        return None
    if (root / "siso_lib" / "cli" / "generate.py").is_file() and re.search(r'^name\s*=\s*"siso-lab"', text, re.MULTILINE):
        return root
    return None


def bundled_wheel(pack_dir: Path = PACK_DIR) -> Path | None:
    """The newest siso-lab wheel shipped inside the pack folder, if a release put one there."""
    wheels = sorted(Path(pack_dir).glob(WHEEL_GLOB), key=lambda path: path.stat().st_mtime)
    return wheels[-1] if wheels else None


def default_source(pack_dir: Path = PACK_DIR) -> tuple[list[str], str] | None:
    """(pip arguments naming siso-lab, where it comes from) without --source: $SISO_LAB_SOURCE, the
    checkout the pack sits in (editable), a wheel in the pack folder; None when there is none."""
    if os.environ.get(SOURCE_ENV):
        return None  # install.py reads it as if given with --source
    root = checkout(pack_dir)
    if root is not None:
        return ["-e", str(root)], f"the siso-lab checkout this pack sits in ({root})"
    wheel = bundled_wheel(pack_dir)
    if wheel is not None:
        return [str(wheel)], f"the wheel shipped with this pack ({wheel})"
    return None


def needs_source(pack_dir: Path = PACK_DIR) -> bool:
    """True when install.py cannot install siso-lab without being told where it comes from."""
    return not os.environ.get(SOURCE_ENV) and default_source(pack_dir) is None


# ----------------------------------------------------------------------------- the install command
def quote_arg(text: str) -> str:
    """One command-line word as the user's shell wants it."""
    if IS_WINDOWS:
        return f'"{text}"' if (" " in text or not text) else text
    return shlex.quote(text)


def install_command(python: str, *args: str, installer: Path = INSTALLER) -> str:
    """The one command that installs siso-lab (and its requirements) into `python`'s environment;
    with `--source SISO_LAB_SOURCE` when the pack has no source of its own."""
    if needs_source(Path(installer).parent) and "--source" not in args:
        args = (*args, "--source", SOURCE_PLACEHOLDER)
    return " ".join(quote_arg(str(part)) for part in (python, str(installer), *args))


def install_hint(python: str, installer: Path = INSTALLER) -> str:
    """'run <command>' and, when the command needs a source, what to put in its place."""
    command = install_command(python, installer=installer)
    if SOURCE_PLACEHOLDER in command.split():
        return f"run {command} ({SOURCE_PLACEHOLDER}: {SOURCE_WORDS})"
    return f"run {command}"


# ----------------------------------------------------------------------------- the recorded environment
def comfy_user_directory() -> Path | None:
    """ComfyUI's user directory, when this process is ComfyUI (its folder_paths is loaded), else None."""
    folder_paths = sys.modules.get("folder_paths")
    try:
        found = folder_paths.get_user_directory() if folder_paths is not None else None
    except Exception:  # noqa: BLE001 - an older ComfyUI
        found = None
    return Path(found) if found else None


def record_in(user_directory: str | os.PathLike) -> Path:
    """The record file under a ComfyUI user directory."""
    return Path(user_directory) / RECORD_FOLDER / ENV_RECORD_NAME


def recorded_env_files() -> list[Path]:
    """Where `install.py --venv DIR` may have recorded its environment, first found wins: SISO_ENV_FILE
    alone when set; else ComfyUI's user directory, then the pack folder (older versions wrote it there)."""
    if os.environ.get("SISO_ENV_FILE"):
        return [Path(os.environ["SISO_ENV_FILE"])]
    user = comfy_user_directory()
    return ([record_in(user)] if user is not None else []) + [PACK_DIR / ENV_RECORD_NAME]


def recorded_env_file() -> Path:
    """Where the record is read first (SISO_ENV_FILE, else ComfyUI's user directory)."""
    return recorded_env_files()[0]


def recorded_python() -> str:
    """The python of the environment `install.py --venv` made, if it was made and still exists; else ''."""
    for path in recorded_env_files():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        python = record.get("python") if isinstance(record, dict) else None
        if isinstance(python, str) and os.path.isfile(python):
            return python
    return ""


def default_python() -> str:
    """An empty python_executable: the environment install.py --venv made, else ComfyUI's own python."""
    return recorded_python() or sys.executable or "python"
