"""A SISO child whose parent (ComfyUI) dies, or whose output pipe closes, keeps its run.

Each test starts a stand-in parent process that runs the pack's launcher (siso_generate.py /
siso_edit.py) as the node does: its own session, pipes for stdout and stderr, SISO_PARENT_PID set
to the parent. Once the child reports an iteration, the parent is SIGKILLed (or closes the pipes
and keeps living). The child must finish its iteration, write the best LoRA and run.json
("interrupted", with the reason) and exit by itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from siso_comfy_helpers import REPO, alive

pytestmark = pytest.mark.slow  # real siso-generate / siso-edit child processes on the tiny models

PACK = REPO / "comfyui"
# the stand-in for ComfyUI: starts the child like comfyui/siso/child.py, relays what it needs, then waits
PARENT = textwrap.dedent("""
    import os, subprocess, sys, time
    command, mode = sys.argv[2:], sys.argv[1]
    env = dict(os.environ, SISO_PARENT_PID=str(os.getpid()), PYTHONUNBUFFERED="1")
    child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env, start_new_session=True)
    print("CHILD", child.pid, flush=True)
    for line in child.stdout:
        if line.startswith(b"SISO_PROGRESS "):
            print("STEP", flush=True)
            break
    if mode == "close":  # stop reading: the child's next print meets a closed pipe
        child.stdout.close()
        child.stderr.close()
        print("CLOSED", flush=True)
    time.sleep(3600)  # until killed (mode "kill") or until the test ends it (mode "close")
""")


def start_parent(tmp_path: Path, mode: str, command: list[str]) -> tuple[subprocess.Popen, int]:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), mode, *command], stdout=subprocess.PIPE, text=True,
                              start_new_session=True, cwd=REPO)
    first = parent.stdout.readline().split()
    assert first and first[0] == "CHILD", first
    child = int(first[1])
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        line = parent.stdout.readline()
        assert line, "the stand-in parent ended before the child reported an iteration"
        if line.strip() == "STEP":
            return parent, child
    raise TimeoutError("the child reported no iteration")


def wait_gone(pid: int, timeout: float) -> float:
    started = time.monotonic()
    while alive(pid):
        assert time.monotonic() - started < timeout, f"the SISO child {pid} is still running {timeout} s after"
        time.sleep(0.1)
    return time.monotonic() - started


def long_generation(assets, subject, out) -> list[str]:
    """siso-generate through the pack's launcher, far longer than the test (it only ends by the parent's going)."""
    return [sys.executable, str(PACK / "siso_generate.py"), "--subject_image_path", subject, "--prompt", "a photo of a cat",
            "--pretrained_model_name_or_path", assets["sdxl"], "--dino_model_name", assets["dino"],
            "--ir_features_path", assets["ir"], "--resolution", "64", "--num_train_epochs", "100000",
            "--early_stopping_threshold_percentage", "0", "--early_stopping_max_count", "100000", "--device", "cpu",
            "--output_dir", str(out)]


def check_kept(out: Path, reason: str) -> dict:
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "interrupted" and record["stop_reason"] == "interrupted", record["status"]
    assert reason in record["interrupted_by"], record["interrupted_by"]
    assert 1 <= record["steps_run"] < 100000 and record["best_step"] >= 1
    assert load_file(out / "pytorch_lora_weights.safetensors")  # complete: it loads
    return record


@pytest.mark.parametrize("mode", ["kill", "close"], ids=["parent-killed", "pipe-closed"])
def test_generate_keeps_its_run_when_the_parent_or_pipe_goes(tiny_assets, subject_path, tmp_path, mode):
    out = tmp_path / "run"
    parent, child = start_parent(tmp_path, mode, long_generation(tiny_assets, subject_path, out))
    try:
        if mode == "kill":
            os.kill(parent.pid, signal.SIGKILL)  # ComfyUI killed: nobody reads the child's pipes any more
            parent.wait(timeout=30)
        else:
            assert parent.stdout.readline().strip() == "CLOSED"
        seconds = wait_gone(child, timeout=120)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
        parent.kill()
        parent.wait()
    record = check_kept(out, "parent process" if mode == "kill" else "pipe was closed")
    print(f"\n{mode}: the child ended {seconds:.1f} s later after {record['steps_run']} iterations: {record['interrupted_by']}")
    assert (out / "siso_lora_kohya.safetensors").is_file() and (out / "result.png").is_file()


def test_edit_keeps_its_run_when_the_parent_is_killed(tiny_assets, subject_path, tmp_path):
    from PIL import Image

    scene = tmp_path / "scene.png"
    Image.open(REPO / "data" / "coffee.png").convert("RGB").resize((96, 64)).save(scene)
    mask = tmp_path / "mask.png"
    picture = Image.new("L", (96, 64), 0)
    picture.paste(255, (30, 10, 70, 50))
    picture.save(mask)
    out = tmp_path / "edit"
    command = [sys.executable, str(PACK / "siso_edit.py"), "--input_image_path", str(scene), "--subject_image_path",
               subject_path, "--subject_class", "cat", "--mask", str(mask), "--pretrained_model_name_or_path",
               tiny_assets["sdxl"], "--dino_model_name", tiny_assets["dino"], "--ir_features_path", tiny_assets["ir"],
               "--resolution", "64", "--num_train_epochs", "100000", "--early_stopping_threshold_percentage", "0",
               "--early_stopping_max_count", "100000", "--device", "cpu", "--output_dir", str(out)]
    parent, child = start_parent(tmp_path, "kill", command)
    try:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        wait_gone(child, timeout=120)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
    record = check_kept(out, "parent process")
    assert record["task"] == "edit" and (out / "result.png").is_file() and (out / "before_after.png").is_file()
