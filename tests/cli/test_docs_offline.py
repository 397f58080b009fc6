"""The docs' offline forms run as pasted: `siso-generate` (docs/command-line.md), `siso-edit` and the
editing "From Python" example (docs/editing.md), from a folder holding `data/` and the tiny models
at `outputs/test-assets`, as a clone after `siso-make-test-assets outputs/test-assets` does. Only
the number of iterations is cut, by an option added at the end (the last value wins)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def offline_block(page: str) -> str:
    """The bash block of `page` that sets A=outputs/test-assets."""
    text = (REPO / "docs" / page).read_text(encoding="utf-8")
    return next(block for block in re.findall(r"```bash\n(.*?)```", text, re.S) if "A=outputs/test-assets" in block)


def command_of(block: str, program: str) -> list[str]:
    """The `program ...` command of a bash block (continuation lines joined, $A expanded as bash would)."""
    joined = re.sub(r"\\\n\s*", " ", block)
    line = next(line for line in joined.splitlines() if line.startswith(program + " "))
    return shlex.split(line.replace("$A", "outputs/test-assets"))[1:]


@pytest.fixture
def clone_like(tiny_assets, tmp_path, monkeypatch):
    """An empty folder with data/ and outputs/test-assets (the tiny models) in it, as the cwd."""
    (tmp_path / "data").symlink_to(REPO / "data")
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "test-assets").symlink_to(Path(tiny_assets["sdxl"]).parent)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SISO_OUTPUT_ROOT", raising=False)
    return tmp_path


@pytest.mark.parametrize("page, program", [("command-line.md", "siso-generate"), ("editing.md", "siso-edit")])
def test_the_offline_command_runs_as_pasted(clone_like, page, program, capsys):
    from siso_lib.cli import edit, generate

    block = offline_block(page)
    assert "siso-make-test-assets outputs/test-assets" in block  # what writes the models it names
    main = {"siso-generate": generate.main, "siso-edit": edit.main}[program]
    code = main(command_of(block, program) + ["--num_train_epochs", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert len(list((clone_like / "outputs" / "runs").glob("*/pytorch_lora_weights.safetensors"))) == 1


def test_the_editing_python_example_runs_as_pasted(clone_like, capsys):
    text = (REPO / "docs" / "editing.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "**OFFLINE_OVERRIDES)" in code and "/path/to" not in code
    code = code.replace("**OFFLINE_OVERRIDES)", "**{**OFFLINE_OVERRIDES, 'num_train_epochs': 2})")
    exec(compile(code, "docs/editing.md", "exec"), {})
    printed = capsys.readouterr().out.split()
    assert printed[0].endswith("result.png") and Path(printed[0]).is_file() and printed[1].endswith("result_square.png")
