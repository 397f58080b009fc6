"""Bad input, interrupts and crashes never cost the user a result.

Every bad input goes through the command line (in-process `siso_lib.cli.generate.main`, the code
`siso-generate` runs; permission and signal cases in a real subprocess) and must give exit code
2, exactly one `siso-generate: error:` line naming the input and the fix, no traceback, and no file under a
final name. Interrupts leave the best LoRA so far; crashes leave only complete files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from siso_lib.cli import generate
from siso_lib.config import SISOConfig
from siso_lib.io.images import load_subject_image
from siso_lib.io.lora import DIFFUSERS_WEIGHT_NAME, read_metadata
from siso_lib.optimizer import SISOOptimizer
from siso_lib.runner import run_siso
from siso_lib.offline.tiny_models import build_ir_state_dict
from cli_cases import error_lines

from image_helpers import png_claiming

REPO = Path(__file__).resolve().parents[2]
FINAL_NAMES = ("pytorch_lora_weights.safetensors", "siso_lora_kohya.safetensors", "run.json", "result.png", "loss_curve.png")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/siso-cli-pwned",))


def cli_args(assets, subject, out, **changes):
    values = {
        "subject_image_path": subject,
        "prompt": "a photo of a cat",
        "pretrained_model_name_or_path": assets["sdxl"],
        "dino_model_name": assets["dino"],
        "ir_features_path": assets["ir"],
        "resolution": "64",
        "num_train_epochs": "2",
        "output_dir": str(out),
    }
    values.update(changes)
    args = []
    for key, value in values.items():
        if value is not None:
            args += [f"--{key}", str(value)]
    return args + ["--quiet"]


def run_main(args, capsys):
    code = generate.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def make_bad_inputs(tmp: Path, assets: dict, subject: str) -> dict[str, tuple[dict, str]]:
    """case -> (CLI changes, expected message fragment)."""
    cat = Image.open(subject).convert("RGB")
    (tmp / "text.png").write_text("not a picture")
    full = tmp / "full.png"
    cat.save(full)
    (tmp / "cut.png").write_bytes(full.read_bytes()[:20000])
    (tmp / "empty.png").write_bytes(b"")
    Image.new("RGB", (8, 8)).save(tmp / "tiny.png")
    (tmp / "bomb.png").write_bytes(png_claiming(12000, 12000))
    (tmp / "not_diffusers").mkdir()
    sd15 = tmp / "sd15"
    sd15.mkdir()
    (sd15 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline", "unet": [], "vae": [],
                                                       "text_encoder": [], "tokenizer": [], "scheduler": []}))
    (tmp / "ir_empty.pth").write_bytes(b"")
    ir_bytes = Path(assets["ir"]).read_bytes()
    (tmp / "ir_cut.pth").write_bytes(ir_bytes[: len(ir_bytes) // 2])
    torch.save({"conv.weight": torch.zeros(4, 3, 3, 3)}, tmp / "ir_other.pth")
    torch.save({"note": "hello", "epoch": 3}, tmp / "ir_dict.pth")
    torch.save({"backbone.conv1.weight": _Evil()}, tmp / "ir_evil.pth")
    (tmp / "a_file").write_text("in the way")
    (tmp / "ir.txt").write_text("some notes, not weights")
    (tmp / "ir.html").write_text("<html><body>403 Forbidden</body></html>")
    (tmp / "wide.png").write_bytes(png_claiming(20000, 1000))
    incomplete = tmp / "incomplete"
    incomplete.mkdir()
    shutil.copy(Path(assets["sdxl"]) / "model_index.json", incomplete / "model_index.json")
    corrupt = tmp / "sdxl_corrupt"
    shutil.copytree(assets["sdxl"], corrupt)
    unet_weights = next((corrupt / "unet").glob("*.safetensors"))
    unet_weights.write_bytes(unet_weights.read_bytes()[:1000])
    dino_cases = {}
    for name, edit in {
        "no_pretrained_cfg": lambda cfg: cfg.pop("pretrained_cfg"),
        "other_shape": lambda cfg: cfg["model_args"].update(embed_dim=64),
    }.items():
        folder = tmp / f"dino_{name}"
        shutil.copytree(assets["dino"], folder)
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
        dino_cases[name] = folder
    shutil.copytree(assets["dino"], tmp / "dino_garbled")
    (tmp / "dino_garbled" / "config.json").write_text("{not json")
    shutil.copytree(assets["dino"], tmp / "dino_no_weights")
    (tmp / "dino_no_weights" / "model.safetensors").unlink()
    return {
        "image missing": (dict(subject_image_path=tmp / "missing.png"), "does not exist"),
        "image not an image": (dict(subject_image_path=tmp / "text.png"), "not an image file"),
        "image truncated": (dict(subject_image_path=tmp / "cut.png"), "truncated or corrupt"),
        "image empty": (dict(subject_image_path=tmp / "empty.png"), "is empty"),
        "image tiny": (dict(subject_image_path=tmp / "tiny.png"), "only 8x8 pixels"),
        "image huge": (dict(subject_image_path=tmp / "bomb.png"), "too large to decode safely"),
        "image too elongated": (dict(subject_image_path=tmp / "wide.png"), "see only its centre square, 5% of the photo"),
        "prompt empty": (dict(prompt=" "), "prompt is empty"),
        "prompt absurdly long": (dict(prompt="a cat " * 1000), "characters long"),
        "resolution not multiple of 8": (dict(resolution="100"), "multiple of 8"),
        "resolution out of range": (dict(resolution="4096"), "between 64 and 2048"),
        "base model missing": (dict(pretrained_model_name_or_path=tmp / "nowhere"), "does not exist"),
        "base model not diffusers": (dict(pretrained_model_name_or_path=tmp / "not_diffusers"), "not a diffusers pipeline"),
        "base model not SDXL": (dict(pretrained_model_name_or_path=sd15), "pipeline: SISO here runs SDXL"),
        "base model a file": (dict(pretrained_model_name_or_path=tmp / "a_file"), "is a file, not a diffusers folder"),
        "base model incomplete": (dict(pretrained_model_name_or_path=incomplete), "the download is incomplete"),
        "base model weights corrupt": (dict(pretrained_model_name_or_path=corrupt), "could not be loaded"),
        "VAE missing": (dict(pretrained_vae_model_name_or_path=tmp / "no_vae"), "VAE"),
        "DINO name unknown": (dict(dino_model_name="vit_nonexistent_dinov9"), "not a timm model name"),
        "DINO folder missing": (dict(dino_model_name=tmp / "no_dino"), "does not exist"),
        "DINO config without pretrained_cfg": (dict(dino_model_name=dino_cases["no_pretrained_cfg"]), "has no pretrained_cfg"),
        "DINO config not JSON": (dict(dino_model_name=tmp / "dino_garbled"), "is unreadable"),
        "DINO folder without weights": (dict(dino_model_name=tmp / "dino_no_weights"), "has no weights"),
        "DINO weights of another shape": (dict(dino_model_name=dino_cases["other_shape"]), "could not be loaded"),
        "IR missing": (dict(ir_features_path=tmp / "nowhere.pth"), "does not exist"),
        "IR empty": (dict(ir_features_path=tmp / "ir_empty.pth"), "empty"),
        "IR truncated": (dict(ir_features_path=tmp / "ir_cut.pth"), "truncated or not a PyTorch checkpoint"),
        "IR different network": (dict(ir_features_path=tmp / "ir_other.pth"), "different network"),
        "IR pickle not a state dict": (dict(ir_features_path=tmp / "ir_dict.pth"), "not a state dict of tensors"),
        "IR pickle running code": (dict(ir_features_path=tmp / "ir_evil.pth"), "not a plain weights file"),
        "IR is an image": (dict(ir_features_path=subject), "not a PyTorch checkpoint (it is a PNG image)"),
        "IR is text": (dict(ir_features_path=tmp / "ir.txt"), "not a PyTorch checkpoint (it is unknown content)"),
        "IR is a download error page": (dict(ir_features_path=tmp / "ir.html"), "perhaps a download error page"),
        "output folder not writable": (dict(output_dir=tmp / "a_file" / "run"), "not writable"),
        "output folder is a file": (dict(output_dir=tmp / "a_file"), "is a file, not a folder"),
        "progress file unwritable": (dict(progress_file=tmp / "a_file" / "p.jsonl"), "cannot be written"),
        "lr scheduler unknown": (dict(lr_scheduler="cosinee"), "lr_scheduler 'cosinee' is unknown"),
        "device not a device": (dict(device="gpu"), "not a device name"),
        "device not available": (dict(device="xpu:3"), "not available on this machine"),
    }


def test_bad_input_matrix(tiny_assets, subject_path, tmp_path, capsys):
    marker = Path("/tmp/siso-cli-pwned")
    marker.unlink(missing_ok=True)
    cases = make_bad_inputs(tmp_path, tiny_assets, subject_path)
    messages = {}
    for case, (changes, fragment) in cases.items():
        out = tmp_path / "out" / case.replace(" ", "_")
        code, stdout, stderr = run_main(cli_args(tiny_assets, subject_path, out, **changes), capsys)
        errors = error_lines(stderr, "siso-generate")
        assert code == 2, (case, stderr)
        assert len(errors) == 1 and fragment in errors[0], (case, stderr)
        messages[case] = errors[0].replace(str(tmp_path), "<tmp>")
        assert "Traceback" not in stderr and "SISO_RESULT" not in stdout, case
        for name in FINAL_NAMES:
            assert not (out / name).exists(), (case, name)
        assert not out.exists(), f"{case}: bad input left the folder {out}"
    assert not marker.exists(), "a pickle's code was executed"
    print("\n" + "\n".join(f"{case}: {message}" for case, message in messages.items()))


def test_debug_flag_shows_the_traceback(tiny_assets, subject_path, tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        generate.main(cli_args(tiny_assets, str(tmp_path / "missing.png"), tmp_path / "o") + ["--debug"])


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16", "exif"])
def test_odd_but_valid_images_run_through_the_cli(tiny_assets, subject_path, tmp_path, capsys, mode):
    cat = Image.open(subject_path).convert("RGB")
    path = tmp_path / "subject.png"
    if mode == "exif":
        exif = Image.Exif()
        exif[0x0112] = 8
        path = tmp_path / "subject.jpg"
        cat.save(path, exif=exif.tobytes())
    elif mode == "I;16":
        import numpy as np

        Image.fromarray((np.asarray(cat.convert("L"), dtype=np.uint16) * 257)).save(path)
    else:
        cat.convert(mode).save(path)
    code, _, stderr = run_main(cli_args(tiny_assets, str(path), tmp_path / "out"), capsys)
    assert code == 0, stderr
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["status"] == "completed"
    assert record["subject_image"]["size"] == ([300, 451] if mode == "exif" else [451, 300])


def test_an_earlier_lora_is_kept_unless_overwrite(tiny_assets, subject_path, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_main(cli_args(tiny_assets, subject_path, out), capsys)[0] == 0
    before = (out / DIFFUSERS_WEIGHT_NAME).read_bytes()
    code, _, stderr = run_main(cli_args(tiny_assets, subject_path, out, seed="7"), capsys)
    assert code == 2 and "already holds a LoRA" in stderr and "--overwrite" in stderr
    assert (out / DIFFUSERS_WEIGHT_NAME).read_bytes() == before
    code, _, _ = run_main(cli_args(tiny_assets, subject_path, out, seed="7") + ["--overwrite"], capsys)
    assert code == 0 and (out / DIFFUSERS_WEIGHT_NAME).read_bytes() != before
    assert read_metadata(out / DIFFUSERS_WEIGHT_NAME)["siso.seed"] == "7"


def test_default_output_is_a_fresh_run_folder(tiny_assets, subject_path, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        code, _, _ = run_main(cli_args(tiny_assets, subject_path, None, output_dir=None), capsys)
        assert code == 0
    runs = sorted((tmp_path / "outputs" / "runs").iterdir())
    assert len(runs) == 2 and all((run / DIFFUSERS_WEIGHT_NAME).is_file() for run in runs)


@pytest.fixture
def shared_dir():
    """A folder an unprivileged user can traverse (pytest's tmp_path is private to its owner)."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="siso-perm-"))
    folder.chmod(0o755)
    yield folder
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    shutil.rmtree(folder)


@pytest.mark.slow
def test_unreadable_image_and_unwritable_folder(tiny_assets, subject_path, shared_dir):
    """Real permissions: as root the CLI runs as `nobody` (root reads and writes anything)."""
    assets = {}
    for name, path in tiny_assets.items():
        target = shared_dir / "assets" / Path(path).name
        (shutil.copytree if Path(path).is_dir() else shutil.copy)(path, target)
        assets[name] = str(target)
    for path in shared_dir.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    subject = shared_dir / "cat.png"
    shutil.copy(subject_path, subject)
    subject.chmod(0o644)
    secret = shared_dir / "secret.png"
    shutil.copy(subject_path, secret)
    secret.chmod(0o000)
    locked = shared_dir / "locked"
    locked.mkdir(mode=0o555)
    locked.chmod(0o555)
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    env = {**os.environ, "HOME": str(shared_dir), "MPLCONFIGDIR": str(shared_dir / "mpl")}
    for changes, fragment in (
        (dict(subject_image_path=secret, output_dir=shared_dir / "o1"), "not readable (permission denied)"),
        (dict(output_dir=locked / "run"), "not writable"),
    ):
        proc = subprocess.run(
            prefix + [sys.executable, "-m", "siso_lib.cli.generate", *cli_args(assets, str(subject), None, **changes)],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )
        errors = error_lines(proc.stderr, "siso-generate")
        assert proc.returncode == 2 and len(errors) == 1 and fragment in errors[0], proc.stderr
    assert not any(locked.iterdir())


def start_long_run(tiny_assets, subject_path, out, *extra):
    args = cli_args(tiny_assets, subject_path, out, num_train_epochs="100000", early_stopping_threshold_percentage="0")
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "siso_lib.cli.generate", *args, *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for_steps(proc, count, timeout=240):
    deadline, seen = time.time() + timeout, 0
    while seen < count:
        assert time.time() < deadline, "the run did not make progress"
        line = proc.stdout.readline()
        assert line, proc.stderr.read()
        seen += line.startswith("SISO_PROGRESS ")
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_interrupt_writes_the_best_lora_so_far(tiny_assets, subject_path, tmp_path, sig, code):
    out = tmp_path / "run"
    proc = start_long_run(tiny_assets, subject_path, out)
    try:
        wait_for_steps(proc, 3)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == code, stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["steps_run"] >= 3
    lora = load_file(out / DIFFUSERS_WEIGHT_NAME)
    assert lora and read_metadata(out / DIFFUSERS_WEIGHT_NAME)["siso.best_step"] == str(record["best_step"])
    assert "SISO_RESULT" in stdout


@pytest.mark.slow
def test_hard_kill_with_save_on_improve_leaves_a_complete_lora(tiny_assets, subject_path, tmp_path):
    out = tmp_path / "run"
    proc = start_long_run(tiny_assets, subject_path, out, "--save_on_improve")
    try:
        wait_for_steps(proc, 4)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    lora = load_file(out / DIFFUSERS_WEIGHT_NAME)  # complete: it loads
    kohya = load_file(out / "siso_lora_kohya.safetensors")
    assert lora and kohya
    meta = read_metadata(out / DIFFUSERS_WEIGHT_NAME)
    assert meta["siso.in_progress"] == "true" and int(meta["siso.best_step"]) >= 1
    assert not (out / "run.json").exists()  # never half-written: only written at the end


def inject(monkeypatch, target, attribute, at_call, fault):
    original = getattr(target, attribute)
    calls = {"n": 0}

    def wrapper(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == at_call:
            return fault(original(self, *args, **kwargs))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(target, attribute, wrapper)


def test_nan_loss_stops_and_keeps_the_best(tiny_config, subject_path, tmp_path, monkeypatch, capsys):
    from siso_lib.losses import SubjectSimilarityLoss

    def nan(losses):
        return {**losses, "total": losses["total"] * float("nan")}

    inject(monkeypatch, SubjectSimilarityLoss, "forward", 4, nan)
    config = tiny_config(num_train_epochs=10, early_stopping_threshold_percentage=0)
    outcome = run_siso(config, subject_path, output_dir=str(tmp_path))
    assert outcome.result.stop_reason == "non_finite_loss" and outcome.result.steps_run == 3
    assert "precision='fp32' or a lower learning_rate" in outcome.result.error  # a Python caller reads the config's names
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["status"] == "failed" and record["best_step"] == 3
    assert read_metadata(tmp_path / DIFFUSERS_WEIGHT_NAME)["siso.best_step"] == "3"


def test_nan_loss_through_the_cli(tiny_assets, subject_path, tmp_path, monkeypatch, capsys):
    from siso_lib.losses import SubjectSimilarityLoss

    inject(monkeypatch, SubjectSimilarityLoss, "forward", 3, lambda losses: {**losses, "total": losses["total"] / 0.0 * 0.0})
    code, stdout, stderr = run_main(cli_args(tiny_assets, subject_path, tmp_path, num_train_epochs="10"), capsys)
    assert code == 1 and "siso-generate: error: the loss became non-finite at iteration 3" in stderr
    assert (tmp_path / DIFFUSERS_WEIGHT_NAME).is_file()


def test_out_of_memory_stops_and_keeps_the_best(tiny_config, subject_path, tmp_path, monkeypatch):
    from siso_lib.generators.sdxl import SDXLGenerator

    def oom(_image):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    inject(monkeypatch, SDXLGenerator, "forward", 5, oom)
    outcome = run_siso(tiny_config(num_train_epochs=10, early_stopping_threshold_percentage=0), subject_path, output_dir=str(tmp_path))
    assert outcome.result.stop_reason == "out_of_memory" and outcome.result.steps_run == 4
    assert "mode='low-memory'" in outcome.result.error
    assert read_metadata(tmp_path / DIFFUSERS_WEIGHT_NAME)["siso.best_step"] == "4"
    assert json.loads((tmp_path / "run.json").read_text())["status"] == "failed"


def test_out_of_memory_names_the_mode_the_memory_model_predicts_would_fit(tiny_config, subject_path, tmp_path, monkeypatch):
    """On a (pretended) 12 GiB GPU, SDXL's default mode ran out: low-memory is predicted to fit."""
    from siso_lib import optimizer
    from siso_lib.generators.sdxl import SDXLGenerator

    def oom(_image):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")

    inject(monkeypatch, SDXLGenerator, "forward", 2, oom)
    monkeypatch.setattr(optimizer, "free_memory_bytes", lambda device: 12 * 2**30)
    outcome = run_siso(tiny_config(num_train_epochs=5, resolution=512, early_stopping_threshold_percentage=0), subject_path,
                       output_dir=str(tmp_path))
    assert outcome.result.stop_reason == "out_of_memory" and (tmp_path / DIFFUSERS_WEIGHT_NAME).is_file()
    assert outcome.result.error == ("out of memory at iteration 2 in default mode: the memory model predicts low-memory "
                                    "fits this device: use mode='low-memory' (or a smaller resolution)")


def test_run_json_is_enough_to_repeat_a_run(tiny_config, subject_path, tmp_path):
    first = run_siso(tiny_config(num_train_epochs=4), subject_path, output_dir=str(tmp_path)).result
    record = json.loads((tmp_path / "run.json").read_text())
    config = SISOConfig.from_dict(record["parameters"])
    again = SISOOptimizer(config, load_subject_image(record["subject_image"]["path"])).run()
    assert [r["total"] for r in again.history] == [r["total"] for r in first.history]
    assert {"torch", "diffusers", "transformers", "peft"} <= set(record["versions"])
    assert record["runtime"]["device"].startswith("cpu")
    assert record["runtime"]["cuda_graphs"] is False and record["runtime"]["cuda_graphs_captured"] is False
    assert "CUDA device" in record["runtime"]["cuda_graphs_note"]


def test_long_library_errors_are_cut_at_a_word_boundary():
    """The field report: the hub-id error was cut at 200 characters in the middle of a word."""
    from siso_lib.errors import error_summary

    long = RuntimeError("Cannot load model org/name: " + " ".join(f"word{i}" for i in range(80)) + "\nsecond line")
    summary = error_summary(long)
    assert len(summary) <= 200 and summary.endswith(" ...")
    assert summary[:-4].split(" ")[-1] in long.args[0].split(" ")  # the last word kept is a whole word
    assert error_summary(RuntimeError("short\nmore")) == "short" and error_summary(KeyError()) == "KeyError"


def test_a_hub_id_that_is_not_cached_says_how_to_get_it():
    from siso_lib.errors import SISOInputError
    from siso_lib.generators.sdxl import load_sdxl_pipeline

    with pytest.raises(SISOInputError) as caught:
        load_sdxl_pipeline("siso-lab-tests/no-such-model")
    message = str(caught.value)
    assert "hf download siso-lab-tests/no-such-model" in message and "\n" not in message
    inner = message.split("(", 1)[1].rsplit("):", 1)[0]
    original = str(caught.value.__cause__).splitlines()[0]
    assert inner == original or (inner.endswith(" ...") and original.startswith(inner[:-4] + " "))


def test_bad_input_in_a_notebook_is_one_line_not_a_traceback():
    """IPython calls `_render_traceback_` instead of printing the traceback of an exception."""
    from siso_lib.errors import SISOInputError

    assert SISOInputError("subject image 'x.png' does not exist: check the path")._render_traceback_() == [
        "SISOInputError: subject image 'x.png' does not exist: check the path"
    ]


def test_overwrite_leaves_one_run_in_the_folder(tiny_assets, subject_path, tmp_path, capsys):
    """The fresh-user trial: --overwrite with fewer iterations left epoch_3..12.png of the earlier run."""
    out = tmp_path / "run"
    assert run_main(cli_args(tiny_assets, subject_path, out, num_train_epochs="4", early_stopping_threshold_percentage="0")
                    + ["--log_every_epoch"], capsys)[0] == 0
    assert len(list(out.glob("epoch_*.png"))) == 4
    code, _, _ = run_main(cli_args(tiny_assets, subject_path, out, num_train_epochs="2") + ["--log_every_epoch", "--overwrite"], capsys)
    assert code == 0
    assert sorted(p.name for p in out.glob("epoch_*.png")) == ["epoch_1.png", "epoch_2.png"]
    assert json.loads((out / "run.json").read_text())["steps_run"] == 2
    code, _, _ = run_main(cli_args(tiny_assets, subject_path, out, num_train_epochs="2") + ["--overwrite"], capsys)
    assert code == 0 and not list(out.glob("epoch_*.png"))  # this run wrote none: none of the earlier run's stay
