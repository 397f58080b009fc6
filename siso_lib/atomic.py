"""Atomic file writes: a killed process never leaves a truncated file under the final name.

Each writer writes to a temporary file in the destination folder (same file system), flushes
it to disk, then renames it over the final name with `os.replace`, which is atomic on POSIX
and Windows.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it to `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    os.close(handle)
    temporary = Path(temporary)
    try:
        yield temporary
        with open(temporary, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def save_image(path: str | os.PathLike, image) -> None:
    """Save a PIL image atomically (format from the final name's suffix)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        image.save(temporary, format=(path.suffix.lstrip(".") or "png").upper().replace("JPG", "JPEG"))
