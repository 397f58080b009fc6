"""Run command-line cases in one fresh interpreter and report which heavy libraries they imported.

The command lines answer --help and every error that needs no model before torch is imported;
`run_cli_cases` proves it: each case calls a module's `main(args)` in a new Python process (so
nothing the tests imported counts), and the heavy modules loaded by the end are listed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

HEAVY_MODULES = ("torch", "diffusers", "transformers", "timm", "open_clip", "kornia")

_SCRIPT = r'''
import contextlib, importlib, io, json, sys
cases, heavy_modules = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for blocked in json.loads(sys.argv[3]):
    sys.modules[blocked] = None  # as if not installed: find_spec says None, import raises ImportError
report = {}
for name, (module, args) in cases.items():
    main = importlib.import_module(module).main
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exit:
            code = exit.code
    report[name] = [code, err.getvalue()]
print(json.dumps({"report": report, "heavy": sorted(m for m in heavy_modules if m in sys.modules)}))
'''


def run_cli_cases(cases: dict[str, tuple[str, list[str]]], cwd: str | Path, timeout: float = 120,
                  not_installed: tuple[str, ...] = ()) -> tuple[dict[str, tuple[int, str]], list[str]]:
    """cases: name -> (module, argv); `not_installed`: modules the cases see as missing (e.g. papermill).
    Returns ({name: (exit code, stderr)}, heavy modules imported)."""
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, json.dumps(cases), json.dumps(HEAVY_MODULES), json.dumps(not_installed)],
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    return {name: (code, stderr) for name, (code, stderr) in outcome["report"].items()}, outcome["heavy"]


ERROR_LINE = re.compile(r"^siso-[a-z-]+: error: ")  # every command: `<prog>: error: ...` (cli.common.print_error)


def error_lines(stderr: str, prog: str | None = None) -> list[str]:
    """The `<prog>: error: ...` lines of `stderr` (of that one command when `prog` is given)."""
    return [line for line in stderr.splitlines()
            if (line.startswith(f"{prog}: error: ") if prog else ERROR_LINE.match(line))]
