"""Executing notebooks headless with papermill (siso-demo --notebook, siso-sweep), and ending them
cleanly on SIGINT / SIGTERM.

`SignalGuard` is the command lines' `SignalHandler` for a process whose work runs in a Jupyter
kernel: the first signal kills the kernel (papermill then returns with a dead-kernel error, which
the caller reads as the interruption) and silences the machinery's own error output.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from ..cli.common import Interrupted, SignalHandler
from .setup import GENERATE_NOTEBOOK

class KernelWatch:
    """Knows the kernel papermill starts for one notebook, so that a signal handler can end it.

    papermill (nbclient) still owns the kernel and shuts it down as usual; this only gives it a
    kernel-manager class that reports itself here, and quiets the kernel's own start-up log.
    """

    def __init__(self):
        self.manager = None

    def manager_class(self):
        from jupyter_client.manager import AsyncKernelManager

        watch = self

        class WatchedKernelManager(AsyncKernelManager):
            async def start_kernel(self, **kwargs):
                watch.manager = self
                if self.ipykernel:  # no "running over TCP without encryption" warning per run
                    kwargs["extra_arguments"] = [*(kwargs.get("extra_arguments") or []), "--IPKernelApp.log_level=ERROR"]
                return await super().start_kernel(**kwargs)

        return WatchedKernelManager

    def kill(self) -> bool:
        """Kill the kernel and its process group at once; True if one was running."""
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            return False
        try:
            if os.getpgid(process.pid) == process.pid:  # its own group (jupyter_client starts a new session)
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError):
            return False
        return True


def silence_notebook_machinery() -> None:
    """No log lines or warnings from papermill, nbclient, jupyter_client and asyncio any more
    (a deliberately killed kernel makes them print tracebacks and "kernel died")."""
    import logging
    import warnings

    for name in ("papermill", "nbclient", "jupyter_client", "traitlets", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    warnings.simplefilter("ignore")


class SignalGuard(SignalHandler):
    """SIGINT and SIGTERM for a process that executes notebooks (`siso-sweep`, `siso-demo --notebook`).

    The first signal kills the kernel that is running (papermill then returns with a dead-kernel
    error, which the caller reads as "interrupted" because `signum` is set) or, when no kernel
    runs, raises `Interrupted` at once. Either way the machinery's own error output is silenced,
    so the caller can report the interruption in one line. Later signals are ignored while the
    caller records what happened.
    """

    def __init__(self):
        super().__init__()
        self.watch: KernelWatch | None = None

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.signum is not None:
            return
        self.signum = signum
        silence_notebook_machinery()
        if self.watch is not None and self.watch.kill():
            return
        raise Interrupted(signum)


def execute_generate_notebook(
    output_notebook: str | Path,
    parameters: dict[str, Any],
    notebook: str | Path = GENERATE_NOTEBOOK,
    kernel_name: str | None = None,
    log_output: bool = False,
    execution_timeout: int | None = None,
    guard: SignalGuard | None = None,
) -> None:
    """Run 01_generate_lora.ipynb headless with papermill (interactive=False unless given).

    With a `guard`, a SIGINT/SIGTERM kills the kernel; this then raises `Interrupted`.
    """
    import papermill

    parameters = {"interactive": False, **parameters}
    watch = KernelWatch()
    if guard is not None:
        guard.raise_if_interrupted()
        guard.watch = watch
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output_notebook),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=log_output,
            cwd=os.getcwd(),  # relative paths and outputs/ mean what they mean to the caller
            execution_timeout=execution_timeout,
            kernel_manager_class=watch.manager_class(),  # passed on to nbclient
        )
    except Exception:
        if guard is not None:
            guard.raise_if_interrupted()
        raise
    finally:
        if guard is not None:
            guard.watch = None


# the notebook errors that mean "bad input" (the message names the fix; no result is possible)
INPUT_ERRORS = ("SISOInputError", "NotebookParameterError")


def describe_error(error: BaseException) -> str:
    """One line: the notebook's exception (papermill), or what stopped the kernel."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        where = getattr(error, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (notebook cell [{where}])" if where else "")
    name = type(error).__name__
    if name == "DeadKernelError":
        return "DeadKernelError: the notebook's kernel died (out of memory?)"
    text = str(error).strip().splitlines()
    return f"{name}: {text[-1] if text else ''}".strip()
