"""ComfyUI SIGKILLed in the middle of a SISO run, in a REAL ComfyUI (skipped like test_comfyui_real.py,
whose settings and helpers it uses: SISO_COMFYUI_DIR, SISO_COMFYUI_PYTHON).

The ComfyUI here is one of its own, since the test kills it. The SISO process runs in a session
of its own, so it survives the kill; it must notice that its parent (and the pipes ComfyUI read)
are gone, finish its iteration, write the best LoRA and run.json ("interrupted", with the
reason) and exit by itself.
"""

from __future__ import annotations

import json
import os
import time

import comfy_server
from siso_comfy_helpers import REPO
from test_comfyui_real import COMFY_DIR, COMFY_PYTHON, generation, pytestmark  # noqa: F401 (pytestmark: the same skips)


def test_killing_comfyui_mid_run_keeps_the_best_lora(tiny_assets, tmp_path_factory):
    """ComfyUI SIGKILLed while SISO runs: the SISO process finishes its iteration, writes the best LoRA and run.json
    (interrupted, why) and exits by itself (a ComfyUI of its own: this test kills it)."""
    base = tmp_path_factory.mktemp("comfy-killed")
    instance = comfy_server.start(COMFY_DIR, COMFY_PYTHON, base)
    marker = f"killed-{os.getpid()}-{time.time_ns()}"
    try:
        comfy_server.copy_input(instance, str(REPO / "data" / "cat.png"), "cat.png")
        declared = instance.get("/object_info/SISOLoRAGenerator")["SISOLoRAGenerator"]["input"]["required"]
        steps = declared["num_train_epochs"][1]["max"]
        prompt = generation(tiny_assets, prompt=f"a photo of a cat {marker}", num_train_epochs=steps,
                            early_stopping_max_count=declared["early_stopping_max_count"][1]["max"],
                            early_stopping_threshold_percentage=0.0)
        instance.queue(prompt)
        instance.wait_for_log(f"[SISO] step 2/{steps}", timeout=300)
        children = comfy_server.processes_with(marker)
        assert children, "the SISO child should be running"
        killed = time.monotonic()
        os.killpg(instance.process.pid, 9)  # ComfyUI dies at once; the SISO process is in a session of its own
        instance.process.wait(timeout=30)
        while comfy_server.processes_with(marker):
            assert time.monotonic() - killed < 120, "the SISO process outlived ComfyUI by 2 minutes"
            time.sleep(0.2)
        seconds = time.monotonic() - killed
    finally:
        instance.stop()
        for pid in comfy_server.processes_with(marker):
            os.kill(pid, 9)
    run_dir = next((base / "output" / "siso").iterdir())
    record = json.loads((run_dir / "run.json").read_text())
    print(f"\nComfyUI killed: the SISO process ended {seconds:.1f} s later after {record['steps_run']} iterations "
          f"({record['interrupted_by']})")
    assert record["status"] == "interrupted" and "parent process" in record["interrupted_by"]
    assert record["steps_run"] >= 2 and (run_dir / "pytorch_lora_weights.safetensors").is_file()
    assert (run_dir / "siso_lora_kohya.safetensors").is_file() and (run_dir / "result.png").is_file()
