"""The node's logic without ComfyUI: command, progress, errors, cancel, cleanup, output folders.

Each run uses a small fake script (tests/comfyui/fake_scripts) in place of siso-generate and
checks the status, that no temporary file is left, and that no child process survives.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from siso_comfy_helpers import alive, fake, pids

from comfyui.siso import checks, child, commands, folders, images, jobs, messages, pack, progress, upstream
from comfyui.siso import diagnose as diagnosis
from comfyui.siso.params import RECIPE_PARAMS, SISOParams, with_recipe


def request(workdirs, image, script, **changes):
    values = dict(
        image=image,
        params=SISOParams(**changes.pop("params", {})),
        loras_root=str(workdirs["loras"]),
        runs_root=str(workdirs["runs"]),
        siso_script_path=script,
        python_executable=sys.executable,
        terminate_grace_s=3.0,
    )
    values.update(changes)
    return jobs.JobRequest(**values)


class Recorder:
    def __init__(self, cancel_after_steps: int | None = None):
        self.lines: list[tuple[str, str]] = []
        self.progress: list[dict] = []
        self.started: list[int] = []
        self.prepared = 0
        self.cancel_after_steps = cancel_after_steps

    def hooks(self) -> child.Hooks:
        return child.Hooks(
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
    """The run folders (everything but the Kohya LoRA goes there)."""
    return sorted(workdirs["runs"].glob("*")) if workdirs["runs"].exists() else []


LORA_SUFFIXES = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")  # what ComfyUI lists


def listed_loras(folder) -> list[str]:
    """What ComfyUI's LoraLoader would offer from `folder` (every file with a model suffix, recursively)."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.suffix in LORA_SUFFIXES)


# ----------------------------------------------------------------------------- outcomes


def test_success_reports_progress_and_the_kohya_lora(workdirs, image):
    recorder = Recorder()
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=3)), recorder.hooks())
    assert job.status == "Success" and job.ok
    assert recorder.prepared == 1 and len(recorder.started) == 1
    assert job.lora_path.endswith(folders.KOHYA_NAME) and job.diffusers_path.endswith(folders.DIFFUSERS_NAME)
    assert job.lora_name.startswith("siso/") and job.lora_name.endswith("/" + folders.KOHYA_NAME)
    assert [p["step"] for p in recorder.progress] == [1, 2, 3]
    assert recorder.progress[-1]["total"] == 3
    assert ("stdout", "step 2/3 loss -1.2000 (dino -0.6000, ir -0.6000) best -1.2000 @2") in recorder.lines
    assert ("stderr", "siso: a log line on stderr") in recorder.lines
    assert job.result_image.endswith("result.png")
    assert "LoraLoader name: siso/" in job.report()
    assert_clean(workdirs)


def test_out_of_memory_is_named_with_a_hint(workdirs, image):
    job = jobs.run_job(request(workdirs, image, fake("fake_oom")), Recorder().hooks())
    assert job.status.startswith("Failed: out of GPU memory (Tried to allocate 2.00 GiB)")
    assert "low-memory" in job.status and "\n" not in job.status
    assert job.lora_path == "" and job.returncode == 1
    assert run_dirs(workdirs) == []  # the empty run folder is removed again
    assert_clean(workdirs)


@pytest.mark.parametrize(
    "script, expected",
    [
        ("fake_exit_nonzero", "Failed: RuntimeError: the scheduler exploded"),
        ("fake_import_error", f"Failed: the Python that runs SISO ({sys.executable}) has no module 'diffusers': "
                              f"run {pack.install_command(sys.executable)}"),
        ("fake_missing_file", "Failed: file not found: /models/vae/config.json"),
        ("fake_cli_error", "Failed: resolution 500 is not usable"),
    ],
)
def test_failures_give_one_line_reasons(workdirs, image, script, expected):
    job = jobs.run_job(request(workdirs, image, fake(script)), Recorder().hooks())
    assert job.status.startswith(expected), job.status
    assert "\n" not in job.status and "Traceback" not in job.status
    assert not job.ok and job.lora_path == ""
    assert_clean(workdirs)


def test_exit_zero_without_a_lora_is_a_failure(workdirs, image):
    job = jobs.run_job(request(workdirs, image, fake("fake_no_lora")), Recorder().hooks())
    assert job.status.startswith("Failed: the script finished (exit code 0) but wrote no LoRA file")
    assert job.returncode == 0 and job.lora_path == ""
    assert_clean(workdirs)


def test_cancel_terminates_the_process_group_promptly(workdirs, image):
    recorder = Recorder(cancel_after_steps=2)
    started = time.monotonic()
    job = jobs.run_job(request(workdirs, image, fake("fake_hang")), recorder.hooks())
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
    job = jobs.run_job(request(workdirs, image, fake("fake_hang"), terminate_grace_s=1.0), recorder.hooks())
    assert time.monotonic() - started < 8
    assert job.cancelled and job.returncode == -9
    assert any("SIGKILL" in text for _, text in recorder.lines)
    assert_clean(workdirs)


def test_an_exception_in_a_hook_still_kills_the_child(workdirs, image):
    def explode(record):
        raise RuntimeError("hook failed")

    hooks = child.Hooks(on_progress=explode)
    with pytest.raises(RuntimeError, match="hook failed"):
        jobs.run_job(request(workdirs, image, fake("fake_hang")), hooks)
    time.sleep(0.2)
    assert_clean(workdirs)


def test_upstream_script_gets_only_upstream_arguments_and_a_kohya_copy(workdirs, image, tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    recorder = Recorder()
    job = jobs.run_job(
        request(workdirs, image, fake("fake_upstream"), params=dict(num_train_epochs=4, ir_features_path=__file__)),
        recorder.hooks(),
    )
    assert job.status == "Success", job.status
    argv = json.loads(argv_file.read_text())
    assert "--device" not in argv and "--mode" not in argv and "--quiet" not in argv
    assert argv[argv.index("--train_batch_size") + 1] == "1"
    assert job.lora_path.endswith(folders.KOHYA_NAME) and job.diffusers_path.endswith(folders.DIFFUSERS_NAME)
    assert any("converted the diffusers LoRA" in note for note in job.notes)
    assert [p["step"] for p in recorder.progress] == [1, 2, 3, 4]  # from tqdm's \r redraws
    from safetensors.numpy import load_file

    keys = set(load_file(job.lora_path))
    assert "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight" in keys
    assert "lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha" in keys
    assert_clean(workdirs)


def test_upstream_script_needs_ir_weights(workdirs, image):
    job = jobs.run_job(request(workdirs, image, fake("fake_upstream")))
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
        (dict(params=dict(base_model_path="sd_xl_turbo_1.0_fp16.safetensors")), "Failed: base_model_path 'sd_xl_turbo_1.0_fp16.safetensors' does not exist"),
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
    job = jobs.run_job(request(workdirs, subject, fake("fake_success"), **changes), recorder.hooks())
    assert job.status.startswith(expected), job.status
    assert "\n" not in job.status and "Traceback" not in job.status
    assert recorder.started == [] and pids(workdirs) == []
    assert recorder.prepared == 0  # ComfyUI's models are not unloaded for a run that cannot start
    assert run_dirs(workdirs) == []
    assert_clean(workdirs)


def test_base_model_folder_must_be_a_diffusers_pipeline(workdirs, image, tmp_path):
    (tmp_path / "not-a-pipeline").mkdir()
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(base_model_path=str(tmp_path / "not-a-pipeline"))))
    assert job.status.startswith("Failed: base_model_path") and "model_index.json" in job.status


def test_relative_names_are_found_in_search_folders(workdirs, image, tmp_path, monkeypatch):
    models = tmp_path / "models"
    (models / "diffusers" / "my-sdxl").mkdir(parents=True)
    (models / "diffusers" / "my-sdxl" / "model_index.json").write_text('{"_class_name": "StableDiffusionXLPipeline"}')
    (models / "siso").mkdir()
    (models / "siso" / "ir_features.pth").write_bytes(b"x")
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    job = jobs.run_job(request(
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
    params = SISOParams(prompt="a photo of a dog", num_train_epochs=9, learning_rate=3e-4, seed=7,
                               early_stopping_threshold_percentage=2.5, train_text_encoder=False,
                               ir_features_path="/w/ir.pth", mixed_precision="bf16", mode="low-memory",
                               extra_args="--pretrained_vae_model_name_or_path 'my vae'")
    command = commands.build_command("py", "s.py", "siso-lab", "/t/subject.png", params, "/out/w", "/out/o")
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
    from siso_lib.cli.generate import build_parser

    params = SISOParams(ir_features_path="/w/ir.pth", early_stopping_threshold_percentage=3.0)
    command = commands.build_command("py", "s.py", "siso-lab", "/t/s.png", params, "/w", "/o")
    args = build_parser().parse_args(command[3:])
    assert args.subject_image_path == "/t/s.png" and args.weights_output_dir == "/w" and args.output_dir == "/o"
    assert args.num_train_epochs == 50 and args.learning_rate == 2e-4 and args.rank == 4 and args.train_text_encoder
    assert args.quiet and args.mode == SISOParams().mode
    upstream_command = commands.build_command("py", "s.py", "upstream", "/t/s.png", params, "/w", "/o")
    build_parser().parse_args(upstream_command[3:])  # the upstream list is a subset too


def test_script_flavour(tmp_path):
    assert upstream.script_flavour(pack.LAUNCHER) == "siso-lab"
    assert upstream.script_flavour(fake("fake_upstream")) == "upstream"
    assert upstream.script_flavour(tmp_path / "missing.py") == "upstream"


def test_progress_parsing():
    record = progress.parse_line('SISO_PROGRESS {"step": 3, "total": 50, "loss": -1.5}')
    assert record == ("SISO_PROGRESS", {"step": 3, "total": 50, "loss": -1.5})
    assert progress.parse_line("SISO_PROGRESS {not json") is None
    assert progress.parse_line("siso: hello") is None
    assert progress.parse_line('SISO_RESULT {"status": "success"}') == ("SISO_RESULT", {"status": "success"})
    assert upstream.parse_tqdm("Steps:  12%|##   | 6/50 [00:03<00:20,  2.1it/s]") == {"step": 6, "total": 50}
    assert upstream.parse_tqdm("loading 3 files") is None
    assert progress.format_progress({"step": 1, "total": 2}) == "step 1/2"


def test_diagnose_fallbacks():
    assert diagnosis.diagnose(-9, []).startswith("the SISO process was killed by SIGKILL (out of system RAM?")
    assert diagnosis.diagnose(143, ["siso: interrupted"]) .startswith("the SISO process was interrupted")
    assert diagnosis.diagnose(5, []) == "the script exited with code 5 and printed no error"
    assert diagnosis.diagnose(5, ["something odd"]) == "exit code 5: something odd"
    assert diagnosis.diagnose(2, ["usage: x", "x: error: unrecognized arguments: --mode default"]).startswith(
        "the script rejected arguments (unrecognized arguments: --mode default)")
    assert diagnosis.diagnose(1, [], {"stop_reason": "non_finite_loss", "error": "nan at step 4"}).startswith(
        "the loss became NaN/infinite (nan at step 4)")
    assert "--no-cuda_graphs in extra_args" in diagnosis.diagnose(1, [], {"stop_reason": "cuda_graph_mismatch"})
    assert diagnosis.diagnose(1, ["RuntimeError: MPS backend out of memory (MPS allocated: 9 GB)"]).startswith("out of GPU memory")


def test_image_is_read_channels_last_and_batch_uses_the_first(tmp_path, image):
    batch = np.concatenate([image, 1.0 - image], axis=0)
    path = tmp_path / "s.png"
    notes = images.image_to_png(batch, str(path))
    assert notes == ["subject_image is a batch of 2: SISO uses its first image only"]
    with Image.open(path) as picture:
        assert picture.mode == "RGB" and picture.size == (56, 40)  # width x height from [B, H, W, C]
        pixels = np.asarray(picture).astype(np.float32) / 255.0
    np.testing.assert_allclose(pixels, image[0], atol=1 / 255)


def test_image_accepts_torch_tensors_and_alpha(tmp_path, image):
    import torch

    rgba = np.concatenate([image, np.full(image.shape[:3] + (1,), 0.5, np.float32)], axis=-1)
    notes = images.image_to_png(torch.from_numpy(rgba), str(tmp_path / "a.png"))
    assert "alpha channel" in notes[0]
    images.image_to_png(torch.from_numpy(image[0]), str(tmp_path / "b.png"))  # [H, W, C] without batch
    loaded = images.load_image_tensor(str(tmp_path / "b.png"))
    assert tuple(loaded.shape) == (1, 40, 56, 3) and loaded.dtype == torch.float32
    np.testing.assert_allclose(loaded[0].numpy(), image[0], atol=1 / 255)


def test_run_folders_are_unique_and_never_reused(tmp_path):
    now = dt.datetime(2025, 1, 2, 3, 4, 5)
    loras, runs = tmp_path / "loras", tmp_path / "runs"
    first = folders.choose_folders(str(loras), str(runs), "", True, "a photo of a cat!", now)
    second = folders.choose_folders(str(loras), str(runs), "", True, "a photo of a cat!", now)
    assert first.created and first.run_dir == runs / "20250102-030405-a-photo-of-a-cat"
    assert first.lora_dir == loras / "siso" / "20250102-030405-a-photo-of-a-cat"
    assert second.run_dir == runs / "20250102-030405-a-photo-of-a-cat-1"
    assert second.lora_dir == loras / "siso" / "20250102-030405-a-photo-of-a-cat-1"
    assert first.run_dir.is_dir() and not first.lora_dir.exists()  # the LoRA folder appears with a successful LoRA
    (loras / "siso" / "20250102-030405-cat").mkdir(parents=True)  # a name taken in the loras folder is skipped too
    third = folders.choose_folders(str(loras), str(runs), "", True, "cat", now)
    assert third.run_dir.name == third.lora_dir.name == "20250102-030405-cat-1"
    relative = folders.choose_folders(str(loras), str(runs), "my_cats", True, "cat", now)
    assert relative.lora_dir.parent == loras / "my_cats" and relative.run_dir.parent == runs
    fixed = folders.choose_folders(str(loras), str(runs), "fixed", False, "cat", now)
    assert (fixed.lora_dir, fixed.run_dir) == (loras / "fixed", runs / "fixed")
    absolute = folders.choose_folders(str(loras), str(runs), str(tmp_path / "abs"), False, "cat", now)
    assert absolute.lora_dir == absolute.run_dir == tmp_path / "abs" and not absolute.split  # outside loras: together
    (absolute.run_dir / folders.KOHYA_NAME).write_bytes(b"x")
    with pytest.raises(messages.InputProblem, match="already holds a LoRA"):
        folders.choose_folders(str(loras), str(runs), str(tmp_path / "abs"), False, "cat", now)
    with pytest.raises(messages.InputProblem, match="is inside a LoRA folder"):
        folders.choose_folders(str(loras), str(loras / "runs"), "", True, "cat", now)


def test_a_fixed_folder_with_an_earlier_lora_is_refused(workdirs, image):
    folder = workdirs["loras"] / "fixed"
    folder.mkdir()
    (folder / folders.DIFFUSERS_NAME).write_bytes(b"old")
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), weights_output_dir="fixed", unique_subfolder=False))
    assert job.status.startswith("Failed: weights_output_dir") and "already holds a LoRA" in job.status
    assert (folder / folders.DIFFUSERS_NAME).read_bytes() == b"old"
    assert_clean(workdirs)


def test_parallel_jobs_do_not_share_folders(workdirs, image):
    results = []

    def go():
        results.append(jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=1))))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(job.ok for job in results)
    assert len({job.run_dir for job in results}) == 2
    assert_clean(workdirs)


# ----------------------------------------------------------------------------- what LoraLoader lists


def test_only_the_kohya_file_lands_where_load_lora_lists_files(workdirs, image):
    """ComfyUI's LoraLoader applies only the text encoders of a diffusers-format file: it must not be offered."""
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=1)))
    assert job.ok, job.status
    assert listed_loras(workdirs["loras"]) == [job.lora_name]
    assert job.lora_name.startswith("siso/") and job.lora_name.endswith("/" + folders.KOHYA_NAME)
    run_dir = workdirs["runs"] / job.lora_name.split("/")[1]
    assert job.run_dir == str(run_dir) and job.diffusers_path == str(run_dir / folders.DIFFUSERS_NAME)
    assert sorted(p.name for p in run_dir.iterdir()) == [folders.DIFFUSERS_NAME, "result.png", folders.SUBJECT_NAME]
    assert f"run folder (diffusers-format LoRA, result.png, loss_curve.png, run.json): {run_dir}" in job.report()


@pytest.mark.parametrize("script", ["fake_success", "fake_upstream"])
@pytest.mark.parametrize("weights_output_dir, unique", [("", True), ("my_cats", True), ("fixed", False)])
def test_no_diffusers_file_under_loras_for_any_folder_choice(workdirs, image, script, weights_output_dir, unique):
    params = dict(num_train_epochs=1, ir_features_path=__file__ if script == "fake_upstream" else "")
    job = jobs.run_job(request(workdirs, image, fake(script), params=params, weights_output_dir=weights_output_dir,
                                 unique_subfolder=unique))
    assert job.ok, job.status
    assert listed_loras(workdirs["loras"]) == [job.lora_name] and job.lora_name.endswith(folders.KOHYA_NAME)
    assert os.path.isfile(job.diffusers_path) and not job.diffusers_path.startswith(str(workdirs["loras"]))


def test_failed_or_cancelled_runs_add_nothing_to_the_load_lora_list(workdirs, image):
    job = jobs.run_job(request(workdirs, image, fake("fake_hang")), Recorder(cancel_after_steps=1).hooks())
    assert job.cancelled and listed_loras(workdirs["loras"]) == []
    assert any(f"best LoRA so far (not in the Load LoRA list; SISO Load LoRA takes its path): {workdirs['runs']}" in n
               for n in job.notes), job.notes


def test_an_absolute_folder_outside_loras_keeps_the_run_together(workdirs, image, tmp_path):
    folder = tmp_path / "elsewhere"
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=1),
                                 weights_output_dir=str(folder)))
    assert job.ok and listed_loras(workdirs["loras"]) == [] and job.lora_name == ""
    assert os.path.dirname(job.lora_path) == os.path.dirname(job.diffusers_path) == job.run_dir


def test_a_second_lora_folder_of_comfyui_counts_too(workdirs, image, tmp_path):
    """extra_model_paths.yaml can add LoRA folders: a folder inside one of them gets the Kohya file only."""
    extra = tmp_path / "extra-loras"
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), params=dict(num_train_epochs=1),
                                 weights_output_dir=str(extra / "mine"),
                                 loras_folders=[str(workdirs["loras"]), str(extra)]))
    assert job.ok, job.status
    assert listed_loras(extra) == [job.lora_name] and job.lora_name.startswith("mine/")
    assert job.diffusers_path.startswith(str(workdirs["runs"]))


# ----------------------------------------------------------------------------- messages


def test_a_long_error_is_shown_whole_not_cut_mid_word(workdirs, image):
    job = jobs.run_job(request(workdirs, image, fake("fake_long_error")))
    message = job.status.removeprefix("Failed: ")
    assert message.startswith("base model 'stabilityai/sdxl-turbo' could not be loaded (We couldn't connect")
    assert message.endswith("huggingface-cli download stabilityai/sdxl-turbo once with network access")
    assert len(message) > 600 and "\n" not in job.status
    assert job.report().splitlines()[0] == job.status


@pytest.mark.parametrize("length", [260, 2500, 9000])
def test_shortened_messages_end_at_a_word_boundary(length):
    words = [f"word{i:04d}" for i in range(length // 9 + 1)]
    text = " ".join(words)[:length].rsplit(" ", 1)[0]
    for limit in (80, 200, 2000):
        short = messages.one_line(text, limit)
        if len(text) <= limit:
            assert short == text
            continue
        assert short.endswith(" ...") and len(short) <= limit
        kept = short[: -len(" ...")]
        assert text.startswith(kept) and text[len(kept)] == " "  # cut between two words
    assert messages.one_line("x" * 300, 100) == "x" * 96 + " ..."  # one huge "word": cut, and the cut is marked


# ----------------------------------------------------------------------------- transparent subjects


def cut_out_rgba(path):
    """A cut-out subject: opaque disc, soft edge, fully transparent corners with black RGB (as editors save them)."""
    height, width = 48, 64
    yy, xx = np.mgrid[0:height, 0:width]
    distance = np.hypot(yy - height / 2, xx - width / 2)
    alpha = np.clip((20 - distance) * 60, 0, 255).astype(np.uint8)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[..., 1] = (xx * 3).astype(np.uint8)
    rgb[..., 2] = 40
    rgb[alpha == 0] = 0
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    return path


def comfy_load_image(path):
    """What ComfyUI's Load Image gives for a file: IMAGE = RGB with the alpha dropped, MASK = 1 - alpha."""
    with Image.open(path) as picture:
        image = np.asarray(picture.convert("RGB"), np.float32)[None] / 255.0
        if "A" in picture.getbands():
            mask = 1.0 - np.asarray(picture.getchannel("A"), np.float32)[None] / 255.0
        else:
            mask = np.zeros((1, 64, 64), np.float32)
    return image, mask


def test_a_cut_out_photo_gives_the_same_subject_as_the_command_line(tmp_path):
    from siso_lib.io.images import load_subject_image

    source = cut_out_rgba(tmp_path / "cut_out.png")
    cli = np.asarray(load_subject_image(source).image, np.int16)
    image, mask = comfy_load_image(source)
    notes = images.image_to_png(image, str(tmp_path / "node.png"), mask)
    with Image.open(tmp_path / "node.png") as picture:
        node = np.asarray(picture.convert("RGB"), np.int16)
    assert np.abs(node - cli).max() <= 1
    assert cli[0, 0].tolist() == [255, 255, 255]  # white where it was transparent
    assert any("transparency (from subject_mask) flattened onto white" in note for note in notes)
    images.image_to_png(image, str(tmp_path / "unmasked.png"))  # without the mask: the black the report saw
    with Image.open(tmp_path / "unmasked.png") as picture:
        assert np.asarray(picture)[0, 0].tolist() == [0, 0, 0]


def test_an_opaque_photo_with_load_images_empty_mask_is_unchanged(tmp_path, image):
    _, empty = comfy_load_image(Image.fromarray((image[0] * 255).astype(np.uint8)).save(tmp_path / "o.png") or tmp_path / "o.png")
    assert empty.shape == (1, 64, 64)  # Load Image's mask for a file without alpha: 64x64 zeros, any image size
    notes = images.image_to_png(image, str(tmp_path / "a.png"), empty)
    plain = images.image_to_png(image, str(tmp_path / "b.png"))
    assert notes == plain == []
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_the_mask_travels_to_the_subject_png_of_the_run(workdirs, image, tmp_path):
    source = cut_out_rgba(tmp_path / "cut_out.png")
    subject, mask = comfy_load_image(source)
    import torch

    job = jobs.run_job(request(workdirs, torch.from_numpy(subject), fake("fake_success"), mask=torch.from_numpy(mask),
                                 params=dict(num_train_epochs=1)))
    assert job.ok, job.status
    with Image.open(os.path.join(job.run_dir, folders.SUBJECT_NAME)) as picture:
        assert np.asarray(picture)[0, 0].tolist() == [255, 255, 255]
    assert "transparency (from subject_mask) flattened onto white" in job.report()


@pytest.mark.parametrize(
    "mask, expected",
    [
        (np.ones((1, 20, 30), np.float32), "Failed: subject_mask is 30x20 pixels but subject_image is 56x40"),
        (np.ones((1, 40, 56), np.float32), "Failed: subject_mask marks every pixel transparent"),
        (np.full((1, 40, 56), np.nan, np.float32), "Failed: subject_mask contains NaN"),
        (np.ones((1, 1, 40, 56), np.float32), "Failed: subject_mask has shape [1, 1, 40, 56]"),
    ],
)
def test_bad_masks_are_one_clear_line(workdirs, image, mask, expected):
    recorder = Recorder()
    job = jobs.run_job(request(workdirs, image, fake("fake_success"), mask=mask), recorder.hooks())
    assert job.status.startswith(expected), job.status
    assert recorder.started == [] and run_dirs(workdirs) == []
    assert_clean(workdirs)


# ----------------------------------------------------------------------------- a copied pack folder


def test_a_copied_pack_without_siso_lab_names_the_one_install_command(workdirs, image, tmp_path):
    """ComfyUI-Manager / the Registry COPY the pack: no checkout beside it, siso_lib not installed."""
    import shutil
    import subprocess

    copied = tmp_path / "ComfyUI" / "custom_nodes" / "siso-lab"
    shutil.copytree(pack.PACK_DIR, copied, ignore=shutil.ignore_patterns("__pycache__", pack.ENV_RECORD_NAME))
    bare = tmp_path / "bare-env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    python = str(bare / "bin" / "python")
    launched = subprocess.run([python, str(copied / "siso_generate.py"), "--help"], capture_output=True, text=True)
    assert launched.returncode == 2
    # a copied pack has no siso-lab of its own to install: the command asks for the source, and says what it may be
    assert launched.stderr.strip() == (
        f"error: siso-lab is not installed in {python} (No module named 'siso_lib'): run {python} {copied / 'install.py'} "
        "--source SISO_LAB_SOURCE (SISO_LAB_SOURCE: a siso-lab checkout folder, a siso_lab-*.whl wheel, an archive or a URL "
        "(siso-lab is not on the package index))"
    )
    # and the node's status names the command of the pack that is loaded (this checkout's: no --source needed)
    job = jobs.run_job(request(workdirs, image, str(copied / "siso_generate.py"), python_executable=python))
    assert job.status == (f"Failed: siso-lab is not installed in the Python that runs SISO ({python}): "
                          f"run {python} {pack.INSTALLER}")


# ----------------------------------------------------------------------------- FLUX


@pytest.mark.parametrize("weights_output_dir, unique", [("", True), ("my_cats", True), ("fixed", False)])
def test_a_flux_lora_lands_under_loras_as_its_diffusers_file(workdirs, image, model_folders, weights_output_dir, unique):
    """FLUX: no Kohya file; the diffusers-format LoRA (ComfyUI maps its keys) is what LoraLoader lists."""
    job = jobs.run_job(request(workdirs, image, fake("fake_flux"), weights_output_dir=weights_output_dir, unique_subfolder=unique,
                                 params=dict(base_model_path=model_folders["flux"], num_train_epochs=2)))
    assert job.ok, job.status
    assert job.family == "flux" and job.kohya_path == ""
    assert listed_loras(workdirs["loras"]) == [job.lora_name] and job.lora_name.endswith("/" + folders.DIFFUSERS_NAME)
    assert job.lora_path.startswith(str(workdirs["loras"])) and not job.diffusers_path.startswith(str(workdirs["loras"]))
    assert os.path.samefile(job.lora_path, job.diffusers_path) or open(job.lora_path, "rb").read() == open(job.diffusers_path, "rb").read()
    assert sorted(p.name for p in Path(job.run_dir).iterdir()) == [folders.DIFFUSERS_NAME, "result.png", folders.SUBJECT_NAME]
    assert not [n for n in job.notes if "Kohya" in n]
    assert "model family: FLUX.1 (diffusers-format LoRA, which ComfyUI's LoraLoader reads as it is; no Kohya file)" in job.report()
    assert_clean(workdirs)


def test_a_flux_run_outside_loras_keeps_its_file_in_the_run_folder(workdirs, image, model_folders, tmp_path):
    job = jobs.run_job(request(workdirs, image, fake("fake_flux"), weights_output_dir=str(tmp_path / "elsewhere"),
                                 params=dict(base_model_path=model_folders["flux"], num_train_epochs=1)))
    assert job.ok and listed_loras(workdirs["loras"]) == [] and job.lora_name == ""
    assert job.lora_path == job.diffusers_path == str(Path(job.run_dir) / folders.DIFFUSERS_NAME)


def test_a_cancelled_flux_run_adds_nothing_to_the_load_lora_list(workdirs, image, model_folders):
    job = jobs.run_job(request(workdirs, image, fake("fake_hang"), params=dict(base_model_path=model_folders["flux"])),
                         Recorder(cancel_after_steps=1).hooks())
    assert job.cancelled and job.lora_path == "" and listed_loras(workdirs["loras"]) == []


def test_the_copy_never_replaces_a_file(tmp_path):
    source = tmp_path / "a.safetensors"
    source.write_bytes(b"lora")
    target = folders.place_copy(str(source), tmp_path / "loras")
    assert Path(target).read_bytes() == b"lora" and source.is_file()
    with pytest.raises(FileExistsError):
        folders.place_copy(str(source), tmp_path / "loras")


def test_family_resolution(model_folders):
    assert checks.resolve_family("auto", model_folders["flux"]) == "flux"
    assert checks.resolve_family("auto", "black-forest-labs/FLUX.1-schnell") == "flux"
    assert checks.resolve_family("auto", "stabilityai/sdxl-turbo") == "sdxl"
    assert checks.resolve_family("flux", "someone/custom-name") == "flux"  # an explicit family for a hub id it cannot read
    with pytest.raises(messages.InputProblem, match="is an SDXL model but model_family is flux: give a FLUX.1 model, or model_family auto"):
        checks.resolve_family("flux", model_folders["sdxl"])
    with pytest.raises(messages.InputProblem, match="model_family sana is not offered in ComfyUI"):
        checks.resolve_family("sana", model_folders["sana"])
    with pytest.raises(messages.InputProblem, match="Sana is not offered in ComfyUI"):
        checks.resolve_family("auto", "Efficient-Large-Model/Sana_1600M_512px_diffusers")


def test_recipe_fields_are_filled_from_the_familys_recipe():
    from siso_lib.config import FAMILY_RECIPES

    for family in ("sdxl", "flux"):
        params = with_recipe(SISOParams(), family)
        assert params.model_family == family
        for name in RECIPE_PARAMS:
            assert getattr(params, name) == FAMILY_RECIPES[family][name], (family, name)
        assert set(params.from_recipe) == set(RECIPE_PARAMS)
    kept = with_recipe(SISOParams(learning_rate=5e-4), "flux")
    assert kept.learning_rate == 5e-4 and "learning_rate" not in kept.from_recipe


def test_the_command_names_the_family_for_siso_lab_only():
    from siso_lib.cli.generate import build_parser

    params = with_recipe(SISOParams(base_model_path="/m/flux"), "flux")
    command = commands.build_command("py", "s.py", "siso-lab", "/t/s.png", params, "/w", "/o")
    args = build_parser().parse_args(command[3:])
    assert args.model_family == "flux" and args.pretrained_model_name_or_path == "/m/flux"
    assert args.learning_rate == params.learning_rate and args.train_text_encoder is True
    upstream_command = commands.build_command("py", "s.py", "upstream", "/t/s.png", params, "/w", "/o")
    assert "--model_family" not in upstream_command  # the authors' scripts are one per family


def test_the_authors_script_on_a_flux_folder_gets_no_kohya_copy(workdirs, image, model_folders, tmp_path, monkeypatch):
    argv_file = tmp_path / "argv.json"
    monkeypatch.setenv("FAKE_ARGV_FILE", str(argv_file))
    job = jobs.run_job(request(workdirs, image, fake("fake_upstream"),
                                 params=dict(base_model_path=model_folders["flux"], num_train_epochs=2, ir_features_path=__file__)))
    assert job.ok, job.status
    assert "--model_family" not in json.loads(argv_file.read_text())
    assert job.lora_path.endswith(folders.DIFFUSERS_NAME) and job.kohya_path == ""
    assert not any("converted the diffusers LoRA" in note for note in job.notes)
