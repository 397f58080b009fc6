"""The progress protocol: what every program that follows a run reads (io/progress.py)."""

from __future__ import annotations

import json

from siso_lib.io.progress import PROGRESS, RESULT, ProgressLog, format_line, parse_line, read_progress


def test_a_line_round_trips_and_other_lines_are_not_records():
    record = {"step": 3, "total": 50, "loss": -1.61, "dino": -0.8, "ir": -0.81, "best_step": 2}
    assert parse_line(format_line(PROGRESS, record)) == (PROGRESS, record)
    assert parse_line(format_line(RESULT, {"status": "success"}) + "\n") == (RESULT, {"status": "success"})
    for other in ("siso: stopped", "SISO: 10%|#   | 5/50", f"{PROGRESS} {{\"step\": 3", f"{PROGRESS} [1, 2]", "", "SISO_PROGRESSX {}"):
        assert parse_line(other) is None, other


def test_a_progress_file_is_read_in_whole_lines(tmp_path):
    path = tmp_path / "progress.jsonl"
    log = ProgressLog(path)
    log.append({"step": 1, "loss": -1.0})
    log.append({"step": 2, "loss": -1.5})
    with open(path, "a") as handle:
        handle.write(json.dumps({"step": 3})[:5])  # a line still being written
    records, offset = read_progress(path)
    assert [r["step"] for r in records] == [1, 2]
    assert read_progress(path, offset) == ([], offset)  # nothing complete since
    with open(path, "a") as handle:
        handle.write(json.dumps({"step": 3})[5:] + "\n")
    records, _ = read_progress(path, offset)
    assert records == [{"step": 3}]
    assert read_progress(tmp_path / "missing.jsonl", 7) == ([], 7)
