"""siso-eval: one-line errors before torch, and a whole offline evaluation of a tiny run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_cases import run_cli_cases

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_before_torch(run_copy, tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "run.json").write_text(json.dumps({"status": "failed"}))
    (tmp_path / "empty.txt").write_text("\n# nothing\n")
    no_ir = tmp_path / "no-ir"
    record = json.loads((run_copy / "run.json").read_text())
    shutil.copytree(run_copy, no_ir)
    record["parameters"]["ir_features_path"] = None
    (no_ir / "run.json").write_text(json.dumps(record))
    moved = tmp_path / "moved"
    shutil.copytree(run_copy, moved)
    moved_record = json.loads((moved / "run.json").read_text())
    moved_record["subject_image"]["path"] = str(tmp_path / "gone.png")
    (moved / "run.json").write_text(json.dumps(moved_record))
    run = str(run_copy)
    cases = {
        "missing run": [str(tmp_path / "nowhere")],
        "failed run": [str(failed)],
        "folder without a LoRA": [str(tmp_path)],
        "no prompt file": [run, "--prompts", str(tmp_path / "missing.txt")],
        "empty prompt file": [run, "--prompts", str(tmp_path / "empty.txt")],
        "empty --prompt": [run, "--prompt", " "],
        "zero seeds": [run, "--seeds", "0"],
        "odd resolution": [run, "--resolution", "60"],
        "output_dir with two runs": [run, run, "--output_dir", str(tmp_path / "out")],
        "missing IR checkpoint": [run, "--ir_features_path", str(tmp_path / "ir.pth")],
        "run without IR": [str(no_ir)],
        "missing CLIP folder": [run, "--clip_model_name", str(tmp_path / "clip")],
        "missing DINO folder": [run, "--dino_model_name", str(tmp_path / "dino")],
        "unknown option": [run, "--seed", "3"],
        "output_dir is a file": [run, "--output_dir", str(tmp_path / "empty.txt")],
        "output_dir holds other files": [run, "--output_dir", str(tmp_path)],
        "empty class": [run, "--class_name", ""],
        "unknown placeholder": [run, "--prompt", "a {clas} on the beach"],
        "resolution too small": [run, "--resolution", "16"],
        "a folder of runs": [str(run_copy.parent)],
        "moved subject photo": [str(moved)],
        "prompt file is a folder": [run, "--prompts", str(tmp_path)],
        "reference baseline on an SDXL run": [run, "--baseline", "reference"],
    }
    started = time.perf_counter()
    report, heavy = run_cli_cases({name: ("siso_lib.cli.evaluate", args) for name, args in cases.items()}, cwd=REPO)
    elapsed = time.perf_counter() - started
    for name, (code, stderr) in report.items():
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert code == 2, (name, code, lines)
        assert len(lines) == 1 and lines[0].startswith("siso-eval: error: "), (name, lines)
    assert heavy == []
    assert not (tmp_path / "out").exists() and not (run_copy / "eval").exists()
    assert (tmp_path / "empty.txt").is_file()  # the user's file is never replaced by an evaluation folder
    print(f"{len(cases)} bad inputs answered in {elapsed:.1f} s together")


@pytest.mark.slow
def test_siso_eval_scores_a_tiny_run_offline(run_copy, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("'a {0} {1} in the jungle'.format(unique_token, class_token),\na {class} on the moon\n")
    command = [sys.executable, "-m", "siso_lib.cli.evaluate", str(run_copy), "--prompts", str(prompts), "--seeds", "2", "--device", "cpu"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    elapsed = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny random-weight judges" in done.stderr
    record = json.loads((run_copy / "eval" / "metrics.json").read_text())
    assert record["prompts"] == ["a cat in the jungle", "a cat on the moon"] and record["seeds"] == [0, 1]
    assert record["judges"]["clip"].endswith("clip") and record["judges"]["ir"].endswith("ir_features.pth")
    summary_line = next(line for line in done.stderr.splitlines() if "with LoRA: DINO" in line)
    assert f"DINO {record['summary']['lora']['dino']:.3f}" in summary_line
    assert json.loads((run_copy / "run.json").read_text())["evaluation"]["summary"] == record["summary"]
    print(f"siso-eval on a tiny run: {elapsed:.1f} s")


def test_crop_to_the_subject_uses_grounding_dino(tiny_judges, run_copy, tmp_path):
    """The paper's protocol: crop before DINO / CLIP-I / IR (a tiny random detector, threshold 0: always a box)."""
    from siso_lib.evaluation import EvalSettings, Evaluator
    from siso_lib.features.detection import SubjectDetector
    from siso_lib.offline.tiny_detectors import write_tiny_grounding_dino

    detector = SubjectDetector.from_pretrained(write_tiny_grounding_dino(tmp_path / "gdino"))
    evaluator = Evaluator(tiny_judges, device="cpu", detector=detector)
    settings = dict(templates=("a photo of a {class}",), seeds=(0, 1))
    plain = evaluator.evaluate(run_copy, EvalSettings(**settings), write=False)
    cropped = evaluator.evaluate(run_copy, EvalSettings(**settings, crop_subject=True, box_threshold=0.0), write=False)
    assert cropped.record["crop_subject"] and cropped.record["subject_photo_cropped"]
    assert all(row["cropped"] for row in cropped.record["images"])
    assert cropped.record["judges"]["detector"].endswith("gdino")
    assert cropped.summary["lora"]["clip_t"] == pytest.approx(plain.summary["lora"]["clip_t"], abs=1e-6)  # CLIP-T sees the whole picture
    assert cropped.summary["lora"]["dino"] != plain.summary["lora"]["dino"]
    never = evaluator.evaluate(run_copy, EvalSettings(**settings, crop_subject=True, box_threshold=1.01), write=False)
    assert not any(row["cropped"] for row in never.record["images"])
    assert never.summary["lora"]["dino"] == pytest.approx(plain.summary["lora"]["dino"], abs=1e-6)


def test_a_side_evaluation_leaves_the_runs_record_alone(tiny_judges, run_copy, tmp_path):
    """--output_dir elsewhere: run.json (and so a sweep's results.csv) keeps the run's own eval/ scores."""
    from siso_lib.evaluation import EvalSettings, Evaluator

    evaluator = Evaluator(tiny_judges, device="cpu")
    own = evaluator.evaluate(run_copy, EvalSettings(templates=("a photo of a {class}",), seeds=(0, 1)))
    before = json.loads((run_copy / "run.json").read_text())["evaluation"]
    side = evaluator.evaluate(run_copy, EvalSettings(templates=("a {class} made of lego",), seeds=(3,)), output_dir=tmp_path / "side")
    assert (tmp_path / "side" / "metrics.json").is_file() and side.summary != own.summary
    assert json.loads((run_copy / "run.json").read_text())["evaluation"] == before
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError, match="holds other files"):
        evaluator.evaluate(run_copy, EvalSettings(templates=("a {class}",), seeds=(0,)), output_dir=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
