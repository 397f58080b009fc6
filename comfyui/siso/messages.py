"""The words a run ends with: the one-line status, and the report lines every job shares.

A node's status is ONE line ("Success", "Failed: <reason>", "Cancelled"), shown whole: only an
absurdly long one is shortened, and never inside a word (a path, a hub id, a number).
"""

from __future__ import annotations

import re

STATUS_MAX_CHARS = 2000


class InputProblem(ValueError):
    """A bad input, reported as 'Failed: <message>' before anything is started."""


def one_line(text: str, limit: int = STATUS_MAX_CHARS) -> str:
    """`text` on one line. Longer than `limit`: cut at the last word boundary before it, then ' ...'
    (a single "word" longer than half the limit is cut, and the cut marked the same way)."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    room = max(limit - 4, 1)  # for " ..."
    cut = text.rfind(" ", 0, room + 1)
    if cut < room // 2:
        cut = room
    return text[:cut].rstrip() + " ..."


def failed(reason: str) -> str:
    return "Failed: " + one_line(reason)


def slug(text: str, limit: int = 40) -> str:
    """`text` as a folder-name part: letters, digits, '_', '.', '-' only."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:limit].strip("-.") or "run"


def summary_lines(result: dict | None, progress: dict, seconds: float, notes: list[str]) -> list[str]:
    """How a run went, for the end of a report: best iteration and losses (or how far it ran), why it
    stopped, the time, then the notes."""
    lines = []
    record = result or {}
    if record.get("best_step"):
        steps = record.get("steps_run") or progress.get("step")
        losses = ", ".join(f"{k} {v:.4f}" for k, v in (record.get("best_losses") or {}).items() if isinstance(v, (int, float)))
        lines.append(f"best iteration {record['best_step']} of {steps}" + (f" ({losses})" if losses else ""))
    elif progress.get("step"):
        lines.append(f"ran {progress['step']} of {progress.get('total', '?')} iterations")
    if record.get("stop_reason"):
        lines.append(f"stopped: {record['stop_reason']}")
    lines.append(f"time: {seconds:.1f} s")
    return lines + list(notes)
