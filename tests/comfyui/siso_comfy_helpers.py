"""Helpers for the ComfyUI pack's tests: fake script paths, process checks."""

from __future__ import annotations

import os
import sys
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

FAKES = Path(__file__).resolve().parent / "fake_scripts"


def fake(name: str) -> str:
    return str(FAKES / f"{name}.py")


def alive(pid: int) -> bool:
    """True while `pid` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False


def pids(workdirs) -> list[int]:
    path = workdirs["pids"]
    return [int(x) for x in path.read_text().split()] if path.exists() else []
