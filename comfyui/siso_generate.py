"""siso-generate, as a script file: the SISO LoRA Generator node's default `siso_script_path`.

Runs `siso_lib.cli.generate.main` (the `siso-generate` command: every argument of the authors'
`siso_generation_sdxl.py` plus siso-lab's own) with the interpreter the node chose. If that
interpreter cannot import siso_lib but this pack sits inside a siso-lab checkout, the
checkout is put on the module path; otherwise it prints the one command that installs
siso-lab into that interpreter's environment (this folder's install.py). The run never
outlives ComfyUI and never loses its work when ComfyUI dies: siso_lib's command line watches
the parent named in SISO_PARENT_PID (the node sets it) and its output pipes, and when either
goes away it finishes the iteration in progress, writes the best LoRA and run.json
("interrupted", with the reason) and exits (siso_lib/cli/common.py, LostContact).
"""

from __future__ import annotations

import sys
from pathlib import Path


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
    """The one command that installs siso-lab and its requirements into this interpreter's environment
    (siso/pack.py's install_hint, read by path: this interpreter may lack everything but the stdlib)."""
    import importlib.util

    here = Path(__file__).resolve().parent
    spec = importlib.util.spec_from_file_location("siso_pack_paths", here / "siso" / "pack.py")
    paths = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(paths)
    return paths.install_hint(sys.executable, installer=here / "install.py").removeprefix("run ")


def run(module: str = "siso_lib.cli.generate") -> None:
    """The launcher: import `module`'s main (or say how to install siso-lab), run it, exit."""
    try:
        main = _import_main(module)
    except ModuleNotFoundError as error:
        print(f"error: ModuleNotFoundError: No module named '{error.name}' in {sys.executable}: run {_install_command()}",
              file=sys.stderr)
        raise SystemExit(2)
    sys.exit(main(sys.argv[1:]))


if __name__ == "__main__":
    run("siso_lib.cli.generate")
