"""The command line, run as users run it (a subprocess), on the tiny offline models."""

import json

import pytest
import shlex
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

from cli_cases import error_lines, run_cli_cases
from siso_lib.cli.generate import NO_EFFECT, build_parser

REPO = Path(__file__).resolve().parents[2]
# the authors' documented SDXL command (README of yairshp/SISO), verbatim but for the two model paths
UPSTREAM_SDXL_COMMAND = (
    "--subject_image_path {subject} --prompt a\\ photo\\ of\\ a\\ dog --train_text_encoder "
    "--output_dir {out}/logs/dog_generation --lr_warmup_steps 0 --lr_scheduler constant --train_batch_size 1 "
    "--resolution 512 --pretrained_model_name_or_path {sdxl} --num_train_epochs 50 "
    "--early_stopping_threshold_percentage 3 --early_stopping_max_count 7 --num_inference_steps 1 "
    "--learning_rate 2e-4 --seed=42 --save_weights --weights_output_dir {out}/weights/dog --ir_features_path {ir}"
)


def run_cli(args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "siso_lib.cli.generate", *args], cwd=REPO, capture_output=True, text=True, timeout=600, **kwargs
    )


@pytest.mark.slow
def test_upstream_documented_command_runs_unchanged(tiny_assets, subject_path, tmp_path):
    command = UPSTREAM_SDXL_COMMAND.format(subject=subject_path, out=tmp_path, sdxl=tiny_assets["sdxl"], ir=tiny_assets["ir"])
    proc = run_cli(shlex.split(command) + ["--dino_model_name", tiny_assets["dino"], "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "ignoring --train_batch_size" in proc.stderr
    weights = tmp_path / "weights" / "dog"
    logs = tmp_path / "logs" / "dog_generation"
    assert (weights / "pytorch_lora_weights.safetensors").is_file()
    assert (weights / "siso_lora_kohya.safetensors").is_file()
    assert (logs / "result.png").is_file() and (logs / "loss_curve.png").is_file()
    record = json.loads((logs / "run.json").read_text())
    assert record["parameters"]["resolution"] == 512 and record["parameters"]["train_text_encoder"] is True
    assert record["status"] == "completed" and record["stop_reason"] in ("early_stopping", "max_steps")
    # the fresh-user trial: "stopped: no 3.0% improvement for 7 steps; best iteration 8 of 8" read as a contradiction
    stopped = next(line for line in proc.stderr.splitlines() if line.startswith("siso: stopped"))
    shown = record["stop_description"] if record["stop_description"].startswith("stopped") else f"stopped: {record['stop_description']}"
    assert stopped.startswith(f"siso: {shown}; best iteration {record['best_step']} of ")
    if record["stop_reason"] == "early_stopping":
        assert "stopped early: 7 iterations without a 3 % improvement on the best loss (iteration " in stopped
    assert "CUDA graphs" not in proc.stderr  # a CPU run that did not ask for them hears nothing about them
    assert record["runtime"]["cuda_graphs_note"].startswith("CUDA graphs need a CUDA device")  # run.json keeps it
    progress = [json.loads(line.split(" ", 1)[1]) for line in proc.stdout.splitlines() if line.startswith("SISO_PROGRESS ")]
    assert len(progress) == record["steps_run"] and progress[0]["step"] == 1 and progress[0]["total"] == 50
    assert {"loss", "dino", "ir", "best_step", "elapsed"} <= set(progress[0])
    result = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("SISO_RESULT ")).split(" ", 1)[1])
    assert result["status"] == "success" and Path(result["lora_path"]) == weights / "pytorch_lora_weights.safetensors"
    assert len(load_file(result["lora_path"])) > 0


def test_every_upstream_argument_is_accepted():
    upstream = [
        "pretrained_model_name_or_path", "pretrained_vae_model_name_or_path", "revision", "variant", "dataset_name",
        "dataset_config_name", "train_data_dir", "image_column", "caption_column", "validation_prompt",
        "num_validation_images", "validation_epochs", "max_train_samples", "output_dir", "cache_dir", "seed",
        "resolution", "center_crop", "random_flip", "train_text_encoder", "train_batch_size", "num_train_epochs",
        "max_train_steps", "checkpointing_steps", "checkpoints_total_limit", "resume_from_checkpoint",
        "gradient_accumulation_steps", "gradient_checkpointing", "learning_rate", "scale_lr", "lr_scheduler",
        "lr_warmup_steps", "snr_gamma", "allow_tf32", "dataloader_num_workers", "use_8bit_adam", "adam_beta1",
        "adam_beta2", "adam_weight_decay", "adam_epsilon", "max_grad_norm", "push_to_hub", "hub_token",
        "prediction_type", "hub_model_id", "logging_dir", "report_to", "mixed_precision", "local_rank",
        "enable_xformers_memory_efficient_attention", "enable_npu_flash_attention", "noise_offset", "rank",
        "debug_loss", "prompt", "subject_image_path", "subject_class", "dino_model_name", "ir_features_path",
        "ir_features_weight", "dino_features_weight", "early_stopping_max_count",
        "early_stopping_threshold_percentage", "num_inference_steps", "save_weights", "weights_output_dir",
        "log_every_epoch",
    ]
    # the arguments siso_generation_flux.py and siso_generation_sana.py add to those of the SDXL script
    upstream_flux = [
        "adam_weight_decay_text_encoder", "cache_latents", "class_data_dir", "class_prompt", "guidance_scale",
        "instance_data_dir", "logit_mean", "logit_std", "lora_layers", "lr_num_cycles", "lr_power", "max_sequence_length",
        "mode_scale", "num_class_images", "optimizer", "prior_generation_precision", "prior_loss_weight", "prodigy_beta3",
        "prodigy_decouple", "prodigy_safeguard_warmup", "prodigy_use_bias_correction", "repeats", "sample_batch_size",
        "strength", "text_encoder_lr", "upcast_before_saving", "weighting_scheme", "with_prior_preservation",
    ]
    upstream_sana = [
        "adam_weight_decay_text_encoder", "cache_latents", "class_data_dir", "class_prompt", "complex_human_instruction",
        "enable_vae_tiling", "instance_data_dir", "logit_mean", "logit_std", "lora_layers", "lr_num_cycles", "lr_power",
        "max_sequence_length", "mode_scale", "num_class_images", "num_grad_steps", "offload", "optimizer",
        "prior_loss_weight", "prodigy_beta3", "prodigy_decouple", "prodigy_safeguard_warmup",
        "prodigy_use_bias_correction", "repeats", "sample_batch_size", "upcast_before_saving", "weighting_scheme",
        "with_prior_preservation",
    ]
    known = {a.dest for a in build_parser()._actions}
    assert not set(upstream + upstream_flux + upstream_sana) - known
    assert set(NO_EFFECT) <= set(upstream + upstream_flux + upstream_sana)
    args = build_parser().parse_args(["--subject_image_path", "x.png", "--mixed_precision", "bf16", "--report_to", "wandb"])
    assert args.mixed_precision == "bf16" and args.report_to == "wandb"


def test_defaults_come_from_the_config():
    from siso_lib.config import SISOConfig
    from siso_lib.cli.generate import config_from_args

    config = config_from_args(build_parser().parse_args(["--subject_image_path", "x.png"]))
    expected = SISOConfig()
    assert config.to_dict() == expected.to_dict()


@pytest.mark.slow
def test_bad_input_is_one_line_and_exit_code_2(tmp_path):
    proc = run_cli(["--subject_image_path", str(tmp_path / "missing.png"), "--output_dir", str(tmp_path / "out")])
    assert proc.returncode == 2
    lines = error_lines(proc.stderr, "siso-generate")
    assert len(lines) == 1 and "does not exist" in lines[0]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_iterations_are_numbered_from_one_in_every_output(tiny_assets, subject_path, tmp_path, capsys):
    """One run, one numbering: progress lines, SISO_RESULT, run.json, both LoRA files, history and
    the per-iteration images all call the first iteration 1 (the field report saw 1 vs 2)."""
    from siso_lib.cli import generate
    from siso_lib.io.lora import KOHYA_WEIGHT_NAME, read_metadata

    out = tmp_path / "run"
    code = generate.main([
        "--subject_image_path", subject_path, "--pretrained_model_name_or_path", tiny_assets["sdxl"],
        "--dino_model_name", tiny_assets["dino"], "--ir_features_path", tiny_assets["ir"], "--resolution", "64",
        "--num_train_epochs", "3", "--learning_rate", "0.05", "--early_stopping_threshold_percentage", "0",
        "--log_every_epoch", "--output_dir", str(out), "--quiet",
    ])
    stdout = capsys.readouterr().out
    assert code == 0
    progress = [json.loads(l.split(" ", 1)[1]) for l in stdout.splitlines() if l.startswith("SISO_PROGRESS ")]
    result = json.loads(next(l for l in stdout.splitlines() if l.startswith("SISO_RESULT ")).split(" ", 1)[1])
    record = json.loads((out / "run.json").read_text())
    assert [p["step"] for p in progress] == [row["step"] for row in record["history"]] == [1, 2, 3]
    lowest = min(record["history"], key=lambda row: row["total"])["step"]
    assert result["best_step"] == record["best_step"] == progress[-1]["best_step"] == lowest
    for name in ("pytorch_lora_weights.safetensors", KOHYA_WEIGHT_NAME):
        assert read_metadata(out / name)["siso.best_step"] == str(lowest)
    assert sorted(p.name for p in out.glob("epoch_*.png")) == ["epoch_1.png", "epoch_2.png", "epoch_3.png"]


@pytest.mark.slow
def test_help_and_input_errors_answer_before_heavy_imports(tiny_assets, subject_path, tmp_path):
    """The field report: --help and every error that needs no model waited 8-9 s for torch.
    Each is answered here with exit 2 (0 for --help), one error line, and torch never imported.
    (The wall time of each is printed by benchmarks/bench_cli.py.)"""
    (tmp_path / "a_file").write_text("x")
    dino = tmp_path / "dino"
    dino.mkdir()
    (dino / "config.json").write_text(json.dumps({"architecture": "vit_large_patch14_dinov2", "num_classes": 0}))
    held = tmp_path / "held"
    held.mkdir()
    (held / "pytorch_lora_weights.safetensors").write_bytes(b"earlier run")
    from image_helpers import png_claiming

    (tmp_path / "wide.png").write_bytes(png_claiming(20000, 1000))
    base = ["--pretrained_model_name_or_path", tiny_assets["sdxl"], "--dino_model_name", tiny_assets["dino"],
            "--ir_features_path", tiny_assets["ir"], "--resolution", "64", "--quiet"]
    image = ["--subject_image_path", subject_path, "--output_dir", str(tmp_path / "out")]
    cases = {
        "--help": ["--help"],
        "no subject image argument": [],
        "learning rate not a number": image + ["--learning_rate", "1e-4x"],
        "abbreviated option": image + ["--num_train_epoch", "3"],
        "missing image": ["--subject_image_path", str(tmp_path / "nope.png")],
        "image too elongated": ["--subject_image_path", str(tmp_path / "wide.png")],
        "bad resolution": image + ["--resolution", "100"],
        "empty prompt": image + ["--prompt", " "],
        "unknown scheduler": image + ["--lr_scheduler", "cosinee"],
        "output folder unwritable": ["--subject_image_path", subject_path, "--output_dir", str(tmp_path / "a_file" / "x")],
        "output folder holds a LoRA": ["--subject_image_path", subject_path, "--output_dir", str(held)],
        "progress file unwritable": image + ["--progress_file", str(tmp_path / "a_file" / "p")],
        "base model folder missing": image + ["--pretrained_model_name_or_path", str(tmp_path / "nowhere")],
        "base model not diffusers": image + ["--pretrained_model_name_or_path", str(tmp_path)],
        "DINO config without pretrained_cfg": image + ["--dino_model_name", str(dino)],
        "IR checkpoint missing": image + ["--ir_features_path", str(tmp_path / "ir.pth")],
    }
    cases = {name: ("siso_lib.cli.generate", base + args) for name, args in cases.items()}
    cases |= {"make-test-assets --help": ("siso_lib.cli.make_test_assets", ["--help"]), "demo --help": ("siso_lib.cli.demo", ["--help"])}
    report, heavy = run_cli_cases(cases, REPO)
    for name, (code, stderr) in report.items():
        if name.endswith("--help"):
            assert code == 0, name
        else:
            assert code == 2 and len(error_lines(stderr)) == 1, (name, code, stderr)
    assert heavy == [], f"imported before any model was needed: {heavy}"
    assert not (tmp_path / "out").exists()


def test_local_paths_are_recorded_absolute(tiny_assets, subject_path, tmp_path, capsys, monkeypatch):
    """The field report: `--pretrained_model_name_or_path assets/sdxl` was stored as given, so
    notebook 02 started elsewhere took it for a hub id. Every local path a run writes down is
    absolute; a hub id stays a hub id."""
    import os
    import shutil

    from siso_lib.cli import generate
    from siso_lib.config import SISOConfig
    from siso_lib.io.lora import KOHYA_WEIGHT_NAME, read_metadata

    work = tmp_path / "work"
    shutil.copytree(Path(tiny_assets["sdxl"]).parent, work / "assets")
    shutil.copy(subject_path, work / "cat.png")
    monkeypatch.chdir(work)
    code = generate.main([
        "--subject_image_path", "cat.png", "--pretrained_model_name_or_path", "assets/sdxl",
        "--dino_model_name", "assets/dino", "--ir_features_path", "./assets/ir_features.pth",
        "--resolution", "64", "--num_train_epochs", "1", "--output_dir", "runs/one", "--quiet",
    ])
    stdout = capsys.readouterr().out
    assert code == 0
    monkeypatch.chdir(tmp_path)  # read back from elsewhere, as notebook 02 does
    out = work / "runs" / "one"
    record = json.loads((out / "run.json").read_text())
    params = record["parameters"]
    assert params["pretrained_model_name_or_path"] == str(work / "assets" / "sdxl")
    assert params["dino_model_name"] == str(work / "assets" / "dino")
    assert params["ir_features_path"] == str(work / "assets" / "ir_features.pth")
    assert record["subject_image"]["path"] == str(work / "cat.png")
    assert record["working_directory"] == str(work)
    result = json.loads(next(l for l in stdout.splitlines() if l.startswith("SISO_RESULT ")).split(" ", 1)[1])
    for paths in (record["artifacts"], result):
        for key in ("output_dir", "weights_dir", "lora_path", "kohya_path", "result_image", "loss_plot", "run_json"):
            assert os.path.isabs(paths[key]) and os.path.exists(paths[key]), (key, paths[key])
    for name in ("pytorch_lora_weights.safetensors", KOHYA_WEIGHT_NAME):
        assert read_metadata(out / name)["siso.base_model"] == str(work / "assets" / "sdxl")
    # a hub id (and a timm name) are names, not paths: they stay as they are
    hub = SISOConfig(pretrained_model_name_or_path="stabilityai/sdxl-turbo").with_absolute_paths()
    assert hub.pretrained_model_name_or_path == "stabilityai/sdxl-turbo"
    assert hub.dino_model_name == "vit_large_patch14_dinov2.lvd142m"


def test_help_shows_each_default_once_and_every_option_explained(capsys):
    """The fresh-user trial: '(default: a fresh ...) (default: None)' and options with no text."""
    import pytest

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in build_parser()._actions:
        if action.help != "==SUPPRESS==" and action.option_strings:
            assert action.help, action.option_strings
    flat = " ".join(text.split())
    # family-dependent defaults are shown once, as the recipe of each family
    assert flat.count("(recipe: sdxl 0.0002, flux 0.0002, sana 0.0008, flux2_klein 0.0002)") == 1 and "(default: 0.0002)" not in flat
    assert "fp16 with loss scaling on older NVIDIA GPUs" in flat
