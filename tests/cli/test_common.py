"""What the commands share (cli/common.py): one error line `<prog>: error: ...`, and the progress
lines only for a program that reads them."""

from __future__ import annotations

import io
import json
import sys

import pytest

from siso_lib.cli.common import PROGRESS_LINES_ENV, ProgressPrinter, error_line, progress_lines_wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_lines_are_for_programs_not_for_a_terminal(monkeypatch):
    """The fresh-user trial: SISO_PROGRESS JSON lines broke up the tqdm bar on a terminal, --quiet or not.
    The ComfyUI nodes read them from a pipe, which is no terminal."""
    monkeypatch.delenv(PROGRESS_LINES_ENV, raising=False)
    assert progress_lines_wanted(Terminal()) is False and progress_lines_wanted(io.StringIO()) is True
    monkeypatch.setenv(PROGRESS_LINES_ENV, "1")
    assert progress_lines_wanted(Terminal()) is True
    monkeypatch.setenv(PROGRESS_LINES_ENV, "0")
    assert progress_lines_wanted(io.StringIO()) is False


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_the_cli_prints_progress_and_result_lines_only_where_a_program_reads_them(
        tiny_assets, subject_path, tmp_path, monkeypatch, capsys, terminal):
    from siso_lib.cli import generate

    monkeypatch.delenv(PROGRESS_LINES_ENV, raising=False)
    out = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    progress = tmp_path / "progress.jsonl"
    code = generate.main([
        "--subject_image_path", subject_path, "--pretrained_model_name_or_path", tiny_assets["sdxl"],
        "--dino_model_name", tiny_assets["dino"], "--ir_features_path", tiny_assets["ir"], "--resolution", "64",
        "--num_train_epochs", "2", "--device", "cpu", "--output_dir", str(tmp_path / "run"), "--quiet",
        "--progress_file", str(progress), "--preview_file", str(tmp_path / "preview.jpg"),
    ])
    assert code == 0, capsys.readouterr().err
    printed = out.getvalue()
    assert ("SISO_PROGRESS" in printed and "SISO_RESULT" in printed) is not terminal
    records = [json.loads(line) for line in progress.read_text().splitlines()]
    assert len(records) == 2  # the progress file is written either way
    # the live preview: each record names the image of its iteration (ComfyUI shows it on the node)
    assert all(record["preview"] == str(tmp_path / "preview.jpg") for record in records)
    from PIL import Image

    assert Image.open(tmp_path / "preview.jpg").size == (64, 64)
    # mode auto (the default) on a CPU: today's default mode, recorded as what ran
    runtime = json.loads((tmp_path / "run" / "run.json").read_text())["runtime"]
    assert (runtime["mode"], runtime["quantize"]) == ("default", "none")
    assert "CUDA graphs" not in capsys.readouterr().err  # not asked for, and no CUDA device: nothing said


def test_cuda_graphs_asked_for_on_a_cpu_say_why_they_are_off(tiny_assets, subject_path, tmp_path, capsys):
    from siso_lib.cli import generate

    code = generate.main([
        "--subject_image_path", subject_path, "--pretrained_model_name_or_path", tiny_assets["sdxl"],
        "--dino_model_name", tiny_assets["dino"], "--ir_features_path", tiny_assets["ir"], "--resolution", "64",
        "--num_train_epochs", "1", "--device", "cpu", "--output_dir", str(tmp_path / "run"), "--quiet", "--cuda_graphs",
    ])
    assert code == 0
    assert "siso: CUDA graphs need a CUDA device (this run uses cpu): iterations run eagerly" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["runtime"]["cuda_graphs_note"].startswith("CUDA graphs need")


@pytest.mark.slow
def test_loading_the_libraries_after_quiet_libraries_prints_nothing():
    """The fresh-user trial: every CPU run began with two `W... torch/utils/_pytree.py ... is an Enum
    subclass` lines (torch about torchao, which diffusers imports) and "Unable to import torchao"."""
    import subprocess

    code = ("from siso_lib.cli.common import quiet_libraries; quiet_libraries(); "
            "from diffusers import StableDiffusionXLPipeline; import peft, transformers")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr


def test_a_preview_that_cannot_be_written_never_ends_the_run(tmp_path):
    import torch

    from siso_lib.optimizer import StepEvent

    target = tmp_path / "preview.jpg"
    target.mkdir()  # a folder where the file should go: saving fails
    printer = ProgressPrinter(1, quiet=True, progress_file=str(tmp_path / "p.jsonl"), preview_file=str(target))
    event = StepEvent(step=1, max_steps=1, losses={"total": -1.0}, is_best=True, best_step=1, best_loss=-1.0, patience_count=0,
                      lr=1e-4, step_seconds=0.1, elapsed_seconds=0.1, image=torch.rand(1, 3, 64, 64))
    printer(event)
    assert "preview" not in json.loads((tmp_path / "p.jsonl").read_text())


def test_every_command_reports_an_error_as_prog_error(tmp_path):
    """The fresh-user trial: siso-generate, siso-edit and siso-eval printed a bare `error: ...`,
    siso-sweep `siso-sweep: error: ...`."""
    from cli_cases import run_cli_cases

    missing = str(tmp_path / "missing.png")
    cases = {
        "siso-generate": ("siso_lib.cli.generate", ["--subject_image_path", missing]),
        "siso-edit": ("siso_lib.cli.edit", ["--subject_image_path", missing, "--input_image_path", missing, "--subject_class", "cat",
                                            "--mask", missing]),
        "siso-eval": ("siso_lib.cli.evaluate", [str(tmp_path / "no-run")]),
        "siso-sweep": ("siso_lib.cli.sweep", ["--subjects", missing]),
        "siso-demo": ("siso_lib.cli.demo", ["--subject_image_path", missing]),
        "siso-make-test-assets": ("siso_lib.cli.make_test_assets", ["--size", "huge", str(tmp_path / "a")]),
        "siso-generate, argparse": ("siso_lib.cli.generate", ["--num_train_epoch", "3"]),
    }
    report, heavy = run_cli_cases(cases, tmp_path)
    for name, (code, stderr) in report.items():
        prog = name.split(",")[0]
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), (name, stderr)
    assert heavy == []
    assert error_line("siso-x", "bad") == "siso-x: error: bad"
