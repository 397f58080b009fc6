"""What the applications share: argument errors in one line, signals and exit codes, quiet
libraries, and the progress printer.

Exit codes of every siso command: 0 done; 1 the work ended early (a non-finite loss, out of
memory, a failed run of a sweep; what was best so far is kept); 2 bad input (one line naming
the fix, nothing written); 128 + N for signal N: 130 SIGINT (Ctrl-C), 143 SIGTERM, 129 the
parent went away (SIGHUP, or the parent named in SISO_PARENT_PID died), 141 the output pipe
was closed (SIGPIPE's number: nobody reads stdout or stderr any more).

A run whose parent or output pipe goes away (ComfyUI killed, a terminal closed) must not crash
on its next print and lose the run: `LostContact` sends the output to os.devnull from then on,
and `ProgressPrinter` ends the run after the iteration in progress, the way Ctrl-C does (the
best LoRA and run.json are written, status "interrupted"; `record_interruption` adds why).

Progress is never prose that another program parses: it is the JSON objects of `io/progress.py`,
printed behind their prefix on stdout when a program reads it (not on an interactive terminal:
`progress_lines_wanted`) and appended to a `--progress_file`. Errors are one line,
`<prog>: error: ...` (`print_error`).
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import signal
import sys
import threading
import time
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
        self.exit(2, error_line(self.prog, f"{message} (see {self.prog} --help)") + "\n")


def error_line(prog: str, message: str) -> str:
    """How every siso command reports an error: `siso-generate: error: <one line naming the fix>`."""
    return f"{prog}: error: {message}"


def print_error(prog: str, message: str) -> None:
    """`error_line` on stderr (the one place a command prints its error)."""
    print(error_line(prog, message), file=sys.stderr, flush=True)


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


class LostContact:
    """Nobody reads this process's output any more: its parent died or its stdout/stderr pipe closed.

    The first `lose` wins (its reason and exit code are kept). Both output file descriptors are
    pointed at os.devnull at once, so every later write (prints, log lines, tqdm, the final
    SISO_RESULT line, Python's flush at exit) succeeds instead of raising BrokenPipeError in the
    middle of saving the run. Nothing is raised here: `ProgressPrinter` ends the run after the
    iteration in progress, so that iteration's work is not thrown away.
    """

    reason: str | None = None
    signum: int | None = None

    @classmethod
    def lose(cls, reason: str, signum: int) -> None:
        if cls.reason is None:
            cls.reason, cls.signum = reason, signum
        silence_output()

    @classmethod
    def reset(cls) -> None:
        cls.reason = cls.signum = None


SIGHUP = getattr(signal, "SIGHUP", None)  # POSIX only
SIGPIPE_NUMBER = int(getattr(signal, "SIGPIPE", 13))
PARENT_ENV = "SISO_PARENT_PID"  # set by a program that wants the run to end when it dies (the ComfyUI nodes)


def silence_output() -> None:
    """Point file descriptors 1 and 2 at os.devnull (what was printed to a dead pipe is lost anyway)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    for fd in (1, 2):
        try:
            os.dup2(devnull, fd)
        except OSError:
            pass
    os.close(devnull)


def is_broken_pipe(error: BaseException) -> bool:
    """A write to a pipe whose reader is gone (EPIPE), or to a stream that was closed under us."""
    if isinstance(error, BrokenPipeError):
        return True
    if isinstance(error, OSError) and error.errno in (errno.EPIPE, errno.EBADF):
        return True
    return isinstance(error, ValueError) and "closed file" in str(error)


def lose_output(stream: str) -> None:
    """A write to stdout or stderr met a closed pipe; when the watched parent died, that is the reason."""
    if WatchedParent.pid is not None and os.getppid() != WatchedParent.pid:
        WatchedParent.lose()
    else:
        LostContact.lose(f"its {stream} pipe was closed (the program reading it ended or stopped reading)", SIGPIPE_NUMBER)


class WatchedParent:
    """The parent named in SISO_PARENT_PID, while `watch_parent` watches it."""

    pid: int | None = None

    @classmethod
    def lose(cls) -> None:
        LostContact.lose(f"its parent process (pid {cls.pid}) went away", SIGHUP or 1)


def watch_parent(poll_s: float = 1.0) -> threading.Thread | None:
    """With SISO_PARENT_PID set to this process's parent, notice the parent's death (the child is then
    re-parented) and treat it as a lost contact. Off otherwise: a run started with nohup, or by a
    wrapper that is not the parent named there, keeps going when its shell ends."""
    expected = os.environ.get(PARENT_ENV, "")
    if not expected.isdigit() or os.name == "nt" or os.getppid() != int(expected):
        WatchedParent.pid = None
        return None
    WatchedParent.pid = parent = int(expected)

    def watch() -> None:
        while LostContact.reason is None:
            if os.getppid() != parent:
                WatchedParent.lose()
                return
            time.sleep(poll_s)

    thread = threading.Thread(target=watch, daemon=True, name="siso-parent-watch")
    thread.start()
    return thread


class SignalHandler:
    """`with SignalHandler() as signals:` SIGINT and SIGTERM raise `Interrupted` in the main thread.

    The first signal is remembered (`signum`, `exit_code`), so code that caught the interrupt to
    end cleanly (the SISO loop does) can still exit with the right code. SIGINT is installed
    explicitly because a shell starts background jobs with SIGINT ignored, and an explicit
    `kill -INT` must still end the work. SIGHUP (the terminal or parent went away) raises
    nothing: it is a `LostContact`, and the run ends after its iteration; where SIGHUP is ignored
    (nohup) it stays ignored. Leaving the block restores the earlier handlers.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)
    latest: "SignalHandler | None" = None  # the handler of the work in progress (for exit_code())

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SignalHandler":
        SignalHandler.latest = self
        LostContact.reset()
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
            if SIGHUP is not None and signal.getsignal(SIGHUP) is not signal.SIG_IGN:
                self._previous[SIGHUP] = signal.signal(SIGHUP, self._hangup)
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

    def _hangup(self, signum, frame) -> None:  # noqa: ARG002
        LostContact.lose("SIGHUP: its terminal or parent process went away", signum)

    @property
    def exit_code(self) -> int:
        """128 + the first signal received (SIGINT when none was: a KeyboardInterrupt from elsewhere);
        a lost contact counts as its signal (129 SIGHUP / parent gone, 141 closed pipe)."""
        return 128 + (self.signum or LostContact.signum or signal.SIGINT)

    @property
    def reason(self) -> str:
        """Why the work was interrupted, in words (for run.json's "interrupted_by")."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            return {"SIGINT": "SIGINT (Ctrl-C)", "SIGTERM": "SIGTERM (a stop request, e.g. Cancel in ComfyUI)"}.get(name, name)
        if LostContact.reason is not None:
            return LostContact.reason
        return "KeyboardInterrupt"

    def raise_if_interrupted(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


def interrupt_exit_code() -> int:
    """The exit code of an interrupted command: 143 after SIGTERM, else 130."""
    handler = SignalHandler.latest
    return handler.exit_code if handler is not None else 128 + signal.SIGINT


def run_command(args: argparse.Namespace, work: Callable[[], int],
                interrupted: str = "interrupted before the optimisation started: no LoRA was written", prefix: str = "siso",
                prog: str | None = None) -> int:
    """Run a command's `work()` as siso-generate and siso-edit do: log lines on stderr, SIGTERM and
    SIGINT as a clean interrupt (130 / 143), a SISOError as one `<prog>: error:` line with its exit
    code (the traceback with --debug). `interrupted` is said when a signal ends the work before the
    loop (which handles its own interrupts and keeps its best LoRA)."""
    log_to_stderr(logging.DEBUG if getattr(args, "debug", False) else logging.INFO)
    with SignalHandler() as signals, flags_in_messages():
        watch_parent()
        try:
            return work()
        except SISOError as error:
            if getattr(args, "debug", False):
                raise
            print_error(prog or prefix, str(error))
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
    # torch.utils._pytree: torch's deprecation notes about torchao's registrations ("<enum
    # 'KernelPreference'> is an Enum subclass ...", two lines whenever diffusers imports torchao)
    for name in ("diffusers", "transformers", "timm", "huggingface_hub", "accelerate", "peft", "torch.utils._pytree"):
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
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except (OSError, ValueError) as error:
            if not is_broken_pipe(error):
                raise
            lose_output("stderr")


def log_to_stderr(level: int = logging.INFO) -> None:
    """The library's log lines ("siso: ...") on stderr."""
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("siso: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


# ----------------------------------------------------------------------------- progress
PROGRESS_LINES_ENV = "SISO_PROGRESS_LINES"  # "1": the JSON lines also on a terminal; "0": never


def progress_lines_wanted(stream=None) -> bool:
    """Whether the `SISO_PROGRESS` / `SISO_RESULT` lines go to stdout: when a program reads it (stdout
    is a pipe or a file, as for the ComfyUI nodes' child process), or SISO_PROGRESS_LINES=1 asks for
    them. On an interactive terminal a person reads the progress bar and the closing lines instead
    (JSON lines would break up the bar); SISO_PROGRESS_LINES=0 turns them off everywhere.
    `--progress_file` is written either way."""
    forced = os.environ.get(PROGRESS_LINES_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return not (stream or sys.stdout).isatty()
    except (AttributeError, ValueError):  # a closed or replaced stream: nobody watches a terminal
        return True


PREVIEW_SIZE = 512  # px, the longer side of a live preview


class ProgressPrinter:
    """A SISO callback: a tqdm bar on stderr, the progress record on stdout behind `SISO_PROGRESS `
    (io/progress.py) when a program reads stdout (`progress_lines_wanted`), and the same record
    appended to `progress_file` when one is given.

    It is also where a lost contact ends the run: a print to a closed pipe, or a `LostContact`
    noticed meanwhile (SIGHUP, the parent's death), raises `Interrupted` once the iteration it
    reports is done, unless that iteration was the last anyway. The SISO loop then ends as after
    Ctrl-C: the best LoRA so far and run.json are written (status "interrupted").
    """

    def __init__(self, total: int, quiet: bool = False, progress_file: str | None = None, preview_file: str | None = None):
        self.total, self.quiet, self.bar = total, quiet, None
        self.log = ProgressLog(progress_file) if progress_file else None
        self.lines = progress_lines_wanted()
        self.preview_file = preview_file

    def __call__(self, event: "StepEvent") -> None:
        record = progress_record(event)
        if self.preview_file and self._write_preview(event):
            record["preview"] = self.preview_file
        if self.lines:
            self._write(lambda: print(format_line(PROGRESS, record), flush=True), "stdout")
        if self.log is not None:
            self.log.append(record)
        if not self.quiet and LostContact.reason is None:
            self._write(lambda: self._draw(event), "stderr")
        if LostContact.reason is not None and event.stop_reason is None:
            logger.info("ending the run after iteration %d: %s", event.step, LostContact.reason)
            raise Interrupted(LostContact.signum or SIGPIPE_NUMBER)

    def _write_preview(self, event: "StepEvent") -> bool:
        """This iteration's image, at most PREVIEW_SIZE px, written atomically to `preview_file` for
        a program that shows the run live (the ComfyUI node). A preview that cannot be written is
        skipped: it never ends the run."""
        try:
            from ..io.atomic import save_image
            from ..io.images import tensor_to_pil

            image = tensor_to_pil(event.image)
            image.thumbnail((PREVIEW_SIZE, PREVIEW_SIZE))
            save_image(self.preview_file, image)
            return True
        except Exception as error:  # noqa: BLE001 - a disk full or a bad path must not cost the run
            logger.debug("no preview for iteration %d: %s", event.step, error)
            return False

    def _draw(self, event: "StepEvent") -> None:
        if self.bar is None:
            from tqdm.auto import tqdm

            # created at the first step, so that its rate ignores the model loading
            self.bar = tqdm(total=self.total, desc="SISO", unit="it", file=sys.stderr, dynamic_ncols=True)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{event.losses['total']:.4f}", best=f"{event.best_loss:.4f}@{event.best_step}")

    def _write(self, write: Callable[[], None], stream: str) -> None:
        try:
            write()
        except (OSError, ValueError) as error:
            if not is_broken_pipe(error):
                raise
            lose_output(stream)

    def close(self) -> None:
        if self.bar is not None:
            try:
                self.bar.close()
            except (OSError, ValueError) as error:
                if not is_broken_pipe(error):
                    raise
            self.bar = None


def record_interruption(run_json: str | os.PathLike | None) -> None:
    """Add why an interrupted run ended to its run.json ("interrupted_by": "SIGTERM ...", "its parent
    process (pid N) went away", ...), rewritten atomically; nothing for a run that was not interrupted."""
    if not run_json or SignalHandler.latest is None:
        return
    from ..io.atomic import write_json

    path = Path(run_json)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if isinstance(record, dict) and record.get("status") == "interrupted":
        record["interrupted_by"] = SignalHandler.latest.reason
        write_json(path, record)


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
