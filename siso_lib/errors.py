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


class OneLineArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument in one line (not the whole usage block), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")
