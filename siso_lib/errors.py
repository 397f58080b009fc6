"""User-facing errors: each message is one line that names the input and the fix."""

from __future__ import annotations

import argparse
from typing import NoReturn


class SISOError(Exception):
    """Base class for errors the command line reports as a one-line message (no traceback)."""

    exit_code = 1


class SISOInputError(SISOError, ValueError):
    """A bad input: a path, an image, a model, a checkpoint or a setting. Exit code 2."""

    exit_code = 2

    def _render_traceback_(self) -> list[str]:
        """IPython/Jupyter show this instead of a traceback: bad input is one line in a notebook too."""
        return [f"{type(self).__name__}: {self}"]


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default once: not when the help text already says it, nor when it is None."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text.lower() or action.default in (None, argparse.SUPPRESS) or isinstance(action.default, bool):
            return text
        return super()._get_help_string(action)


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (not the whole usage block), exit code 2,
    and takes only whole option names (`--num_train_epoch 3` is an error, not a silent guess)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", DefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


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
