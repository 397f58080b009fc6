"""The benchmark command runs in its CI-sized form (tiny models, CPU) and writes its tables."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
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


def load_bench():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_step", REPO / "benchmarks" / "bench_step.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_flux_and_sana_benchmark_paths_run_on_tiny_models_and_print_their_figures(tmp_path):
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_step.py", "--device", "cpu", "--size", "tiny", "--steps", "1", "--warmup", "1",
         "--threads", "1", "--model_family", "flux,sana", "--modes", "default", "--denoising", "flux=4/1,sana=2/1",
         "--out", str(tmp_path), "--tag", "ci-families"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    print(proc.stdout)  # the figures, for whoever runs this with -s
    report = json.loads((tmp_path / "ci-families.json").read_text())
    assert report["complete"] and report["model_families"] == ["flux", "sana"]
    assert report["machine"]["torch_threads"] == 1 and report["machine"]["usable_cpus"] >= 1
    rows = {row["model_family"]: row for row in report["cases"]}
    assert (rows["flux"]["num_inference_steps"], rows["flux"]["num_grad_steps"], rows["flux"]["text_encoder_lora"]) == (4, 1, True)
    assert (rows["sana"]["num_inference_steps"], rows["sana"]["num_grad_steps"], rows["sana"]["text_encoder_lora"]) == (2, 1, False)
    for row in rows.values():
        assert row["median_s_per_it"] > 0 and row["peak_rss_gib"] > 0 and row["peak_gpu_gib"] is None
        assert row["lora_parameters"] > 0 and row["weights_dtype"] == "fp32" and "error" not in row
    # SDXL's CUDA graphs are not offered to the other families
    assert "SDXL only" in rows["flux"]["cuda_graphs_note"]
    assert "| flux | default | on | 4 (grad last 1) |" in proc.stdout
    assert "| sana | default | off | 2 (grad last 1) |" in proc.stdout
    assert "median s/it" in (tmp_path / "ci-families.md").read_text()


def test_case_lists_per_family():
    bench = load_bench()
    cases = bench.cases_for(["sdxl", "flux", "sana"], list(bench.MODES), "default", None)
    described = [(c["family"], c["mode"], c["text_encoder"], bench.steps_of(c["family"], c["denoising"])) for c in cases]
    # SDXL: the original 8 cases in their order; no default-eager for the others (CUDA graphs are SDXL's)
    assert [d[1:3] for d in described if d[0] == "sdxl"] == list(bench.SDXL_ORDER)
    flux = [d for d in described if d[0] == "flux"]
    assert len(flux) == 9 and flux[0] == ("flux", "default", "on", (1, 0))
    assert {d[3] for d in flux} == {(1, 0), (4, 0), (4, 1)} and {d[1] for d in flux} == {"default", "low-memory", "reference"}
    assert [d for d in described if d[0] == "sana"] == [("sana", m, "off", (20, 3)) for m in ("default", "low-memory", "reference")]
    # Sana has no text-encoder LoRA: asking for one gives no Sana case
    assert not bench.cases_for(["sana"], ["default"], "on", None)
    assert bench.denoising_for("flux=4/all,2/1", "sana") == ["2/1"]
    assert bench.denoising_for("flux=4/all", "sana") == ["recipe"]
    # full-size FLUX runs in bf16 in every mode (the authors' --mixed_precision bf16); the others keep the mode's
    assert bench.precision_for("auto", "flux", "full") == "bf16" and bench.precision_for("auto", "flux", "tiny") == "auto"
    assert bench.precision_for("auto", "sana", "full") == "auto" and bench.precision_for("fp32", "flux", "full") == "fp32"
    for bad in ("0/0", "2/3", "x/1", "sdxxl=1/1"):
        with pytest.raises(ValueError):
            bench.denoising_for(bad, "flux")


def test_committed_results_still_render():
    bench = load_bench()
    results = sorted((REPO / "benchmarks" / "results").glob("*.json"))
    assert results
    for path in results:
        report = json.loads(path.read_text())
        table = bench.markdown_table(report["cases"])
        assert table.count("\n") == len(report["cases"]) + 1, path.name
        for case in report["cases"]:
            assert f"| {case['mode']} |" in table, path.name


@pytest.mark.slow
def test_gpu_run_script_parses_and_keeps_the_sdxl_job_first():
    subprocess.run(["bash", "-n", str(REPO / "benchmarks" / "gpu_run.sh")], check=True)
    script = (REPO / "benchmarks" / "gpu_run.sh").read_text()
    order = [script.index(marker) for marker in ("tests/test_cuda_graphs.py", "--tag gpu-smoke", "--model_family flux", "--model_family sana")]
    assert order == sorted(order)


def test_an_out_of_memory_case_is_recorded_not_raised(monkeypatch):
    import argparse

    import torch

    from siso_lib.optimizer import SISOOptimizer

    bench = load_bench()

    def out_of_memory(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(SISOOptimizer, "step", out_of_memory)
    args = argparse.Namespace(model_family="flux", device="cpu", denoising="1/all", resolution=64, warmup=1, steps=1,
                              mode="low-memory", text_encoder="on", precision="auto", compile=False, weights_dtype="auto",
                              size="tiny")
    row = bench.worker(args)
    assert row["error"] == "out of memory during iteration 1" and row["step_seconds"] == []
    assert row["model_family"] == "flux" and row["settings"]["gradient_checkpointing"]
    table = bench.markdown_table([row])
    assert "| flux | low-memory | on | 1 (grad all) | failed: out of memory during iteration 1" in table
