"""Reading a siso-lab child's output: progress and result from its protocol lines, the rest as console lines.

siso-generate and siso-edit print one `SISO_PROGRESS {json}` line per iteration and one
`SISO_RESULT {json}` line at the end on stdout (siso_lib/io/progress.py; a test keeps this
parser equal to that one). They are read as JSON, never as prose; other lines go to the
console and into the tails the failure diagnosis reads. upstream.py adds the authors' scripts,
which print a tqdm bar instead.
"""

from __future__ import annotations

import json
from typing import Any

PROGRESS = "SISO_PROGRESS"  # one per iteration
RESULT = "SISO_RESULT"  # one at the end of a run
KINDS = (PROGRESS, RESULT)
TAIL_LINES = 300  # lines of each stream kept for the diagnosis


def parse_line(line: str) -> tuple[str, dict[str, Any]] | None:
    """(kind, record) of a protocol line, or None for any other line (a log line, a line cut short)."""
    kind, _, text = line.strip().partition(" ")
    if kind not in KINDS:
        return None
    try:
        record = json.loads(text)
    except ValueError:
        return None
    return (kind, record) if isinstance(record, dict) else None


def format_progress(record: dict) -> str:
    """'step 3/50 loss -1.6134 (dino -0.80, ir -0.81) best -1.6500 @2' for the console and the node
    (an edit's lines add its background term)."""
    text = f"step {record.get('step', '?')}/{record.get('total', '?')}"
    if isinstance(record.get("loss"), (int, float)):
        text += f" loss {record['loss']:.4f}"
        parts = [f"{k} {record[k]:.4f}" for k in ("dino", "ir", "background") if isinstance(record.get(k), (int, float))]
        if parts:
            text += f" ({', '.join(parts)})"
    if isinstance(record.get("best_loss"), (int, float)):
        text += f" best {record['best_loss']:.4f} @{record.get('best_step', '?')}"
    return text


class OutputReader:
    """Turns the child's output lines into hook calls and remembers the last progress record, the
    result and the tail of each stream (`hooks`: child.Hooks)."""

    def __init__(self, hooks):
        self.hooks = hooks
        self.progress: dict = {}
        self.result: dict = {}
        self.tails: dict[str, list[str]] = {"stdout": [], "stderr": []}

    def read(self, stream: str, text: str, ended_by: str) -> None:
        """One line of `stream` ("stdout"/"stderr"), ended by '\\n', '\\r\\n', '\\r' or nothing (the last)."""
        parsed = parse_line(text) if stream == "stdout" else None
        if parsed is not None and parsed[0] == PROGRESS:
            self.update(parsed[1])
            self.hooks.on_line(stream, format_progress(parsed[1]))
            return
        if parsed is not None:
            self.result = parsed[1]
            self.hooks.on_line(stream, f"finished: {self.result.get('status')} (stop reason: {self.result.get('stop_reason')})")
            return
        if ended_by == "\r":  # a progress-bar redraw: never a console line
            self.redraw(text)
            return
        if stream == "stderr":
            self.stderr_line(text)
        if text.strip():
            tail = self.tails[stream]
            tail.append(text)
            del tail[:-TAIL_LINES]
            self.hooks.on_line(stream, text)

    def update(self, record: dict) -> None:
        self.progress = record
        self.hooks.on_progress(record)

    def redraw(self, text: str) -> None:
        """A line a progress bar redraws in place: siso-lab's progress is in its protocol lines."""

    def stderr_line(self, text: str) -> None:
        """A finished stderr line, before it goes to the console."""
