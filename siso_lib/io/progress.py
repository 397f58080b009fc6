"""The progress protocol: one JSON object per iteration, and one at the end of a run.

Every program that follows a run reads these objects, never prose: the command lines print them
on stdout behind a prefix, `--progress_file` (and a notebook's `progress_file` parameter) appends
them to a JSON-lines file, the Ray sweep tails that file, and the ComfyUI pack reads the lines of
its child process.

    SISO_PROGRESS {"step": 3, "total": 50, "loss": -1.61, "dino": -0.80, "ir": -0.81,
                   "best_step": 2, "best_loss": -1.63, "patience": 1, "seconds": 0.41, "elapsed": 1.3}
    SISO_RESULT {"status": "success", "stop_reason": "early_stopping", "lora_path": ..., ...}

Steps are numbered from 1. Loss terms other than the total (`dino`, `ir`, and `background` for
an edit) appear under their own names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..optimizer import StepEvent

PROGRESS = "SISO_PROGRESS"  # one per iteration
RESULT = "SISO_RESULT"  # one at the end of a run
KINDS = (PROGRESS, RESULT)


def progress_record(event: "StepEvent") -> dict[str, Any]:
    """The object of one iteration (rounded: these are for people and progress bars)."""
    return {
        "step": event.step,
        "total": event.max_steps,
        "loss": round(event.losses["total"], 6),
        **{name: round(value, 6) for name, value in event.losses.items() if name != "total"},
        "best_step": event.best_step,
        "best_loss": round(event.best_loss, 6),
        "patience": event.patience_count,
        "seconds": round(event.step_seconds, 4),
        "elapsed": round(event.elapsed_seconds, 3),
    }


def format_line(kind: str, record: dict[str, Any]) -> str:
    """`SISO_PROGRESS {...}`: the record on one line behind its prefix."""
    return f"{kind} {json.dumps(record)}"


def parse_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """(kind, record) of a protocol line, or None for any other line (log lines, a tqdm redraw, a
    line cut short by a killed process)."""
    kind, _, text = line.strip().partition(" ")
    if kind not in KINDS:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return (kind, record) if isinstance(record, dict) else None


class ProgressLog:
    """Appends progress records to a JSON-lines file, one flushed line each."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_progress(path: str | os.PathLike, start: int = 0) -> tuple[list[dict[str, Any]], int]:
    """The complete records of a JSON-lines progress file from byte `start`, and where the next read
    starts (a last line still being written is left for the next read)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read()
    except OSError:
        return [], start
    end = data.rfind(b"\n") + 1
    records = []
    for line in data[:end].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records, start + end
