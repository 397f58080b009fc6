"""Starting the SISO script as a child process and seeing it through to its end.

The child runs in its own process group, so Cancel reaches every process it starts: SIGTERM
first (siso-generate then writes the best LoRA so far), SIGKILL after a grace period. Its pipes
are read by two threads and handed, line by line, to an OutputReader (progress.py, or
upstream.py's for the authors' scripts); `should_cancel` is polled between lines. Whatever
happens, nothing of the group outlives `supervise`: on POSIX the leader is left a zombie until
then, so its group id cannot be reused by an unrelated process before the last SIGKILL.
"""

from __future__ import annotations

import codecs
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from .messages import InputProblem
from .pack import IS_WINDOWS
from .progress import OutputReader


@dataclass
class Hooks:
    """What the caller (the node) hears of a run, and how it asks for a cancel."""

    on_line: Callable[[str, str], None] = lambda stream, text: None  # ("stdout"|"stderr", line)
    on_progress: Callable[[dict], None] = lambda record: None
    should_cancel: Callable[[], bool] = lambda: False
    on_start: Callable[[list[str], int], None] = lambda command, pid: None
    before_start: Callable[[], None] = lambda: None  # inputs are fine, the child is about to start


@dataclass
class ChildOutcome:
    returncode: int | None
    cancelled: bool
    progress: dict
    result: dict
    stderr_tail: list[str]
    stdout_tail: list[str]
    seconds: float
    killed: bool = False  # needed SIGKILL after the grace period


class _StreamReader(threading.Thread):
    """Reads a pipe in chunks, splits on \\n and \\r (tqdm redraws), queues (stream, text, ended_by)."""

    def __init__(self, pipe, name: str, sink: queue.Queue):
        super().__init__(daemon=True, name=f"siso-{name}-reader")
        self.pipe, self.stream, self.sink = pipe, name, sink

    def run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        fd = self.pipe.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                pending += decoder.decode(chunk)
                while True:
                    match = re.search(r"\r\n|\n|\r", pending)
                    if not match:
                        break
                    self.sink.put((self.stream, pending[: match.start()], match.group(0)))
                    pending = pending[match.end():]
        except OSError:
            pass
        finally:
            pending += decoder.decode(b"", final=True)
            if pending:
                self.sink.put((self.stream, pending, ""))
            self.sink.put((self.stream, None, None))
            try:
                self.pipe.close()
            except OSError:
                pass


def _exited_without_reaping(process: subprocess.Popen) -> bool:
    """True once the child has exited; on POSIX it stays a zombie so its group id cannot be reused yet."""
    if IS_WINDOWS or not hasattr(os, "waitid"):
        return process.poll() is not None
    if process.returncode is not None:
        return True
    try:
        info = os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _signal_group(process: subprocess.Popen, sig: int) -> None:
    if IS_WINDOWS:
        if sig == signal.SIGTERM:
            try:
                process.send_signal(signal.CTRL_BREAK_EVENT)  # the group was created for this
            except (OSError, ValueError):
                process.terminate()
        else:
            subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, check=False)
        return
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def child_environment(python: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: unbuffered UTF-8 output, ComfyUI's pid (siso_lib ends the run after its
    iteration, keeping the best LoRA, when this process dies), and
    none of ComfyUI's module search path when the child is another environment's Python."""
    env = dict(os.environ, **(extra or {}))
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    env["SISO_PARENT_PID"] = str(os.getpid())
    env.setdefault("TQDM_MININTERVAL", "1")
    if os.path.realpath(python) != os.path.realpath(sys.executable or ""):
        env.pop("PYTHONPATH", None)
        env.pop("PYTHONHOME", None)
    return env


def start_child(command: list[str], env: dict[str, str], cwd: str | None = None) -> subprocess.Popen:
    kwargs: dict[str, Any] = {}
    if IS_WINDOWS:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    else:
        kwargs["start_new_session"] = True  # own process group: cancel reaches every process it starts
    return subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, **kwargs
    )


def supervise(
    process: subprocess.Popen,
    hooks: Hooks,
    terminate_grace_s: float = 10.0,
    poll_interval_s: float = 0.1,
    started: float | None = None,
    reader_class: type[OutputReader] = OutputReader,
) -> ChildOutcome:
    """Stream the child's output into a `reader_class(hooks)`, honour cancel; the group is gone on return."""
    started = started or time.monotonic()
    sink: queue.Queue = queue.Queue()
    readers = [_StreamReader(process.stdout, "stdout", sink), _StreamReader(process.stderr, "stderr", sink)]
    for reader in readers:
        reader.start()
    output = reader_class(hooks)
    cancelled = killed = False
    open_streams = 2
    exited_at: float | None = None
    terminate_at: float | None = None
    try:
        while True:
            try:
                stream, text, ended_by = sink.get(timeout=poll_interval_s)
                if text is None:
                    open_streams -= 1
                else:
                    output.read(stream, text, ended_by)
                while True:  # drain what is already there before looking at the clock again
                    try:
                        stream, text, ended_by = sink.get_nowait()
                    except queue.Empty:
                        break
                    if text is None:
                        open_streams -= 1
                    else:
                        output.read(stream, text, ended_by)
            except queue.Empty:
                pass
            if exited_at is None and _exited_without_reaping(process):
                exited_at = time.monotonic()
            if exited_at is not None:
                # all output read, or a grandchild holds the pipes open: stop waiting after a second
                if open_streams <= 0 or time.monotonic() - exited_at > 1.0:
                    break
                continue
            if not cancelled and hooks.should_cancel():
                cancelled = True
                terminate_at = time.monotonic() + terminate_grace_s
                hooks.on_line("stderr", f"cancel requested: sending SIGTERM to the SISO process group (pid {process.pid})")
                _signal_group(process, signal.SIGTERM)
            if cancelled and terminate_at is not None and time.monotonic() > terminate_at and not killed:
                killed = True
                hooks.on_line("stderr", f"the SISO process did not stop within {terminate_grace_s:.0f} s: SIGKILL")
                _signal_group(process, signal.SIGKILL)
    finally:
        if not _exited_without_reaping(process):
            # leaving early (an exception in a hook, KeyboardInterrupt): never leave the child behind
            _signal_group(process, signal.SIGTERM)
            deadline = time.monotonic() + terminate_grace_s
            while time.monotonic() < deadline and not _exited_without_reaping(process):
                time.sleep(0.05)
        _signal_group(process, signal.SIGKILL)  # whatever is left of the group (the leader is a zombie now)
        returncode = process.wait()
        for reader in readers:
            reader.join(timeout=2.0)
        while True:  # lines that arrived after the loop ended
            try:
                stream, text, ended_by = sink.get_nowait()
            except queue.Empty:
                break
            if text is not None:
                output.read(stream, text, ended_by)
    return ChildOutcome(
        returncode=returncode,
        cancelled=cancelled,
        progress=output.progress,
        result=output.result,
        stderr_tail=output.tails["stderr"],
        stdout_tail=output.tails["stdout"],
        seconds=time.monotonic() - started,
        killed=killed,
    )


def launch(command: list[str], python: str, cwd: str, hooks: Hooks, terminate_grace_s: float = 10.0,
           poll_interval_s: float = 0.1, reader_class: type[OutputReader] = OutputReader,
           env: dict[str, str] | None = None) -> ChildOutcome:
    """Start the child once the inputs passed (`hooks.before_start` first) and supervise it to its end;
    InputProblem if it cannot be started. `env`: variables the child gets besides this process's."""
    hooks.before_start()
    try:
        process = start_child(command, child_environment(python, env), cwd=cwd)
    except OSError as error:
        raise InputProblem(f"cannot start {python!r}: {error.strerror or error}") from error
    hooks.on_start(command, process.pid)
    return supervise(process, hooks, terminate_grace_s, poll_interval_s, reader_class=reader_class)
