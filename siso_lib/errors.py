"""User-facing errors: each message is one line that names the input and the fix."""


class SISOError(Exception):
    """Base class for errors the command line reports as a one-line message (no traceback)."""

    exit_code = 1


class SISOInputError(SISOError, ValueError):
    """A bad input: a path, an image, a model, a checkpoint or a setting. Exit code 2."""

    exit_code = 2
