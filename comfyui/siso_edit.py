"""siso-edit, as a script file: what the SISO Subject Edit node runs.

Runs `siso_lib.cli.edit.main` (the `siso-edit` command: the authors' `siso_editing_sdxl.py`
arguments plus `--mask` and `--prompt`) with the interpreter the node chose, exactly as
`siso_generate.py` runs siso-generate: a siso-lab checkout around this pack is put on the module
path when the interpreter lacks siso_lib, a missing siso-lab is one line naming the install
command, and when ComfyUI (SISO_PARENT_PID) or the output pipe goes away the edit finishes its
iteration and writes what it has (siso_lib.cli.common.LostContact).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # siso_generate.py beside this file

from siso_generate import run  # noqa: E402

if __name__ == "__main__":
    run("siso_lib.cli.edit")
