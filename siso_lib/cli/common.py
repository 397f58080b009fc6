"""What the applications share: argument errors in one line, signals and exit codes, quiet
libraries, and the progress printer.

Exit codes of every siso command: 0 done; 1 the work ended early (a non-finite loss, out of
memory, a failed run of a sweep; what was best so far is kept); 2 bad input (one line naming
the fix, nothing written); 128 + N for signal N: 130 SIGINT (Ctrl-C), 143 SIGTERM.

Progress is never prose that another program parses: it is the JSON objects of `io/progress.py`,
printed behind their prefix on stdout and appended to a `--progress_file`.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from ..errors import SISOError, flags_in_messages
from ..io.progress import PROGRESS, ProgressLog, format_line, progress_record

if TYPE_CHECKING:
    from ..optimizer import StepEvent

logger = logging.getLogger("siso_lib")


# ----------------------------------------------------------------------------- arguments
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


# ----------------------------------------------------------------------------- signals
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the work; the process exits with 128 + the signal number.

    It is a KeyboardInterrupt, so the SISO loop ends the same clean way for both signals (it keeps
    the best LoRA so far); `exit_code` tells the two apart afterwards.
    """

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class SignalHandler:
    """`with SignalHandler() as signals:` SIGINT and SIGTERM raise `Interrupted` in the main thread.

    The first signal is remembered (`signum`, `exit_code`), so code that caught the interrupt to
    end cleanly (the SISO loop does) can still exit with the right code. SIGINT is installed
    explicitly because a shell starts background jobs with SIGINT ignored, and an explicit
    `kill -INT` must still end the work. Leaving the block restores the earlier handlers.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    latest: "SignalHandler | None" = None  # the handler of the work in progress (for exit_code())

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SignalHandler":
        SignalHandler.latest = self
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def reinstall(self) -> None:
        """Take SIGINT and SIGTERM back after a library replaced the handlers (ray.init installs its
        own SIGTERM handler); leaving the block still restores the handlers found on entering it."""
        if self._previous and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signum is None:
            self.signum = signum
        raise Interrupted(signum)

    @property
    def exit_code(self) -> int:
        """128 + the first signal received (SIGINT when none was: a KeyboardInterrupt from elsewhere)."""
        return 128 + (self.signum or signal.SIGINT)

    def raise_if_interrupted(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


def interrupt_exit_code() -> int:
    """The exit code of an interrupted command: 143 after SIGTERM, else 130."""
    handler = SignalHandler.latest
    return handler.exit_code if handler is not None else 128 + signal.SIGINT


def run_command(args: argparse.Namespace, work: Callable[[], int],
                interrupted: str = "interrupted before the optimisation started: no LoRA was written", prefix: str = "siso") -> int:
    """Run a command's `work()` as siso-generate and siso-edit do: log lines on stderr, SIGTERM and
    SIGINT as a clean interrupt (130 / 143), a SISOError as one `error:` line with its exit code
    (the traceback with --debug). `interrupted` is said when a signal ends the work before the
    loop (which handles its own interrupts and keeps its best LoRA)."""
    log_to_stderr(logging.DEBUG if getattr(args, "debug", False) else logging.INFO)
    with SignalHandler() as signals, flags_in_messages():
        try:
            return work()
        except SISOError as error:
            if getattr(args, "debug", False):
                raise
            print(f"error: {error}", file=sys.stderr)
            return error.exit_code
        except KeyboardInterrupt:
            print(f"{prefix}: {interrupted}", file=sys.stderr)
            return signals.exit_code


# ----------------------------------------------------------------------------- libraries
def quiet_libraries() -> None:
    """No progress bars, warnings or info lines from diffusers, transformers, the hub, timm, peft.

    Called after the input checks, before the models load. In a notebook their progress bars are
    tqdm *widgets*: dead "model not found" widgets in an executed notebook, or bars dropped into
    whatever cell is active when a background run loads.
    """
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*torch_dtype.*")
    for name in ("diffusers", "transformers", "timm", "huggingface_hub", "accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging

        for library in (diffusers_logging, transformers_logging):
            library.set_verbosity_error()
            library.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


class _StderrHandler(logging.Handler):
    """Writes to whatever sys.stderr is at the time (main() may run in-process, e.g. in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def log_to_stderr(level: int = logging.INFO) -> None:
    """The library's log lines ("siso: ...") on stderr."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("siso: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


# ----------------------------------------------------------------------------- progress
class ProgressPrinter:
    """A SISO callback: a tqdm bar on stderr, the progress record on stdout behind `SISO_PROGRESS `
    (io/progress.py), and the same record appended to `progress_file` when one is given."""

    def __init__(self, total: int, quiet: bool = False, progress_file: str | None = None):
        self.total, self.quiet, self.bar = total, quiet, None
        self.log = ProgressLog(progress_file) if progress_file else None

    def __call__(self, event: "StepEvent") -> None:
        record = progress_record(event)
        print(format_line(PROGRESS, record), flush=True)
        if self.log is not None:
            self.log.append(record)
        if self.bar is None and not self.quiet:
            from tqdm.auto import tqdm

            # created at the first step, so that its rate ignores the model loading
            self.bar = tqdm(total=self.total, desc="SISO", unit="it", file=sys.stderr, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{event.losses['total']:.4f}", best=f"{event.best_loss:.4f}@{event.best_step}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ----------------------------------------------------------------------------- environment
def tell_where_the_commands_are(prefix: str) -> None:
    """`make` installs into .venv without activating it: say how to reach its commands."""
    import shutil

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "siso-sweep").exists():
        return
    found = shutil.which("siso-sweep")
    if found and Path(found).resolve().parent == bin_dir.resolve():
        return
    shown = os.path.relpath(bin_dir) if not os.path.relpath(bin_dir).startswith("..") else str(bin_dir)
    print(f"{prefix}: siso-generate, siso-eval, siso-sweep, papermill and jupyter are in {shown}/, not on PATH: "
          f"run `. {shown}/activate` first (or call {shown}/siso-sweep ...)", file=sys.stderr)
