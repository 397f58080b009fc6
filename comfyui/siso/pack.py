"""Where the pack's own files are, and which Python runs SISO when python_executable is empty.

`install.py --venv DIR` records the separate environment it made in siso_env.json beside the
pack; an empty python_executable means that environment while it exists, else ComfyUI's own
Python. `install_command` is the one command that installs siso-lab into a given Python, which
every "not installed" status names.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parent.parent  # comfyui/
LAUNCHER = PACK_DIR / "siso_generate.py"  # the generator's default script (runs siso_lib.cli.generate)
EDIT_LAUNCHER = PACK_DIR / "siso_edit.py"  # the edit node's script (runs siso_lib.cli.edit)
INSTALLER = PACK_DIR / "install.py"
ENV_RECORD_NAME = "siso_env.json"  # written by `install.py --venv DIR`: {"python": ".../bin/python"}
IS_WINDOWS = os.name == "nt"


def recorded_env_file() -> Path:
    """Where `install.py --venv DIR` records the separate environment's python (SISO_ENV_FILE overrides)."""
    return Path(os.environ.get("SISO_ENV_FILE") or PACK_DIR / ENV_RECORD_NAME)


def recorded_python() -> str:
    """The python of the environment `install.py --venv` made, if it was made and still exists; else ''."""
    try:
        record = json.loads(recorded_env_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    python = record.get("python") if isinstance(record, dict) else None
    return python if isinstance(python, str) and os.path.isfile(python) else ""


def default_python() -> str:
    """An empty python_executable: the environment install.py --venv made, else ComfyUI's own python."""
    return recorded_python() or sys.executable or "python"


def quote_arg(text: str) -> str:
    """One command-line word as the user's shell wants it."""
    if IS_WINDOWS:
        return f'"{text}"' if (" " in text or not text) else text
    return shlex.quote(text)


def install_command(python: str, *args: str) -> str:
    """The one command that installs siso-lab (and its requirements) into `python`'s environment."""
    return " ".join(quote_arg(part) for part in (python, str(INSTALLER), *args))
