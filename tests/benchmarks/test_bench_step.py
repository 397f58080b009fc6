"""The benchmark command runs in its CI-sized form (tiny models, CPU) and writes its tables."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_cpu_benchmark_writes_json_and_markdown(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_step.py", "--device", "cpu", "--size", "tiny", "--steps", "1", "--warmup", "1",
         "--modes", "reference,default,default-eager", "--text-encoder", "on", "--out", str(tmp_path), "--tag", "ci"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "ci.json").read_text())
    assert [(c["mode"], c["text_encoder_lora"]) for c in report["cases"]] == [
        ("default", True), ("reference", True), ("default-eager", True)
    ]
    assert "CUDA device" in report["cases"][0]["cuda_graphs_note"]  # asked for, not possible on a CPU
    assert report["cases"][2]["cuda_graphs_note"] is None  # not asked for
    for case in report["cases"]:
        assert case["median_s_per_it"] > 0 and case["peak_rss_gib"] > 0 and case["peak_gpu_gib"] is None
    table = (tmp_path / "ci.md").read_text()
    assert "| default | on |" in table and "1.00x" in table
    assert "median s/it" in proc.stdout
