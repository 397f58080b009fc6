"""User-facing errors: each message is one line that names the input and the fix."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class SISOError(Exception):
    """Base class for errors the command line reports as a one-line message (no traceback)."""

    exit_code = 1


class SISOInputError(SISOError, ValueError):
    """A bad input: a path, an image, a model, a checkpoint or a setting. Exit code 2."""

    exit_code = 2

    def _render_traceback_(self) -> list[str]:
        """IPython/Jupyter show this instead of a traceback: bad input is one line in a notebook too."""
        return [f"{type(self).__name__}: {self}"]


def error_summary(error: BaseException, limit: int = 200) -> str:
    """The first line of a library's error message, for a one-line report.

    A line longer than `limit` characters is cut at the last space before the limit and marked
    with " ...", never in the middle of a word (or of a path, a hub id or a number).
    """
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", 0, limit - 4)
    return (text[:cut] if cut > limit // 2 else text[: limit - 4]).rstrip(" ,;:") + " ..."


# How a message names a setting. The library speaks its own language, the config fields
# (`mode='low-memory'`); a command line switches messages to its flags (`--mode low-memory`)
# before it runs anything (cli.common.run_command), so the same check reads right in both.
FLAG_NAMES = {"precision": "mixed_precision", "mask_path": "mask"}  # config field -> command-line option, where they differ
_use_flags = False


@contextmanager
def flags_in_messages() -> Iterator[None]:
    """Inside this block messages name settings as command-line flags (a command line's work)."""
    global _use_flags
    previous, _use_flags = _use_flags, True
    try:
        yield
    finally:
        _use_flags = previous


def setting(name: str, value: object = None) -> str:
    """A setting as the reader can type it: `learning_rate=1e-4` from Python, `--learning_rate 1e-4`
    on a command line; without a value just the name (`learning_rate`, `--learning_rate`)."""
    if not _use_flags:
        return name if value is None else f"{name}={value!r}"
    flag = "--" + FLAG_NAMES.get(name, name)
    if isinstance(value, bool):
        return flag if value else f"--no-{FLAG_NAMES.get(name, name)}"
    return flag if value is None else f"{flag} {value}"


def check_file(path: "str | os.PathLike", what: str, fix: str, missing_fix: str | None = None,
               error: type[SISOInputError] = SISOInputError) -> Path:
    """`path` as a Path if it is an existing regular file; otherwise `error` with one line that says
    which of the three it is: "<what> '<path>' does not exist: <missing_fix or fix>", "... is a
    folder, not a file: <fix>" or "... is not a file: <fix>" (a device, a pipe). Every file input
    (photos, masks, checkpoints, prompt and sweep files) is checked here, so they all say the same."""
    path = Path(path)
    if not path.exists():
        raise error(f"{what} {str(path)!r} does not exist: {missing_fix or fix}")
    if path.is_dir():
        raise error(f"{what} {str(path)!r} is a folder, not a file: {fix}")
    if not path.is_file():
        raise error(f"{what} {str(path)!r} is not a file: {fix}")
    return path
