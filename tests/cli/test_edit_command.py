"""`siso-edit`, run as users run it, on the tiny offline models: the authors' arguments, bad input
answered before torch is imported, an edit with a mask, the automatic mask (tiny Grounding-DINO +
SAM, through `siso-demo --task edit`), and an interrupt."""

from __future__ import annotations

import ast
import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cli_cases import error_lines, run_cli_cases
from siso_lib.config import SISOEditConfig
from siso_lib.cli.edit import EDIT_NO_EFFECT, build_parser, edit_config_from_args

REPO = Path(__file__).resolve().parents[2]
SCENE = REPO / "data" / "coffee.png"
# the authors' documented editing command (README of yairshp/SISO), verbatim but for the image and model paths
UPSTREAM_EDIT_COMMAND = (
    "--output_dir {out} --seed=42 --lr_warmup_steps 0 --lr_scheduler constant --learning_rate 3e-4 "
    "--train_batch_size 1 --resolution 512 --pretrained_model_name_or_path {sdxl} --num_train_epochs 50 "
    "--bg_mse_loss_weight 10. --ir_features_weight 1.0 --dino_features_weight 1.0 --early_stopping_threshold_percentage 3 "
    "--early_stopping_max_count 7 --input_image_path {scene} --subject_image_path {subject} --ir_features_path {ir}"
)
# every argument of siso_editing_sdxl.py's parse_args (checked against their source when SISO_UPSTREAM_DIR is set)
UPSTREAM_EDIT_ARGUMENTS = (
    "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "revision", "variant", "dataset_name",
    "dataset_config_name", "train_data_dir", "image_column", "caption_column", "validation_prompt", "num_validation_images",
    "validation_epochs", "max_train_samples", "output_dir", "cache_dir", "seed", "resolution", "center_crop", "random_flip",
    "train_text_encoder", "train_batch_size", "num_train_epochs", "max_train_steps", "checkpointing_steps",
    "checkpoints_total_limit", "resume_from_checkpoint", "gradient_accumulation_steps", "gradient_checkpointing",
    "learning_rate", "scale_lr", "lr_scheduler", "lr_warmup_steps", "snr_gamma", "allow_tf32", "dataloader_num_workers",
    "use_8bit_adam", "adam_beta1", "adam_beta2", "adam_weight_decay", "adam_epsilon", "max_grad_norm", "push_to_hub",
    "hub_token", "prediction_type", "hub_model_id", "logging_dir", "report_to", "mixed_precision", "local_rank",
    "enable_xformers_memory_efficient_attention", "enable_npu_flash_attention", "noise_offset", "rank", "debug_loss",
    "subject_image_path", "subject_class", "input_image_path", "input_class", "inversion_max_step", "bg_mse_loss_weight",
    "dino_model_name", "ir_features_path", "ir_features_weight", "dino_features_weight", "early_stopping_max_count",
    "early_stopping_threshold_percentage", "log_every_epoch",
)


def mask_png(path: Path, size: tuple[int, int], box: tuple[int, int, int, int] | None, value: int = 255) -> str:
    mask = np.zeros((size[1], size[0]), np.uint8)
    if box is not None:
        x0, y0, x1, y1 = box
        mask[y0:y1, x0:x1] = value
    Image.fromarray(mask).save(path)
    return str(path)


@pytest.fixture
def scene_mask(tmp_path) -> str:
    width, height = Image.open(SCENE).size
    return mask_png(tmp_path / "mask.png", (width, height), (width // 3, height // 4, 2 * width // 3, 3 * height // 4))


def tiny_command(assets: dict, subject: str, out: Path, *extra: str) -> list[str]:
    """The authors' documented command on the tiny models, at 64 px and a few iterations (the last value wins)."""
    command = UPSTREAM_EDIT_COMMAND.format(out=out, sdxl=assets["sdxl"], scene=SCENE, subject=subject, ir=assets["ir"])
    return shlex.split(command) + [
        "--dino_model_name", assets["dino"], "--resolution", "64", "--num_train_epochs", "4", "--learning_rate", "5e-3",
        "--device", "cpu", "--quiet", *extra,
    ]


def stdout_record(stdout: str, prefix: str) -> list[dict]:
    return [json.loads(line.split(" ", 1)[1]) for line in stdout.splitlines() if line.startswith(prefix)]


def upstream_argument_names(script: Path) -> list[str]:
    """The `--names` that the parse_args function of an upstream script adds, read from its source."""
    tree = ast.parse(script.read_text())
    function = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "parse_args")
    names = []
    for call in ast.walk(function):
        if isinstance(call, ast.Call) and getattr(call.func, "attr", "") == "add_argument":
            flag = call.args[0].value
            names.append(flag.removeprefix("--"))
    return names


def test_every_authors_argument_is_accepted_and_their_command_gives_our_defaults():
    upstream = os.environ.get("SISO_UPSTREAM_DIR")
    if upstream and (Path(upstream) / "siso_editing_sdxl.py").is_file():
        assert sorted(upstream_argument_names(Path(upstream) / "siso_editing_sdxl.py")) == sorted(UPSTREAM_EDIT_ARGUMENTS)
    known = {action.dest for action in build_parser()._actions}
    assert not set(UPSTREAM_EDIT_ARGUMENTS) - known
    assert set(EDIT_NO_EFFECT) <= set(UPSTREAM_EDIT_ARGUMENTS)
    # their documented command and ours without options are the same edit: the defaults are theirs
    paths = dict(out="o", sdxl="stabilityai/sdxl-turbo", scene="s.png", subject="d.png", ir="ir.pth")
    documented = shlex.split(UPSTREAM_EDIT_COMMAND.format(**paths)) + ["--subject_class", "dog", "--input_class", "cat"]
    minimal = ["--input_image_path", "s.png", "--subject_image_path", "d.png", "--ir_features_path", "ir.pth",
               "--subject_class", "dog", "--input_class", "cat"]
    theirs, ours = (edit_config_from_args(build_parser().parse_args(args)) for args in (documented, minimal))
    assert theirs.to_dict() == ours.to_dict()
    expected = SISOEditConfig(input_image_path="s.png", ir_features_path="ir.pth", prompt="a photo of a dog", input_class="cat")
    assert ours.to_dict() == expected.to_dict()
    assert (ours.learning_rate, ours.bg_mse_loss_weight, ours.resolution, ours.num_train_epochs) == (3e-4, 10.0, 512, 50)
    assert (ours.early_stopping_threshold_percentage, ours.early_stopping_max_count, ours.seed) == (3.0, 7, 42)
    assert ours.train_text_encoder is False and ours.scene_prompt == "a photo of a cat"
    mask_run = build_parser().parse_args(minimal + ["--mask", "m.png", "--box_threshold", "0.1", "--detector_model", "gd"])
    config = edit_config_from_args(mask_run)
    assert config.mask_path == "m.png" and (config.box_threshold, config.detector_model) == (0.1, "gd")


@pytest.mark.slow
def test_bad_input_is_one_line_exit_2_before_torch_is_imported_and_leaves_no_folder(tiny_assets, subject_path, tmp_path, scene_mask):
    """Each: exit 2, one `error:` line that names the input, no traceback, torch never imported,
    and no output folder (neither --output_dir nor a fresh outputs/runs/ one) left behind."""
    width, height = Image.open(SCENE).size
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "notes.png").write_text("not a picture")
    held = tmp_path / "held"
    held.mkdir()
    (held / "pytorch_lora_weights.safetensors").write_bytes(b"earlier run")
    (tmp_path / "sam-no-config").mkdir()
    masks = {
        "small": mask_png(tmp_path / "small.png", (width // 2, height // 2), (0, 0, 10, 10)),
        "empty": mask_png(tmp_path / "empty.png", (width, height), None),
        "full": mask_png(tmp_path / "full.png", (width, height), (0, 0, width, height)),
    }
    out = ["--output_dir", str(tmp_path / "out")]
    base = ["--input_image_path", str(SCENE), "--subject_image_path", subject_path, "--subject_class", "cat",
            "--pretrained_model_name_or_path", tiny_assets["sdxl"], "--dino_model_name", tiny_assets["dino"],
            "--ir_features_path", tiny_assets["ir"], "--resolution", "64", "--quiet"]
    with_mask = base + ["--mask", scene_mask]
    auto = base + ["--input_class", "cup", "--detector_model", tiny_assets["grounding_dino"], "--segmenter_model", tiny_assets["sam"]]

    def swap(args, option, value):
        args = list(args)
        args[args.index(option) + 1] = value
        return args

    cases = {
        "--help": ["--help"],
        "no scene argument": ["--subject_image_path", subject_path, "--subject_class", "cat"],
        "scene missing": swap(with_mask, "--input_image_path", str(tmp_path / "nope.png")) + out,
        "scene not an image": swap(with_mask, "--input_image_path", str(tmp_path / "notes.png")) + out,
        "subject missing": swap(with_mask, "--subject_image_path", str(tmp_path / "nope.png")) + out,
        "subject not an image": swap(with_mask, "--subject_image_path", str(tmp_path / "notes.png")),
        "mask missing": base + ["--mask", str(tmp_path / "nope.png")] + out,
        "mask not an image": base + ["--mask", str(tmp_path / "notes.png")],
        "mask of another size": base + ["--mask", masks["small"]] + out,
        "mask empty": base + ["--mask", masks["empty"]],
        "mask covers everything": base + ["--mask", masks["full"]] + out,
        "no mask and no input class": base + out,
        "subject not named": [a for a in with_mask if a not in ("--subject_class", "cat")] + out,
        "subject class and prompt": with_mask + ["--prompt", "a photo of a cat"],
        "learning rate not a number": with_mask + ["--learning_rate", "3e-4x"],
        "strength out of range": with_mask + ["--inversion_max_step", "1.5"] + out,
        "strength leaves no step": with_mask + ["--inversion_max_step", "0.1"] + out,
        "a FLUX base model": swap(with_mask, "--pretrained_model_name_or_path", "black-forest-labs/FLUX.1-schnell") + out,
        "negative background weight": with_mask + ["--bg_mse_loss_weight", "-1"],
        "bad resolution": with_mask + ["--resolution", "100"] + out,
        "no iterations": with_mask + ["--num_train_epochs", "0"],
        "accumulation": with_mask + ["--gradient_accumulation_steps", "2"] + out,
        "box threshold out of range": auto + ["--box_threshold", "2"] + out,
        "detector folder missing": swap(auto, "--detector_model", str(tmp_path / "nowhere")) + out,
        "segmenter folder without config.json": swap(auto, "--segmenter_model", str(tmp_path / "sam-no-config")),
        "base model folder missing": swap(with_mask, "--pretrained_model_name_or_path", str(tmp_path / "nowhere")) + out,
        "IR checkpoint missing": swap(with_mask, "--ir_features_path", str(tmp_path / "ir.pth")),
        "output folder holds a LoRA": with_mask + ["--output_dir", str(held)],
        "output folder unwritable": with_mask + ["--output_dir", str(tmp_path / "a_file" / "x")],
        "progress file unwritable": with_mask + ["--progress_file", str(tmp_path / "a_file" / "p")] + out,
        "dead arguments, then a missing scene": swap(with_mask, "--input_image_path", str(tmp_path / "nope.png"))
        + ["--train_batch_size", "1", "--report_to", "wandb", "--center_crop", "--detector_model", "x"] + out,
    }
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    cases = {name: ("siso_lib.cli.edit", args) for name, args in cases.items()}
    cases["demo: edit on FLUX"] = ("siso_lib.cli.demo", ["--task", "edit", "--model_family", "flux"])
    report, heavy = run_cli_cases(cases, cwd)
    for name, (code, stderr) in report.items():
        if name == "--help":
            assert code == 0
        else:
            assert code == 2 and len(error_lines(stderr)) == 1 and "Traceback" not in stderr, (name, code, stderr)
    errors = {name: error_lines(stderr)[0] for name, (_, stderr) in report.items() if error_lines(stderr)}
    assert errors["scene missing"].startswith("siso-edit: error: scene photo") and "--input_image_path" in errors["scene missing"]
    assert errors["subject missing"].startswith("siso-edit: error: subject image") and "--subject_image_path" in errors["subject missing"]
    assert errors["demo: edit on FLUX"].startswith("siso-demo: error: --task edit runs on SDXL only")
    assert f"{width}x{height}" in errors["mask of another size"] and f"{width // 2}x{height // 2}" in errors["mask of another size"]
    assert "empty" in errors["mask empty"] and "whole picture" in errors["mask covers everything"]
    assert "--input_class" in errors["no mask and no input class"] and "--mask" in errors["no mask and no input class"]
    assert "--subject_class" in errors["subject not named"] and "LLaVA" in errors["subject not named"]
    assert "box_threshold" in errors["box threshold out of range"]
    assert "Grounding-DINO" in errors["detector folder missing"] and "config.json" in errors["segmenter folder without config.json"]
    assert "--overwrite" in errors["output folder holds a LoRA"]
    assert "0.25" in errors["strength leaves no step"]
    assert "SDXL(-Turbo) only, not flux" in errors["a FLUX base model"] and "--model_family" not in errors["a FLUX base model"]
    warned = [line for line in report["dead arguments, then a missing scene"][1].splitlines() if "ignoring --" in line]
    for name in ("train_batch_size", "report_to", "center_crop", "detector_model"):
        assert sum(f"ignoring --{name}:" in line for line in warned) == 1, (name, warned)
    assert len(warned) == 4
    assert heavy == [], f"imported before any model was needed: {heavy}"
    assert not (tmp_path / "out").exists() and not (cwd / "outputs").exists()
    assert (held / "pytorch_lora_weights.safetensors").read_bytes() == b"earlier run"


def test_the_authors_command_with_a_mask_edits_end_to_end(tiny_assets, subject_path, tmp_path, scene_mask, capsys):
    from siso_lib.cli import edit as cli

    out = tmp_path / "logs" / "dog_editing"
    code = cli.main(tiny_command(tiny_assets, subject_path, out, "--mask", scene_mask, "--subject_class", "dog"))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ignoring --train_batch_size" in captured.err
    for name in ("result.png", "scene.png", "mask.png", "before_after.png", "loss_curve.png", "run.json",
                 "pytorch_lora_weights.safetensors", "siso_lora_kohya.safetensors"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))  # atomic writes leave no temporary file
    progress = stdout_record(captured.out, "SISO_PROGRESS ")
    (result,) = stdout_record(captured.out, "SISO_RESULT ")
    record = json.loads((out / "run.json").read_text())
    assert [p["step"] for p in progress] == [1, 2, 3, 4] and "background" in progress[0]
    assert result["status"] == "success" and result["result_image"] == str(out / "result.png")
    assert result["mask_image"] == str(out / "mask.png") and result["before_after"] == str(out / "before_after.png")
    params = record["parameters"]
    assert record["task"] == "edit" and params["prompt"] == "a photo of a dog" and params["mask_path"] == scene_mask
    assert params["train_text_encoder"] is False and params["bg_mse_loss_weight"] == 10.0 and params["seed"] == 42
    assert record["mask"]["source"] == scene_mask and record["scene_image"]["path"] == str(SCENE)
    # where the files went, the edited image first
    listed = [line.split()[-1] for line in captured.err.splitlines() if line.startswith("siso: ") and line.split()[-1].startswith("/")]
    assert listed[0] == str(out / "result.png") and str(out / "run.json") in listed


def test_the_demo_edit_makes_its_mask_with_the_tiny_detector_and_segmenter(tiny_assets, tmp_path, capsys):
    """`siso-demo --task edit`: the cat into data/coffee.png where the tiny Grounding-DINO + SAM find the cup."""
    from siso_lib.cli.demo import main as demo_main

    assert {"grounding_dino", "sam"} <= set(json.loads((Path(tiny_assets["sdxl"]).parent / "ASSETS.json").read_text()))
    out = tmp_path / "demo"
    code = demo_main(["--task", "edit", "--assets_dir", str(Path(tiny_assets["sdxl"]).parent), "--output_dir", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((out / "run.json").read_text())
    assert record["mask"]["source"] == "the automatic mask of 'cup'"
    assert record["mask"]["detector_model"] == tiny_assets["grounding_dino"] and record["mask"]["box_threshold"] == 0.3
    assert 0 < record["mask"]["covered_fraction"] < 1 and record["scene_prompt"] == "a photo of a cup"
    assert 0.3 <= record["mask"]["score"] <= 1 and len(record["mask"]["box"]) == 4  # what the detector found
    assert "mask: 'cup' found in coffee.png (score" in captured.err
    assert record["regeneration"]["schedule_steps"] == 4 and record["regeneration"]["strength"] == 0.75
    assert {Path(record["artifacts"][k]).name for k in ("scene_image", "mask_image", "before_after")} == {"scene.png", "mask.png", "before_after.png"}
    mask = np.asarray(Image.open(out / "mask.png"))
    assert mask.shape == (64, 64) and 0 < (mask > 127).mean() < 1
    assert stdout_record(captured.out, "SISO_RESULT ")[0]["status"] == "success"


def test_nothing_found_for_the_class_is_one_line_exit_2_and_leaves_no_folder(tiny_assets, subject_path, tmp_path, capsys):
    from siso_lib.cli import edit as cli

    out = tmp_path / "out"
    code = cli.main(tiny_command(
        tiny_assets, subject_path, out, "--subject_class", "cat", "--input_class", "cup", "--box_threshold", "1",
        "--detector_model", tiny_assets["grounding_dino"], "--segmenter_model", tiny_assets["sam"],
    ))
    errors = error_lines(capsys.readouterr().err, "siso-edit")
    assert code == 2 and len(errors) == 1, errors
    assert "no 'cup' found" in errors[0] and "--mask" in errors[0]
    assert not out.exists()


@pytest.mark.slow
def test_an_interrupt_keeps_the_best_lora_and_exits_130(tiny_assets, subject_path, tmp_path, scene_mask):
    out = tmp_path / "run"
    command = tiny_command(tiny_assets, subject_path, out, "--mask", scene_mask, "--subject_class", "cat",
                           "--num_train_epochs", "10000", "--early_stopping_threshold_percentage", "0",
                           "--early_stopping_max_count", "10000")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "siso_lib.cli.edit", *command], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        steps = 0
        for line in proc.stdout:
            steps += line.startswith("SISO_PROGRESS ")
            if steps == 2:
                proc.send_signal(signal.SIGINT)
                break
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr
    (result,) = stdout_record(stdout, "SISO_RESULT ")
    record = json.loads((out / "run.json").read_text())
    assert result["stop_reason"] == "interrupted" and record["status"] == "interrupted"
    assert (out / "pytorch_lora_weights.safetensors").is_file() and (out / "result.png").is_file()
    assert (out / "before_after.png").is_file() and record["steps_run"] >= 2


def test_an_interrupt_before_the_first_iteration_leaves_no_folder(tiny_assets, subject_path, tmp_path, monkeypatch, capsys):
    """Ctrl-C while the libraries or models load: exit 130, and the fresh run folder is removed again."""
    from siso_lib.cli import edit as cli
    from siso_lib.editing import runner

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_prepared_edit", interrupted)
    monkeypatch.chdir(tmp_path)
    command = tiny_command(tiny_assets, subject_path, None, "--subject_class", "cat", "--input_class", "cup")
    at = command.index("--output_dir")
    del command[at : at + 2]  # a fresh outputs/runs/<time>-edit-cat folder, made by the checks
    code = cli.main(command)
    assert code == 130 and "interrupted before the optimisation started" in capsys.readouterr().err
    assert not (tmp_path / "outputs").exists()


def relative_local_paths(value, trail=""):
    """Every string in a run.json (but `command`, what was typed) that names an existing file or
    folder relative to the working directory: each should have been recorded absolute."""
    if isinstance(value, dict):
        return [found for key, item in value.items() if key != "command" for found in relative_local_paths(item, f"{trail}.{key}")]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in relative_local_paths(item, f"{trail}[{i}]")]
    if isinstance(value, str) and value and not os.path.isabs(value) and os.path.exists(value.removeprefix("local-dir:")):
        return [f"{trail} = {value!r}"]
    return []


@pytest.mark.parametrize("mask", ["file", "automatic"])
def test_relative_paths_are_recorded_absolute_and_the_scenes_notes_and_mask_share_are_printed(
        tiny_assets, subject_path, tmp_path, monkeypatch, capsys, mask):
    """Started from another folder with every path relative: run.json records each absolutely
    (scene, mask, subject, every model, the detector and segmenter); the scene's notes are printed
    worded for a scene, as siso-generate prints the subject's; every mask's share is printed."""
    from siso_lib.cli import edit as cli

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    rel = {name: os.path.relpath(path, cwd) for name, path in tiny_assets.items()}
    command = ["--subject_image_path", os.path.relpath(subject_path, cwd), "--subject_class", "cat",
               "--pretrained_model_name_or_path", rel["sdxl"], "--dino_model_name", rel["dino"], "--ir_features_path", rel["ir"],
               "--resolution", "64", "--num_train_epochs", "1", "--device", "cpu", "--quiet", "--output_dir", "out"]
    if mask == "file":
        # a grey, wide JPEG whose EXIF turns it upright (shown 150x400), and its mask tagged alike
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(np.linspace(0, 255, 400 * 150).reshape(150, 400).astype(np.uint8)).save("scene.jpg", exif=exif.tobytes())
        Image.fromarray(((np.arange(400)[None, :] > 150) & (np.arange(400)[None, :] < 250)).repeat(150, 0).astype(np.uint8) * 255) \
            .save("mask.png", exif=exif.tobytes())
        command += ["--input_image_path", "scene.jpg", "--mask", "mask.png"]
    else:
        Image.open(SCENE).save("coffee.png")
        command += ["--input_image_path", "coffee.png", "--input_class", "cup",
                    "--detector_model", rel["grounding_dino"], "--segmenter_model", rel["sam"]]
    code = cli.main(command)
    err = capsys.readouterr().err
    assert code == 0, err
    record = json.loads((cwd / "out" / "run.json").read_text())
    assert relative_local_paths(record) == []
    assert os.path.isabs(record["parameters"]["input_image_path"]) and os.path.isabs(record["mask"].get("path", "/"))
    if mask == "automatic":
        assert record["mask"]["detector_model"] == tiny_assets["grounding_dino"] == record["parameters"]["detector_model"]
        assert record["mask"]["segmenter_model"] == tiny_assets["sam"] == record["parameters"]["segmenter_model"]
        assert "siso: mask: the automatic mask of 'cup' covers" in err
        return
    assert record["parameters"]["mask_path"] == str(cwd / "mask.png") == record["mask"]["source"]
    lines = [line for line in err.splitlines() if line.startswith("siso: scene photo: ")]
    assert "siso: scene photo: applied the EXIF orientation" in lines and "siso: scene photo: converted L to RGB" in lines
    assert any("the edit works on its centre square only (38% of it)" in line for line in lines), lines
    assert not any("subject" in line for line in lines)
    assert "siso: mask: mask.png (white = subject) covers" in err
    assert Image.open(cwd / "out" / "result.png").size == (150, 400)  # the photo as shown, at its size
