"""Atomic file writes: a killed process never leaves a truncated file under the final name.

Each writer writes to a temporary file in the destination folder (same file system), flushes
it to disk, then renames it over the final name with `os.replace`, which is atomic on POSIX
and Windows. `replace_folder` does the same for a whole folder (an evaluation's eval/, a run
folder a Ray worker sent back): a crash leaves the old folder or the new one, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
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


@contextmanager
def replace_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty staging folder beside `folder`; on success it replaces `folder` as a whole
    (the old one, if any, is moved aside first and deleted after), else it is deleted and `folder`
    stays as it was."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    old = None
    try:
        yield staging
        for path in staging.rglob("*"):
            if path.is_file():
                with open(path, "rb+") as written:
                    os.fsync(written.fileno())
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700 folders
        if folder.exists():
            old = folder.with_name(f".{folder.name}.{uuid.uuid4().hex[:8]}.old")
            os.rename(folder, old)
        os.rename(staging, folder)
    except BaseException:
        if old is not None and not folder.exists():
            os.rename(old, folder)
            old = None
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def remove_leftovers(parent: str | os.PathLike) -> None:
    """Staging and old folders that a crash left beside folders replaced under `parent`."""
    parent = Path(parent)
    if parent.is_dir():
        for path in parent.glob(".*"):
            if path.is_dir() and (path.name.endswith(".partial") or path.name.endswith(".old")):
                shutil.rmtree(path, ignore_errors=True)


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
