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
    words = next(shlex.split(line.replace("$A", "outputs/test-assets")) for line in joined.splitlines()
                 if program in line.split())
    return words[words.index(program) + 1:]  # after any VAR=value prefix (OMP_NUM_THREADS=1)


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


@pytest.mark.slow  # a whole demo (30 iterations) and an evaluation: minutes on a CPU
def test_the_offline_evaluation_runs_as_pasted(clone_like, capsys):
    """docs/evaluation.md's "Offline" block, siso-demo then siso-eval on its run, as pasted; only
    the seeds are cut (an option added at the end)."""
    import glob

    from siso_lib.cli import demo, evaluate

    text = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
    block = re.search(r"```bash\n(.*?)```", text.split("## Offline", 1)[1], re.S).group(1)
    lines = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert [line.split()[0] for line in lines] == ["siso-demo", "siso-eval"], lines
    assert demo.main(shlex.split(lines[0])[1:]) == 0, capsys.readouterr().err
    runs = [word for pattern in shlex.split(lines[1])[1:] for word in sorted(glob.glob(pattern)) or [pattern]]  # as bash expands it
    assert len(runs) == 1 and evaluate.main(runs + ["--seeds", "1"]) == 0, capsys.readouterr().err
    assert (Path(runs[0]) / "eval" / "metrics.json").is_file()


def test_the_offline_evaluation_python_example_runs_as_pasted(clone_like, capsys):
    text = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    code = [c for c in re.findall(r"```python\n(.*?)```", section, re.S) if "offline_config" in c][0]
    assert "/path/to" not in code and "num_train_epochs=5" in code and "seeds=range(2)" in code
    code = code.replace("num_train_epochs=5", "num_train_epochs=2").replace("seeds=range(2)", "seeds=range(1)")
    exec(compile(code, "docs/evaluation.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()[-1]
    assert printed.startswith("True {'dino': "), printed  # the tiny judges, and the delta's scores


def test_every_claim_that_a_run_repeats_names_its_conditions():
    """The fresh-user trial: "pasted it repeats the run exactly" held only on the same machine with
    the same library versions (other versions or threads change the last digits). Every page and
    the demo that say a run repeats say under which conditions."""
    claims = re.compile(r"repeats the run|same losses|repeat a run|repeat the run", re.I)
    texts = {path.name: path.read_text(encoding="utf-8") for path in [*(REPO / "docs").glob("*.md"), REPO / "README.md"]}
    import siso_lib.cli.demo

    texts["siso-demo's docstring"] = siso_lib.cli.demo.__doc__
    for name, text in texts.items():
        for paragraph in re.split(r"\n\s*\n", text):
            if claims.search(paragraph) and "differences" not in name:
                flat = " ".join(paragraph.split())
                assert "exactly" not in flat, (name, flat)
                assert "versions" in flat, (name, flat)


def test_the_readmes_make_commands_are_the_makefiles():
    """The fresh-user trial: the README's "Two commands" section listed three. The section's title
    counts its commands, each is a Makefile target, and test-fast's pytest options are the ones said."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    title, section = re.search(r"^## (\w+) commands\n(.*?)(?=^## )", readme, re.S | re.M).groups()
    commands = re.findall(r"^make ([\w-]+)", re.search(r"```bash\n(.*?)```", section, re.S).group(1), re.M)
    numbers = {"One": 1, "Two": 2, "Three": 3, "Four": 4, "Five": 5}
    assert numbers[title] == len(commands), (title, commands)
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = dict(re.findall(r"^([\w-]+):[^\n]*\n\t([^\n]*)", makefile, re.M))
    assert all(command in targets for command in commands), (commands, list(targets))
    assert re.search(rf"^# {title} commands", makefile, re.M)  # the Makefile's own header says the same
    said = re.search(r"`make test-fast` runs `pytest ([^`]*)`", section).group(1)
    assert said in targets["test-fast"] and "--notebook" in targets["demo"] and "siso-demo --notebook" in section
