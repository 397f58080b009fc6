"""A sweep run's own record (`sweep_run.json`) and its claim.

`sweep_run.json` says how one run of the grid went (parameters, status, error, wall time, where
it ran) beside the run's run.json; results.csv is rebuilt from these records.

A run being executed is claimed with a lock file (`<run>/.claim`, filelock): a second siso-sweep
process skips it, and the operating system releases the lock when its holder dies, so a crashed
sweep leaves no stale claim. Locks are per open file, so this process remembers the claims it
holds (a lock it holds itself is not "another's").
"""

from __future__ import annotations

import json
from pathlib import Path

from filelock import FileLock, Timeout

from ..io.atomic import write_json
from .spec import RECORD

CLAIM = ".claim"
_held: dict[Path, FileLock] = {}  # run folder -> the lock this process holds


def read_record(run_dir: Path) -> dict | None:
    """The run's sweep_run.json, or None (not run yet, or written by a process that was killed)."""
    try:
        record = json.loads((Path(run_dir) / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def write_record(run_dir: Path, record: dict) -> None:
    write_json(Path(run_dir) / RECORD, record)


def claim(run_dir: Path) -> bool:
    """Take a run for this process; False if another process holds it."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _held:
        return True
    lock = FileLock(run_dir / CLAIM, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return False
    _held[run_dir] = lock
    return True


def release(run_dir: Path) -> None:
    lock = _held.pop(Path(run_dir).absolute(), None)
    if lock is not None:
        lock.release()


def claimed_by_other(run_dir: Path) -> bool:
    """Whether another process holds the run now."""
    run_dir = Path(run_dir).absolute()
    if run_dir in _held or not (run_dir / CLAIM).exists():
        return False
    lock = FileLock(run_dir / CLAIM, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        return True
    lock.release()
    return False
