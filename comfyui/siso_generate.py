"""siso-generate, as a script file: the SISO LoRA Generator node's default `siso_script_path`.

Runs `siso_lib.cli.generate.main` (the `siso-generate` command: every argument of the authors'
`siso_generation_sdxl.py` plus siso-lab's own) with the interpreter the node chose. If that
interpreter cannot import siso_lib but this pack sits inside a siso-lab checkout, the
checkout is put on the module path; otherwise it prints the one command that installs
siso-lab into that interpreter's environment (this folder's install.py). It also makes
sure the run never outlives ComfyUI: when the parent process named in SISO_PARENT_PID goes
away, the run gets SIGTERM (it then saves the best LoRA so far and exits).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path


def _die_with_parent() -> None:
    expected = os.environ.get("SISO_PARENT_PID")
    if not expected or not expected.isdigit() or os.name == "nt":
        return
    expected_pid = int(expected)
    if os.getppid() != expected_pid:
        return  # started through a wrapper (conda run, a shell script): leave it to the wrapper
    def watch() -> None:
        while True:
            if os.getppid() != expected_pid:
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(1.0)

    threading.Thread(target=watch, daemon=True, name="siso-parent-watch").start()


def _import_main(module: str = "siso_lib.cli.generate"):
    """`main` of siso_lib's command-line module `module` (siso_lib.cli.generate, siso_lib.cli.edit)."""
    import importlib

    try:
        return importlib.import_module(module).main
    except ModuleNotFoundError as error:
        if error.name != "siso_lib" and not module.startswith(f"{error.name}.") and error.name != module:
            raise
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / Path(*module.split("."))).with_suffix(".py").is_file() and "siso_lib" not in sys.modules:
        sys.path.insert(0, str(checkout))
        return importlib.import_module(module).main
    if "siso_lib" in sys.modules:  # an older siso-lab, without this command
        print(f"error: the siso-lab installed in {sys.executable} has no {module} (an older version): run {_install_command()}",
              file=sys.stderr)
    else:
        print(f"error: siso-lab is not installed in {sys.executable} (No module named 'siso_lib'): run {_install_command()}",
              file=sys.stderr)
    raise SystemExit(2)


def _install_command() -> str:
    """The one command that installs siso-lab and its requirements into this interpreter's environment."""
    parts = [sys.executable, str(Path(__file__).resolve().with_name("install.py"))]
    if os.name == "nt":
        return " ".join(f'"{part}"' if " " in part else part for part in parts)
    import shlex

    return " ".join(shlex.quote(part) for part in parts)


def run(module: str = "siso_lib.cli.generate") -> None:
    """The launcher: die with ComfyUI, import `module`'s main (or say how to install siso-lab), run it, exit."""
    _die_with_parent()
    try:
        main = _import_main(module)
    except ModuleNotFoundError as error:
        print(f"error: ModuleNotFoundError: No module named '{error.name}' in {sys.executable}: run {_install_command()}",
              file=sys.stderr)
        raise SystemExit(2)
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run("siso_lib.cli.generate")
