"""Where things are: the notebooks and example photos the package ships, and where outputs go.

Shipped files: an installed package (a wheel, `pip install git+URL`, a ComfyUI venv) holds the
notebooks and the example photos as package data under `siso_lib/_resources/`; a checkout (an
editable install) reads them from the repository's `notebooks/` and `data/`. Both are the same
files: the wheel is built from those folders (pyproject's package-dir mapping).

Outputs go under one root, for the command lines and the notebooks alike:

    $SISO_OUTPUT_ROOT              when set
    <checkout>/outputs             when the current folder is a checkout's notebooks/ folder
                                   (JupyterLab starts a notebook's kernel there)
    ./outputs                      otherwise: under the current folder

with `runs/` (one folder per run), `sweeps/` (one folder per sweep) and `test-assets/` (the tiny
offline models) inside it.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CHECKOUT_DIR = PACKAGE_DIR.parent  # the repository, when the package runs from a checkout
OUTPUT_ROOT_VARIABLE = "SISO_OUTPUT_ROOT"


def shipped(folder: str) -> Path:
    """The shipped folder `folder` ("notebooks" or "data"): package data, or the checkout's folder."""
    packaged = PACKAGE_DIR / "_resources" / folder
    return packaged if packaged.is_dir() else CHECKOUT_DIR / folder


def notebook_path(name: str) -> Path:
    """A shipped notebook, e.g. "01_generate_lora.ipynb"."""
    return shipped("notebooks") / name


def example_photo(name: str) -> Path:
    """A shipped example photo, e.g. "cat.png" (data/LICENSE.md says where each comes from)."""
    return shipped("data") / name


def is_checkout(folder: Path) -> bool:
    """A siso-lab repository: the package beside a pyproject.toml."""
    return (folder / "pyproject.toml").is_file() and (folder / "siso_lib" / "__init__.py").is_file()


def output_root() -> Path:
    """The folder outputs go under (see the module doc), absolute; not created here."""
    configured = os.environ.get(OUTPUT_ROOT_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser().absolute()
    here = Path.cwd()
    if here.name == "notebooks" and is_checkout(here.parent):
        return here.parent / "outputs"
    return here / "outputs"


def runs_root() -> Path:
    """Where each run without an --output_dir gets a fresh folder."""
    return output_root() / "runs"


def sweeps_root() -> Path:
    return output_root() / "sweeps"


def test_assets_dir() -> Path:
    """Where the tiny offline models are written once."""
    return output_root() / "test-assets"
