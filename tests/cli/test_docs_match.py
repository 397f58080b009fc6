"""The docs say what the code does, as a newcomer reads them (field reports, round 2, items 15-16):
every notebook has a papermill command whose `-p` names are its parameters, and is listed in the
layout; a documented range of a setting is the config's range; every file a sweep writes is named
in docs/sweeps.md, with the `--grid NAME=[JSON list]` form; the offline advice (HF_HUB_OFFLINE=1)
stands where each command is introduced. Reads files only: no model, no torch."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
DOCS = {path.name: path.read_text(encoding="utf-8") for path in (REPO / "docs").glob("*.md")}
README = (REPO / "README.md").read_text(encoding="utf-8")


def parameters_of(notebook: Path) -> set[str]:
    """The names assigned in the notebook's cell tagged `parameters` (papermill's)."""
    nb = nbformat.read(str(notebook), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
    body = ast.parse(cell.source).body
    targets = [t for node in body if isinstance(node, ast.Assign) for t in node.targets]
    targets += [node.target for node in body if isinstance(node, ast.AnnAssign)]  # `model_family: str = "auto"`
    return {target.id for target in targets if isinstance(target, ast.Name)}


def papermill_commands(text: str, notebook: str) -> list[list[str]]:
    """Each `papermill notebooks/<notebook> ...` command of the bash blocks of `text`, as arguments."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.startswith(f"papermill notebooks/{notebook} "):
                commands.append(shlex.split(line.split("#")[0]))
    return commands


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.name)
def test_every_notebook_has_a_papermill_command_with_its_own_parameters(notebook):
    commands = papermill_commands(DOCS["notebooks.md"], notebook.name)
    assert commands, f"docs/notebooks.md has no papermill command for {notebook.name}"
    names = parameters_of(notebook)
    for command in commands:
        given = [command[i + 1] for i, word in enumerate(command) if word == "-p"]
        assert set(given) <= names, (notebook.name, sorted(set(given) - names))
    assert f"`{notebook.stem}`" in DOCS["layout.md"] or notebook.name in DOCS["layout.md"], notebook.name
    assert notebook.name in README


def documented_ranges(name: str) -> list[tuple[str, str]]:
    """(low, high) of every `--name ... [low, high]` or `(low, high]` in the README and docs/."""
    pattern = re.compile(rf"{name}`?[^\[\(\n]{{0,120}}?[\[\(]([\d.]+), ([\d.]+)\]")
    return [found for text in [README, *DOCS.values()] for found in pattern.findall(text)]


def test_a_documented_range_is_the_configs_range():
    """--inversion_max_step was documented [0.25, 1] while --help said (0, 1]: both come from the config now."""
    from siso_lib.cli.edit import build_parser
    from siso_lib.config import MIN_INVERSION_STEP

    ranges = documented_ranges("inversion_max_step")
    assert ranges and set(ranges) == {(f"{MIN_INVERSION_STEP:g}", "1")}, ranges
    help_text = re.sub(r"\s+", " ", build_parser().format_help())
    assert f"[{MIN_INVERSION_STEP:g}, 1]" in help_text and "(0, 1]" not in help_text


def test_every_file_a_sweep_writes_is_named_in_its_page():
    from siso_lib.sweeps import spec

    text = DOCS["sweeps.md"]
    for name in (spec.SPEC, spec.RESULTS, spec.RECORD):
        assert f"`{name}`" in text or f"/{name}`" in text, name
    assert "NAME=[JSON list]" in text


@pytest.mark.parametrize("page", ["command-line.md", "editing.md", "evaluation.md", "sweeps.md", "install.md", "troubleshooting.md"])
def test_the_offline_advice_stands_where_each_command_is_introduced(page):
    """Without HF_HUB_OFFLINE=1 a missing hub model is reported after the hub client's retries
    (siso-edit --input_class: 43 s instead of 13 s): each page that introduces a command says so."""
    assert "HF_HUB_OFFLINE=1" in DOCS[page]
    assert "HF_HUB_OFFLINE=1" in README
