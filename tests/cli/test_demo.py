import pytest
"""`make demo`'s command (siso-demo) finishes and writes every artefact."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_command_writes_every_artefact(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "siso_lib.cli.demo", "--assets_dir", str(tmp_path / "assets"), "--output_dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("pytorch_lora_weights.safetensors", "siso_lora_kohya.safetensors", "result.png", "loss_curve.png", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in proc.stderr  # the demo says where each artefact went
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["steps_run"] >= 2
    assert record["history"][-1]["total"] < record["history"][0]["total"]
    assert "tiny random-weight models" in proc.stderr


@pytest.mark.slow
def test_demo_never_replaces_an_earlier_lora_unasked(tmp_path):
    """The fresh-user trial: `siso-demo --output_dir X` silently replaced a LoRA already in X."""
    out = tmp_path / "held"
    out.mkdir()
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"an earlier run's LoRA")
    command = [sys.executable, "-m", "siso_lib.cli.demo", "--assets_dir", str(tmp_path / "assets"), "--output_dir", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "already holds a LoRA" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == b"an earlier run's LoRA"


def test_adding_a_family_to_the_assets_leaves_the_other_models_alone(tmp_path):
    """A sweep adding FLUX to a folder other runs read must not rewrite their SDXL, DINO and IR files."""
    from siso_lib.offline import ensure_test_assets

    first = ensure_test_assets(tmp_path, families=("sdxl",))
    files = {"sdxl": "unet/config.json", "dino": "config.json", "ir": ""}
    stamps = {name: Path(first[name], files[name]).stat().st_mtime_ns for name in files}
    second = ensure_test_assets(tmp_path, families=("flux",))
    assert Path(second["flux"], "model_index.json").is_file()
    assert {name: Path(second[name], files[name]).stat().st_mtime_ns for name in files} == stamps
    assert ensure_test_assets(tmp_path, families=("flux",)) == second  # nothing left to write


def test_a_missing_photo_is_one_line_before_anything_is_printed_or_loaded(tmp_path):
    """The fresh-user trial: `siso-demo --subject_image_path /path/to/photo.jpg` printed the model
    paths and the by-hand command before the error."""
    from cli_cases import error_lines, run_cli_cases

    cases = {
        "missing photo": ("siso_lib.cli.demo", ["--subject_image_path", "/path/to/photo.jpg", "--assets_dir", str(tmp_path / "a")]),
        "missing photo, notebook": ("siso_lib.cli.demo", ["--notebook", "--subject_image_path", "/path/to/photo.jpg",
                                                          "--assets_dir", str(tmp_path / "a")]),
        "empty prompt": ("siso_lib.cli.demo", ["--prompt", " ", "--assets_dir", str(tmp_path / "a")]),
    }
    report, heavy = run_cli_cases(cases, tmp_path)
    for name, (code, stderr) in report.items():
        assert code == 2 and stderr.splitlines() == error_lines(stderr, "siso-demo"), (name, stderr)  # that line only
    assert "'/path/to/photo.jpg' does not exist" in report["missing photo"][1]
    assert heavy == [] and not (tmp_path / "a").exists() and not (tmp_path / "outputs").exists()


def test_without_papermill_the_notebook_demo_refuses_in_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """The fresh-user trial (a wheel without the notebooks extra): ModuleNotFoundError, then a path to
    an executed notebook that did not exist, and an empty run folder."""
    import sys as _sys

    from siso_lib.cli.demo import main as demo_main

    monkeypatch.setitem(_sys.modules, "papermill", None)  # find_spec: not importable
    monkeypatch.setenv("SISO_OUTPUT_ROOT", str(tmp_path))
    assert demo_main(["--notebook", "--assets_dir", str(tmp_path / "assets")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("siso-demo: error: executing a notebook needs papermill"), err
    assert 'pip install -e ".[notebooks]"' in err[0] and ".ipynb" not in err[0]
    assert list(tmp_path.iterdir()) == []


def test_the_notebook_commands_without_papermill_answer_before_torch_loads(tmp_path):
    """The fresh-user trial: `siso-demo --notebook` without papermill loaded torch (its warnings on
    stderr, seconds) before the one line naming the fix; siso-sweep must answer as fast."""
    from cli_cases import error_lines, run_cli_cases

    cases = {
        "demo": ("siso_lib.cli.demo", ["--notebook", "--assets_dir", str(tmp_path / "a")]),
        "sweep": ("siso_lib.cli.sweep", ["--grid", "learning_rate=1e-3,2e-3", "--subjects", str(REPO / "data" / "cat.png"),
                                         "--output-root", str(tmp_path / "sweeps")]),
    }
    report, heavy = run_cli_cases(cases, tmp_path, not_installed=("papermill",))
    for name, (code, stderr) in report.items():
        prog = "siso-demo" if name == "demo" else "siso-sweep"
        assert code == 2 and stderr.splitlines() == error_lines(stderr, prog), (name, stderr)  # that line only
        assert "needs papermill" in stderr and 'pip install -e ".[notebooks]"' in stderr, stderr
    assert heavy == [], heavy
    assert not (tmp_path / "a").exists() and not (tmp_path / "sweeps").exists() and not (tmp_path / "outputs").exists()


def test_the_printed_command_repeats_the_run_with_its_thread_setting_and_the_photo_names_the_prompt(
        tiny_assets, tmp_path, monkeypatch, capsys):
    """The fresh-user trial: the by-hand command lacked the OMP_NUM_THREADS=1 the demo runs under
    (pasted, 3.5x slower and other last digits), and data/coffee.png kept "a photo of a cat"."""
    import shlex

    import torch

    from siso_lib.cli import edit, generate
    from siso_lib.cli.demo import main as demo_main

    ran = {}

    def fake(program):
        def main(argv):
            ran[program] = argv  # the command the demo runs, instead of running it
            return 0
        return main

    monkeypatch.setattr(generate, "main", fake("siso-generate"))
    monkeypatch.setattr(edit, "main", fake("siso-edit"))
    monkeypatch.setenv("OMP_NUM_THREADS", "unset")  # recorded, so that the test's end restores the caller's value
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads = torch.get_num_threads()
    try:
        coffee = str(REPO / "data" / "coffee.png")
        assets = str(Path(tiny_assets["sdxl"]).parent)
        assert demo_main(["--subject_image_path", coffee, "--assets_dir", assets, "--output_dir", str(tmp_path / "o")]) == 0
        err = capsys.readouterr().err
        printed = next(line for line in err.splitlines() if "the same run by hand:" in line).split("the same run by hand: ")[1]
        words = shlex.split(printed)
        assert words[:2] == ["OMP_NUM_THREADS=1", "siso-generate"] and words[2:] == ran["siso-generate"]
        assert os.environ["OMP_NUM_THREADS"] == "1"
        assert ran["siso-generate"][ran["siso-generate"].index("--prompt") + 1] == "a photo of a coffee"
        assert "siso-demo: prompt 'a photo of a coffee' (from the file name coffee.png" in err
        demo_main(["--subject_image_path", coffee, "--prompt", "a photo of a mug", "--assets_dir", assets,
                   "--output_dir", str(tmp_path / "p")])
        assert ran["siso-generate"][ran["siso-generate"].index("--prompt") + 1] == "a photo of a mug"
        assert "from the file name" not in capsys.readouterr().err  # a prompt given is not announced as a guess
        demo_main(["--task", "edit", "--subject_image_path", coffee, "--assets_dir", assets, "--output_dir", str(tmp_path / "e")])
        assert ran["siso-edit"][ran["siso-edit"].index("--subject_class") + 1] == "coffee"
    finally:
        torch.set_num_threads(threads)


def test_the_subject_is_guessed_from_the_file_name_as_siso_eval_guesses_a_class():
    from siso_lib.cli.demo import subject_from_photo

    assert subject_from_photo("data/coffee.png") == "coffee"
    assert subject_from_photo("/x/a photo of a dog.jpg") == "dog"
    assert subject_from_photo("IMG_1234.jpg") == "IMG" and subject_from_photo("1234.png") == "subject"


def test_siso_generate_and_siso_edit_on_a_tiny_model_on_the_cpu_use_one_thread(tiny_assets, subject_path, tmp_path, monkeypatch):
    """The fresh-user trial: the single-thread choice was the demo's and the sweep's only; the
    offline siso-generate command of docs/command-line.md, pasted, ran 3-4x slower on a busy CPU.
    One helper decides it (offline.single_thread_env); a hub model or the user's own setting is
    left alone."""
    import torch

    from siso_lib.cli import edit, generate
    from siso_lib.config import SISOConfig
    from siso_lib.offline import is_tiny_model, use_single_thread_for

    seen = []
    record = lambda *args: seen.append((os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads())) or 0  # noqa: E731
    monkeypatch.setattr(generate, "_run", record)
    monkeypatch.setattr(edit, "_run", record)
    monkeypatch.setenv("OMP_NUM_THREADS", "unset")  # recorded, so that the test's end restores the caller's value
    monkeypatch.delenv("OMP_NUM_THREADS")
    threads = torch.get_num_threads()
    tiny = ["--subject_image_path", subject_path, "--pretrained_model_name_or_path", tiny_assets["sdxl"],
            "--dino_model_name", tiny_assets["dino"], "--resolution", "64", "--device", "cpu"]
    try:
        for program, argv in (
            (generate, [*tiny, "--output_dir", str(tmp_path / "g")]),
            (edit, [*tiny, "--subject_class", "cat", "--input_image_path", str(REPO / "data" / "coffee.png"),
                    "--input_class", "cup", "--detector_model", tiny_assets["grounding_dino"],
                    "--segmenter_model", tiny_assets["sam"], "--output_dir", str(tmp_path / "e")]),
        ):
            torch.set_num_threads(2)
            os.environ.pop("OMP_NUM_THREADS", None)
            assert program.main(argv) == 0
            assert seen[-1] == ("1", 1), program
        torch.set_num_threads(2)
        monkeypatch.setenv("OMP_NUM_THREADS", "2")  # the user's own choice wins
        assert generate.main([*tiny, "--output_dir", str(tmp_path / "g2")]) == 0
        assert seen[-1] == ("2", 2)
        monkeypatch.delenv("OMP_NUM_THREADS")
        assert is_tiny_model(tiny_assets["sdxl"]) and not is_tiny_model("stabilityai/sdxl-turbo")
        assert use_single_thread_for(SISOConfig(device="cpu")) == {}  # the real SDXL-Turbo keeps torch's threads
        assert use_single_thread_for(SISOConfig(pretrained_model_name_or_path=tiny_assets["sdxl"], device="cuda")) == {}
        assert "OMP_NUM_THREADS" not in os.environ and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


def doc_command(doc: str, program: str) -> list[str]:
    """The words of the offline `program` command in docs/`doc` (continuation lines joined)."""
    import shlex

    text = (REPO / "docs" / doc).read_text(encoding="utf-8").replace("\\\n", " ")
    line = next(line for line in text.splitlines() if f" {program} --" in line and "$A/sdxl" in line)
    return shlex.split(line)


@pytest.mark.parametrize("task, doc", [("generate", "command-line.md"), ("edit", "editing.md")])
def test_the_docs_offline_command_is_what_the_demo_prints(task, doc, monkeypatch):
    """The fresh-user trial: docs/command-line.md's command, "what siso-demo prints", lacked the
    demo's --early_stopping_threshold_percentage 0.05 and stopped at iteration 8."""
    import argparse
    import shlex

    from siso_lib.cli.demo import by_hand, demo_command

    assets = {"sdxl": "$A/sdxl", "dino": "$A/dino", "ir": "$A/ir_features.pth", "grounding_dino": "$A/grounding-dino", "sam": "$A/sam"}
    args = argparse.Namespace(task=task, subject_image_path="data/cat.png", prompt="a photo of a cat", subject_class="cat",
                              input_image_path="data/coffee.png", input_class=None, model_family="sdxl",
                              output_dir=None, overwrite=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # as the demo runs the tiny models
    program = "siso-generate" if task == "generate" else "siso-edit"
    assert shlex.split(by_hand(program, demo_command(args, assets))) == doc_command(doc, program)


def test_after_a_run_the_demo_names_the_run_folder_to_score(tmp_path, monkeypatch, capsys):
    """The fresh-user trial: the demo printed `siso-eval <the run folder above>` literally."""
    from siso_lib import offline
    from siso_lib.cli import demo, generate

    monkeypatch.setenv("SISO_OUTPUT_ROOT", str(tmp_path / "outputs"))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    made = tmp_path / "outputs" / "runs" / "20260101-000000-cat"

    def fake_generate(argv):  # what siso-generate leaves: a fresh run folder with its run.json
        made.mkdir(parents=True)
        (made / "run.json").write_text("{}")
        return 0

    monkeypatch.setattr(offline, "ensure_test_assets", lambda *a, **k: {"sdxl": "s", "dino": "d", "ir": "i"})
    monkeypatch.setattr(generate, "main", fake_generate)
    (tmp_path / "outputs" / "runs" / "older").mkdir(parents=True)
    assert demo.main(["--assets_dir", str(tmp_path / "assets")]) == 0
    err = capsys.readouterr().err
    assert err.rstrip().splitlines()[-1].endswith(f": siso-eval {made}"), err
