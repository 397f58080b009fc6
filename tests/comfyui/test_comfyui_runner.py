"""The node's logic without ComfyUI: command, progress, errors, cancel, cleanup, output folders.

Each run uses a small fake script (tests/comfyui/fake_scripts) in place of siso-generate and
checks the status, that no temporary file is left, and that no child process survives.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image
from siso_comfy_helpers import alive, fake, pids

from comfyui import siso_runner as runner


def request(workdirs, image, script, **changes):
    params = runner.SISOParams(**changes.pop("params", {}))
    values = dict(
        image=image,
        params=params,
        loras_root=str(workdirs["loras"]),
        siso_script_path=script,
        python_executable=sys.executable,
        temp_root=str(workdirs["temp"]),
        terminate_grace_s=3.0,
    )
    values.update(changes)
    return runner.JobRequest(**values)


class Recorder:
    def __init__(self, cancel_after_steps: int | None = None):
        self.lines: list[tuple[str, str]] = []
        self.progress: list[dict] = []
        self.started: list[int] = []
        self.prepared = 0
        self.cancel_after_steps = cancel_after_steps

    def hooks(self) -> runner.Hooks:
        return runner.Hooks(
            on_line=lambda stream, text: self.lines.append((stream, text)),
            on_progress=self.progress.append,
            should_cancel=lambda: self.cancel_after_steps is not None and len(self.progress) >= self.cancel_after_steps,
            on_start=lambda command, pid: self.started.append(pid),
            before_start=self.prepare,
        )

    def prepare(self) -> None:
        self.prepared += 1


def assert_clean(workdirs):
    """No temporary file left, no process of the run alive."""
    assert list(workdirs["temp"].iterdir()) == []
    for pid in pids(workdirs):
        assert not alive(pid), f"process {pid} outlived the run"


def run_dirs(workdirs):
    return sorted((workdirs["loras"] / "siso").glob("*")) if (workdirs["loras"] / "siso").exists() else []


# ----------------------------------------------------------------------------- outcomes


def test_success_reports_progress_and_the_kohya_lora(workdirs, image):
    recorder = Recorder()
    job = runner.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=3)), recorder.hooks())
    assert job.status == "Success" and job.ok
    assert recorder.prepared == 1 and len(recorder.started) == 1
    assert job.lora_path.endswith(runner.KOHYA_NAME) and job.diffusers_path.endswith(runner.DIFFUSERS_NAME)
    assert job.lora_name.startswith("siso/") and job.lora_name.endswith("/" + runner.KOHYA_NAME)
    assert [p["step"] for p in recorder.progress] == [1, 2, 3]
    assert recorder.progress[-1]["total"] == 3
    assert ("stdout", "step 2/3 loss -1.2000 (dino -0.6000, ir -0.6000) best -1.2000 @2") in recorder.lines
    assert ("stderr", "siso: a log line on stderr") in recorder.lines
    assert job.result_image.endswith("result.png")
    assert "LoraLoader name: siso/" in job.report()
    assert_clean(workdirs)


def test_out_of_memory_is_named_with_a_hint(workdirs, image):
    job = runner.run_job(request(workdirs, image, fake("fake_oom")), Recorder().hooks())
    assert job.status.startswith("Failed: out of GPU memory (Tried to allocate 2.00 GiB)")
    assert "low-memory" in job.status and "\n" not in job.status
    assert job.lora_path == "" and job.returncode == 1
    assert run_dirs(workdirs) == []  # the empty run folder is removed again
    assert_clean(workdirs)


@pytest.mark.parametrize(
    "script, expected",
    [
        ("fake_exit_nonzero", "Failed: RuntimeError: the scheduler exploded"),
        ("fake_import_error", "Failed: the Python that runs SISO has no module 'diffusers'"),
        ("fake_missing_file", "Failed: file not found: /models/vae/config.json"),
        ("fake_cli_error", "Failed: resolution 500 is not usable"),
    ],
)
def test_failures_give_one_line_reasons(workdirs, image, script, expected):
    job = runner.run_job(request(workdirs, image, fake(script)), Recorder().hooks())
    assert job.status.startswith(expected), job.status
    assert "\n" not in job.status and "Traceback" not in job.status
    assert not job.ok and job.lora_path == ""
    assert_clean(workdirs)


def test_exit_zero_without_a_lora_is_a_failure(workdirs, image):
    job = runner.run_job(request(workdirs, image, fake("fake_no_lora")), Recorder().hooks())
    assert job.status.startswith("Failed: the script finished (exit code 0) but wrote no LoRA file")
    assert job.returncode == 0 and job.lora_path == ""
    assert_clean(workdirs)


def test_cancel_terminates_the_process_group_promptly(workdirs, image):
    recorder = Recorder(cancel_after_steps=2)
    started = time.monotonic()
    job = runner.run_job(request(workdirs, image, fake("fake_hang")), recorder.hooks())
    assert time.monotonic() - started < 8
    assert job.status == "Cancelled" and job.cancelled
    assert job.returncode == 143  # SIGTERM handled: it saved the best LoRA so far
    assert any("best LoRA so far" in note for note in job.notes)
    assert len(pids(workdirs)) == 2  # the script and its grandchild
    assert_clean(workdirs)


def test_cancel_escalates_to_sigkill(workdirs, image, monkeypatch):
    monkeypatch.setenv("FAKE_IGNORE_SIGTERM", "1")
    recorder = Recorder(cancel_after_steps=1)
    started = time.monotonic()
    job = runner.run_job(request(workdirs, image, fake("fake_hang"), terminate_grace_s=1.0), recorder.hooks())
    assert time.monotonic() - started < 8
    assert job.cancelled and job.returncode == -9
    assert any("SIGKILL" in text for _, text in recorder.lines)
    assert_clean(workdirs)


def test_an_exception_in_a_hook_still_kills_the_child(workdirs, image):
    def explode(record):
        raise RuntimeError("hook failed")

    hooks = runner.Hooks(on_progress=explode)
    with pytest.raises(RuntimeError, match="hook failed"):
        runner.run_job(request(workdirs, image, fake("fake_hang")), hooks)
    time.sleep(0.2)
    assert_clean(workdirs)


def test_upstream_script_gets_only_upstream_arguments_and_a_kohya_copy(workdirs, image, tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    recorder = Recorder()
    job = runner.run_job(
        request(workdirs, image, fake("fake_upstream"), params=dict(num_train_epochs=4, ir_features_path=__file__)),
        recorder.hooks(),
    )
    assert job.status == "Success", job.status
    argv = json.loads(argv_file.read_text())
    assert "--device" not in argv and "--mode" not in argv and "--quiet" not in argv
    assert argv[argv.index("--train_batch_size") + 1] == "1"
    assert job.lora_path.endswith(runner.KOHYA_NAME) and job.diffusers_path.endswith(runner.DIFFUSERS_NAME)
    assert any("converted the diffusers LoRA" in note for note in job.notes)
    assert [p["step"] for p in recorder.progress] == [1, 2, 3, 4]  # from tqdm's \r redraws
    from safetensors.numpy import load_file

    keys = set(load_file(job.lora_path))
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    assert_clean(workdirs)


def test_upstream_script_needs_ir_weights(workdirs, image):
    job = runner.run_job(request(workdirs, image, fake("fake_upstream")))
    assert job.status.startswith("Failed: ir_features_path is empty: the authors' script needs the IR weights")
    assert_clean(workdirs)


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "changes, expected",
    [
        (dict(python_executable="/nonexistent/bin/python"), "Failed: python_executable '/nonexistent/bin/python' does not exist"),
        (dict(siso_script_path="/nonexistent/siso.py"), "Failed: siso_script_path '/nonexistent/siso.py' does not exist"),
        (dict(params=dict(ir_features_path="/nonexistent/ir_features.pth")), "Failed: ir_features_path '/nonexistent/ir_features.pth' does not exist"),
        (dict(params=dict(base_model_path="/nonexistent/sdxl")), "Failed: base_model_path '/nonexistent/sdxl' does not exist"),
        (dict(params=dict(base_model_path="sd_xl_turbo_1.0_fp16.safetensors")), "Failed: base_model_path 'sd_xl_turbo_1.0_fp16.safetensors' is a single-file checkpoint"),
        (dict(params=dict(base_model_path="not a model")), "Failed: base_model_path 'not a model' is neither"),
        (dict(params=dict(prompt="  ")), "Failed: prompt is empty"),
        (dict(params=dict(dino_model_name="./missing-dino")), "Failed: dino_model_name './missing-dino' is a path that does not exist"),
        (dict(params=dict(extra_args='--foo "unclosed')), "Failed: extra_args cannot be parsed"),
        (dict(image=None), "Failed: subject_image is missing"),
        (dict(image=np.zeros((0, 64, 64, 3), np.float32)), "Failed: subject_image is an empty batch"),
        (dict(image=np.zeros((1, 3, 64, 64), np.float32)), "Failed: subject_image has shape [1, 3, 64, 64]"),
        (dict(image=np.zeros((1, 16, 16, 3), np.float32)), "Failed: subject_image is 16x16 pixels"),
    ],
)
def test_bad_input_is_one_clear_line_and_starts_nothing(workdirs, image, changes, expected):
    recorder = Recorder()
    subject = changes.pop("image", image)
    job = runner.run_job(request(workdirs, subject, fake("fake_success"), **changes), recorder.hooks())
    assert job.status.startswith(expected), job.status
    assert "\n" not in job.status and "Traceback" not in job.status
    assert recorder.started == [] and pids(workdirs) == []
    assert recorder.prepared == 0  # ComfyUI's models are not unloaded for a run that cannot start
    assert run_dirs(workdirs) == []
    assert_clean(workdirs)


def test_base_model_folder_must_be_a_diffusers_pipeline(workdirs, image, tmp_path):
    (tmp_path / "not-a-pipeline").mkdir()
    job = runner.run_job(request(workdirs, image, fake("fake_success"), params=dict(base_model_path=str(tmp_path / "not-a-pipeline"))))
    assert job.status.startswith("Failed: base_model_path") and "model_index.json" in job.status


def test_relative_names_are_found_in_search_folders(workdirs, image, tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "diffusers" / "my-sdxl").mkdir(parents=True)
    (models / "diffusers" / "my-sdxl" / "model_index.json").write_text("{}")
    (models / "siso").mkdir()
    (models / "siso" / "ir_features.pth").write_bytes(b"x")
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    job = runner.run_job(request(
        workdirs, image, fake("fake_success"),
        params=dict(base_model_path="my-sdxl", ir_features_path="ir_features.pth", num_train_epochs=1),
        search_dirs={"base_model": [str(models / "diffusers")], "ir": [str(models / "siso")]},
    ))
    assert job.ok, job.status
    argv = json.loads(argv_file.read_text())
    assert argv[argv.index("--pretrained_model_name_or_path") + 1] == str(models / "diffusers" / "my-sdxl")
    assert argv[argv.index("--ir_features_path") + 1] == str(models / "siso" / "ir_features.pth")


# ----------------------------------------------------------------------------- pieces


def test_command_for_siso_lab_has_every_setting():
    params = runner.SISOParams(prompt="a photo of a dog", num_train_epochs=9, learning_rate=3e-4, seed=7,
                               early_stopping_threshold_percentage=2.5, train_text_encoder=False,
                               ir_features_path="/w/ir.pth", mixed_precision="bf16", mode="low-memory",
                               extra_args="--pretrained_vae_model_name_or_path 'my vae'")
    command = runner.build_command("py", "s.py", "siso-lab", "/t/subject.png", params, "/out/w", "/out/o")
    assert command[:3] == ["py", "-u", "s.py"]
    pairs = {command[i]: command[i + 1] for i in range(3, len(command) - 1) if command[i].startswith("--")}
    assert pairs["--subject_image_path"] == "/t/subject.png"
    assert pairs["--prompt"] == "a photo of a dog"
    assert pairs["--weights_output_dir"] == "/out/w" and pairs["--output_dir"] == "/out/o"
    assert pairs["--num_train_epochs"] == "9" and pairs["--learning_rate"] == "0.0003" and pairs["--seed"] == "7"
    assert pairs["--early_stopping_threshold_percentage"] == "2.5"
    assert pairs["--ir_features_path"] == "/w/ir.pth"
    assert pairs["--mixed_precision"] == "bf16" and pairs["--mode"] == "low-memory"
    assert pairs["--pretrained_vae_model_name_or_path"] == "my vae"
    assert "--save_weights" in command and "--no-train_text_encoder" in command and "--quiet" in command


def test_command_works_with_the_real_siso_generate_parser():
    """Every argument the node passes is one siso-generate accepts, with the intended value."""
    from siso_lib.generate import build_parser

    params = runner.SISOParams(ir_features_path="/w/ir.pth", early_stopping_threshold_percentage=3.0)
    command = runner.build_command("py", "s.py", "siso-lab", "/t/s.png", params, "/w", "/o")
    args = build_parser().parse_args(command[3:])
    assert args.subject_image_path == "/t/s.png" and args.weights_output_dir == "/w" and args.output_dir == "/o"
    assert args.num_train_epochs == 50 and args.learning_rate == 2e-4 and args.rank == 4 and args.train_text_encoder
    assert args.quiet and args.mode == "default"
    upstream = runner.build_command("py", "s.py", "upstream", "/t/s.png", params, "/w", "/o")
    build_parser().parse_args(upstream[3:])  # the upstream list is a subset too


def test_script_flavour(tmp_path):
    assert runner.script_flavour(runner.LAUNCHER) == "siso-lab"
    assert runner.script_flavour(fake("fake_upstream")) == "upstream"
    assert runner.script_flavour(tmp_path / "missing.py") == "upstream"


def test_progress_parsing():
    record = runner.parse_progress('SISO_PROGRESS {"step": 3, "total": 50, "loss": -1.5}')
    assert record == {"step": 3, "total": 50, "loss": -1.5}
    assert runner.parse_progress("SISO_PROGRESS {not json") is None
    assert runner.parse_progress("siso: hello") is None
    assert runner.parse_result('SISO_RESULT {"status": "success"}') == {"status": "success"}
    assert runner.parse_tqdm("Steps:  12%|##   | 6/50 [00:03<00:20,  2.1it/s]") == {"step": 6, "total": 50}
    assert runner.parse_tqdm("loading 3 files") is None
    assert runner.format_progress({"step": 1, "total": 2}) == "step 1/2"


def test_diagnose_fallbacks():
    assert runner.diagnose(-9, []).startswith("the SISO process was killed by SIGKILL (out of system RAM?")
    assert runner.diagnose(143, ["siso: interrupted"]) .startswith("the SISO process was interrupted")
    assert runner.diagnose(5, []) == "the script exited with code 5 and printed no error"
    assert runner.diagnose(5, ["something odd"]) == "exit code 5: something odd"
    assert runner.diagnose(2, ["usage: x", "x: error: unrecognized arguments: --mode default"]).startswith(
        "the script rejected arguments (unrecognized arguments: --mode default)")
    assert runner.diagnose(1, [], {"stop_reason": "non_finite_loss", "error": "nan at step 4"}).startswith(
        "the loss became NaN/infinite (nan at step 4)")
    assert "--no-cuda_graphs in extra_args" in runner.diagnose(1, [], {"stop_reason": "cuda_graph_mismatch"})
    assert runner.diagnose(1, ["RuntimeError: MPS backend out of memory (MPS allocated: 9 GB)"]).startswith("out of GPU memory")


def test_image_is_read_channels_last_and_batch_uses_the_first(tmp_path, image):
    batch = np.concatenate([image, 1.0 - image], axis=0)
    path = tmp_path / "s.png"
    notes = runner.image_to_png(batch, str(path))
    assert notes == ["subject_image is a batch of 2: SISO uses its first image only"]
    with Image.open(path) as picture:
        assert picture.mode == "RGB" and picture.size == (56, 40)  # width x height from [B, H, W, C]
        pixels = np.asarray(picture).astype(np.float32) / 255.0
    np.testing.assert_allclose(pixels, image[0], atol=1 / 255)


def test_image_accepts_torch_tensors_and_alpha(tmp_path, image):
    import torch

    rgba = np.concatenate([image, np.full(image.shape[:3] + (1,), 0.5, np.float32)], axis=-1)
    notes = runner.image_to_png(torch.from_numpy(rgba), str(tmp_path / "a.png"))
    assert "alpha channel" in notes[0]
    runner.image_to_png(torch.from_numpy(image[0]), str(tmp_path / "b.png"))  # [H, W, C] without batch
    loaded = runner.load_image_tensor(str(tmp_path / "b.png"))
    assert tuple(loaded.shape) == (1, 40, 56, 3) and loaded.dtype == torch.float32
    np.testing.assert_allclose(loaded[0].numpy(), image[0], atol=1 / 255)


def test_run_folders_are_unique_and_never_reused(tmp_path):
    now = dt.datetime(2025, 1, 2, 3, 4, 5)
    first, created = runner.choose_run_dir(str(tmp_path), "", True, "a photo of a cat!", now)
    second, _ = runner.choose_run_dir(str(tmp_path), "", True, "a photo of a cat!", now)
    assert created and first == tmp_path / "siso" / "20250102-030405-a-photo-of-a-cat"
    assert second == tmp_path / "siso" / "20250102-030405-a-photo-of-a-cat-1"
    relative, _ = runner.choose_run_dir(str(tmp_path), "my_cats", True, "cat", now)
    assert relative.parent == tmp_path / "my_cats"
    absolute, _ = runner.choose_run_dir(str(tmp_path), str(tmp_path / "abs"), False, "cat", now)
    assert absolute == tmp_path / "abs"
    (absolute / runner.KOHYA_NAME).write_bytes(b"x")
    with pytest.raises(runner.InputProblem, match="already holds a LoRA"):
        runner.choose_run_dir(str(tmp_path), str(tmp_path / "abs"), False, "cat", now)


def test_a_fixed_folder_with_an_earlier_lora_is_refused(workdirs, image):
    folder = workdirs["loras"] / "fixed"
    folder.mkdir()
    (folder / runner.DIFFUSERS_NAME).write_bytes(b"old")
    job = runner.run_job(request(workdirs, image, fake("fake_success"), weights_output_dir="fixed", unique_subfolder=False))
    assert job.status.startswith("Failed: weights_output_dir") and "already holds a LoRA" in job.status
    assert (folder / runner.DIFFUSERS_NAME).read_bytes() == b"old"
    assert_clean(workdirs)


def test_parallel_jobs_do_not_share_folders(workdirs, image):
    results = []

    def go():
        results.append(runner.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=1))))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(job.ok for job in results)
    assert len({job.run_dir for job in results}) == 2
    assert_clean(workdirs)
