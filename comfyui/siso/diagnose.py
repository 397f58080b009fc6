"""Why a run failed, in one line without 'Failed: ', from its exit code, SISO_RESULT and stderr.

siso-lab's commands say it themselves: the SISO_RESULT's stop reason (out of memory, a
non-finite loss, ...) and their one `error:` line are trusted first; after an out-of-memory that
line is the status as it is (it names the mode the memory model predicts would fit). The regexes over stderr
are for what those cannot say: a crash before their main ran (a module missing in the SISO
environment), a process killed by a signal, and the authors' scripts, which print tracebacks.
"""

from __future__ import annotations

import re
import signal

from . import upstream
from .messages import one_line
from .pack import install_hint

OOM_PATTERNS = (
    "cuda out of memory", "outofmemoryerror", "out of memory", "mps backend out of memory",
    "hip out of memory", "cudnn_status_alloc_failed", "cublas_status_alloc_failed", "not enough memory",
    "defaultcpuallocator: can't allocate memory",
)
OOM_HINT = (
    "close other GPU programs (and keep unload_models on), or use mode low-memory, "
    "a lower resolution, or train_text_encoder off"
)


def diagnose(returncode: int | None, stderr_lines: list[str], result: dict | None = None, python: str = "",
             flavour: str = "siso-lab") -> str:
    """Why a run failed, as one line; `python` is the interpreter that ran it, `flavour` its script's kind."""
    result = result or {}
    lines = [line for line in stderr_lines if line.strip()]
    error = str(result["error"]) if result.get("error") else ""
    if flavour == "siso-lab":  # out of memory: its own line names the mode the memory model predicts would fit
        said = error or own_error(lines)
        if said and (result.get("stop_reason") == "out_of_memory" or "out of memory" in said.lower()):
            return said
    if flavour == "siso-lab" and result:  # its main ran to the end and said how the run went
        return stopped(result, lines) or own_error(lines) or error or crashed(returncode, lines)
    return (stopped(result, lines) or missing_module(lines, python, flavour) or own_error(lines) or _file_not_found(lines)
            or error or crashed(returncode, lines))


def stopped(result: dict, lines: list[str]) -> str:
    """The run ended on out-of-memory, a non-finite loss or a CUDA-graph mismatch (SISO_RESULT's stop reason)."""
    stop = result.get("stop_reason")
    if stop == "out_of_memory" or any(pattern in "\n".join(lines).lower() for pattern in OOM_PATTERNS):
        detail = ""
        for line in reversed(lines):
            if "out of memory" in line.lower() and "tried to allocate" in line.lower():
                match = re.search(r"tried to allocate [0-9.]+ [KMGT]?i?B", line, re.IGNORECASE)
                detail = f" ({match.group(0)})" if match else ""
                break
        return f"out of GPU memory{detail}: {OOM_HINT}"
    if stop == "non_finite_loss":
        return f"the loss became NaN/infinite ({result.get('error') or 'non-finite loss'}): try mixed_precision fp32 or a lower learning_rate"
    if stop == "cuda_graph_mismatch":
        return "the CUDA graph replay disagreed with the same step run eagerly: put --no-cuda_graphs in extra_args"
    return ""


def missing_module(lines: list[str], python: str, flavour: str) -> str:
    """A module the SISO environment lacks (a crash before the command's main), with the command that installs it."""
    for line in reversed(lines):
        match = re.search(r"No module named '([^']+)'", line)
        if match:
            module = match.group(1)
            where = f" ({python})" if python else ""
            if flavour == "upstream":
                return upstream.missing_module(module, where)
            fix = install_hint(python) if python else "run install.py with that Python"
            if module.split(".")[0] == "siso_lib":
                return f"siso-lab is not installed in the Python that runs SISO{where}: {fix}"
            return f"the Python that runs SISO{where} has no module '{module}': {fix}"
    for line in reversed(lines):
        if "ImportError" in line or "cannot import name" in line:
            return f"import error in the SISO environment: {one_line(line.split('ImportError:')[-1].strip())}"
    return ""


def own_error(lines: list[str]) -> str:
    """The command's own one-line `error: ...` (siso-lab's, or argparse's `prog: error: ...`)."""
    for line in reversed(lines):
        stripped = line.strip()
        if stripped.startswith("error: ") or re.match(r"^[\w.-]+: error: ", stripped):
            message = stripped.split("error: ", 1)[1]
            if message.startswith("unrecognized arguments"):
                return (
                    f"the script rejected arguments ({message}): is siso_script_path a SISO generation script "
                    "with the upstream argument list? (remove them from extra_args)"
                )
            return message
    return ""


def _file_not_found(lines: list[str]) -> str:
    for line in reversed(lines):
        match = re.search(r"(?:FileNotFoundError|No such file or directory)[^'\"]*['\"]([^'\"]+)['\"]", line)
        if match:
            return f"file not found: {match.group(1)}"
    return ""


def crashed(returncode: int | None, lines: list[str]) -> str:
    """A signal, an interrupt, the last exception line, or the last line."""
    if returncode is not None and returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = " (out of system RAM? the kernel's OOM killer sends SIGKILL)" if name == "SIGKILL" else ""
        return f"the SISO process was killed by {name}{hint}"
    if returncode in (130, 143):
        return "the SISO process was interrupted (SIGINT/SIGTERM from outside ComfyUI)"
    for line in reversed(lines):
        stripped = line.strip()
        if re.match(r"^[A-Z]\w*(Error|Exception)\b", stripped):
            return stripped
    if lines:
        return f"exit code {returncode}: {lines[-1].strip()}"
    return f"the script exited with code {returncode} and printed no error"
