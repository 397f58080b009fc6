"""siso-generate, as a script file: the SISO LoRA Generator node's default `siso_script_path`.

Runs `siso_lib.generate.main` (the `siso-generate` command: every argument of the authors'
`siso_generation_sdxl.py` plus siso-lab's own) with the interpreter the node chose. If that
interpreter cannot import siso_lib but this pack sits inside a siso-lab checkout, the
checkout is put on the module path. It also makes sure the run never outlives ComfyUI: when
the parent process named in SISO_PARENT_PID goes away, the run gets SIGTERM (it then saves
the best LoRA so far and exits).
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


def _import_main():
    try:
        from siso_lib.generate import main

        return main
    except ModuleNotFoundError as error:
        if error.name not in ("siso_lib", "siso_lib.generate"):
            raise
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "siso_lib" / "generate.py").is_file():
        sys.path.insert(0, str(checkout))
        from siso_lib.generate import main

        return main
    print(
        f"error: No module named 'siso_lib' in {sys.executable}: install siso-lab there (pip install -e <siso-lab>) "
        "or set the node's python_executable to the environment siso-lab is installed in",
        file=sys.stderr,
    )
    raise SystemExit(2)


if __name__ == "__main__":
    _die_with_parent()
    try:
        main = _import_main()
    except ModuleNotFoundError as error:
        print(
            f"error: ModuleNotFoundError: No module named '{error.name}' in {sys.executable}: install siso-lab's "
            "requirements there, or set the node's python_executable to the environment siso-lab is installed in",
            file=sys.stderr,
        )
        raise SystemExit(2)
    sys.exit(main(sys.argv[1:]))
