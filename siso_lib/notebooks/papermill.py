"""Executing notebooks headless with papermill (siso-demo --notebook, siso-sweep), and ending them
cleanly on SIGINT / SIGTERM.

`notebook_route_problem` says, before anything is written or torch is imported, when this Python
cannot execute a notebook at all (the `notebooks` extra is not installed, or there is no Jupyter
kernel of the notebook's name): the commands refuse in one line naming the fix, exit code 2.

`SignalGuard` is the command lines' `SignalHandler` for a process whose work runs in a Jupyter
kernel: the first signal kills the kernel (papermill then returns with a dead-kernel error, which
the caller reads as the interruption) and silences the machinery's own error output.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from ..cli.common import Interrupted, SignalHandler
from .setup import GENERATE_NOTEBOOK

# what executing a notebook headless needs: papermill and the Jupyter pieces it drives (the
# `notebooks` extra of pyproject.toml; the core install has none of them)
NOTEBOOK_MODULES = ("papermill", "nbformat", "nbclient", "jupyter_client", "ipykernel")
NOTEBOOKS_INSTALL = ('pip install "papermill>=2.6" "nbformat>=5" "nbclient>=0.10" "ipykernel>=6" (the notebooks extra of '
                     'siso-lab: pip install -e ".[notebooks]" in a clone)')


def _importable(module: str) -> bool:
    """Whether `module` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def notebook_kernel_name(notebook: str | Path) -> str:
    """The kernel a notebook asks for (its metadata's kernelspec name; papermill's default "python3")."""
    import json

    try:
        metadata = json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata") or {}
    except (OSError, ValueError, AttributeError):
        return "python3"
    return (metadata.get("kernelspec") or {}).get("name") or "python3"


def notebook_route_problem(notebook: str | Path = GENERATE_NOTEBOOK, kernel_name: str | None = None,
                           kernel_option: str | None = None) -> str | None:
    """Why this Python cannot execute `notebook` headless, in one line naming the fix; None when it
    can. Checks that the modules of the notebooks extra can be imported (without importing them)
    and that a Jupyter kernel of the name papermill will ask for exists; loads no torch.
    `kernel_option`: the command's option that picks another kernel (siso-sweep's --kernel)."""
    missing = [module for module in NOTEBOOK_MODULES if not _importable(module)]
    if missing:
        names = missing[0] if len(missing) == 1 else f"{', '.join(missing[:-1])} and {missing[-1]}"
        verb = "is" if len(missing) == 1 else "are"
        return f"executing a notebook needs {names}, which {verb} not installed in {sys.executable}: {NOTEBOOKS_INSTALL}"
    name = kernel_name or notebook_kernel_name(notebook)
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        other = f", or pick one with {kernel_option} NAME" if kernel_option else ""
        return (f"there is no Jupyter kernel named {name!r} (jupyter kernelspec list shows those there are): install one "
                f"with {sys.executable} -m ipykernel install --user --name {name}{other}")
    return None

class KernelWatch:
    """Knows the kernel papermill starts for one notebook, so that a signal handler can end it.

    papermill (nbclient) still owns the kernel and shuts it down as usual; this only gives it a
    kernel-manager class that reports itself here, and quiets the kernel's own start-up log.
    """

    def __init__(self, env: dict[str, str] | None = None):
        self.manager = None
        self.env = env or {}  # set in the kernel's environment (e.g. OMP_NUM_THREADS=1 for the tiny CPU models)

    def manager_class(self):
        from jupyter_client.manager import AsyncKernelManager

        watch = self

        class WatchedKernelManager(AsyncKernelManager):
            async def start_kernel(self, **kwargs):
                watch.manager = self
                if self.ipykernel:  # no "running over TCP without encryption" warning per run
                    kwargs["extra_arguments"] = [*(kwargs.get("extra_arguments") or []), "--IPKernelApp.log_level=ERROR"]
                if watch.env:
                    kwargs["env"] = {**(kwargs.get("env") or os.environ), **watch.env}
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
    kernel_env: dict[str, str] | None = None,
) -> None:
    """Run 01_generate_lora.ipynb headless with papermill (interactive=False unless given).

    With a `guard`, a SIGINT/SIGTERM kills the kernel; this then raises `Interrupted`.
    `kernel_env` is added to the kernel's environment (offline.single_thread_env's choice).
    """
    import papermill

    parameters = {"interactive": False, **parameters}
    watch = KernelWatch(kernel_env)
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
