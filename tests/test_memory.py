"""The memory model (memory.py) against what was measured on a GPU, and the plan `--mode auto` follows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from siso_lib import memory
from siso_lib.config import SISOConfig

ROOT = Path(__file__).resolve().parents[1]
MEASURED = ROOT / "benchmarks" / "results" / "gpu-NVIDIA_H200.json"  # SDXL-Turbo, 512 px, torch.cuda.max_memory_allocated


def measured_sdxl_cases() -> list[dict]:
    return json.loads(MEASURED.read_text())["cases"]


def test_the_table_holds_every_family_mode_and_size():
    cases = memory.read_table()
    for family in ("sdxl", "flux", "sana", "flux2_klein"):
        for mode in ("default", "low-memory", "reference"):
            for size in (512, 1024):
                assert f"{family}/generate/{mode}/te-off/{size}" in cases
    assert "sdxl/edit/default/te-off/512" in cases


@pytest.mark.parametrize("case", measured_sdxl_cases(), ids=lambda c: f"{c['mode']}-te-{'on' if c['text_encoder_lora'] else 'off'}")
def test_the_model_reproduces_each_measured_sdxl_peak_within_10_percent(case):
    """Probed as the benchmark built the models (flow "bench": pipeline on the GPU, feature
    networks there in fp32 first, a setup spike a command's run does not have)."""
    predicted = memory.predict("sdxl", case["mode"], case["resolution"], case["text_encoder_lora"], flow="bench").peak_bytes / memory.GIB
    error = predicted / case["peak_gpu_gib"] - 1
    print(f"sdxl {case['mode']} te-{case['text_encoder_lora']}: predicted {predicted:.2f} GiB, measured {case['peak_gpu_gib']:.2f} GiB "
          f"({error:+.1%})")
    assert abs(error) < 0.10


def test_quantized_weights_lower_the_prediction_by_the_weights_alone():
    row = memory.read_table()["flux/generate/default/te-off/512"]
    plain = memory.predict("flux", "default", 512)
    int8 = memory.predict("flux", "default", 512, quantize="int8")
    linear = row["denoiser_linear"]
    saved = linear["weight_bytes"] - linear["weights"] - 5 * linear["out_features"]
    assert plain.peak_bytes - int8.peak_bytes == pytest.approx(saved, abs=1)
    assert saved > 10 * memory.GIB  # FLUX.1's 12 B transformer: about 11 GiB saved


def test_resolution_rank_and_grad_steps_scale_the_prediction():
    base = memory.predict("sdxl", "default", 512)
    assert memory.predict("sdxl", "default", 1024).peak_bytes > base.peak_bytes
    assert memory.predict("sdxl", "default", 768).peak_bytes < memory.predict("sdxl", "default", 1024).peak_bytes
    assert memory.predict("sdxl", "default", 512, rank=16).peak_bytes > base.peak_bytes
    # gradients through more denoising steps keep more activations; SDXL-Turbo has 1 step: 2 means all, i.e. 1
    assert memory.predict("sdxl", "default", 512, num_grad_steps=2).peak_bytes == base.peak_bytes
    sana = memory.predict("sana", "default", 512)  # recipe: 20 steps, gradients through the last 3
    assert memory.predict("sana", "default", 512, num_grad_steps=6).peak_bytes > sana.peak_bytes


def test_auto_takes_the_fastest_mode_that_fits_and_quantizes_only_when_nothing_else_does():
    flux = {(p.mode, p.quantize): p for p in memory.plan("flux", 512).predictions}
    roomy = memory.plan("flux", 512, free_bytes=200 * memory.GIB)
    assert (roomy.choice.mode, roomy.choice.quantize) == ("default", "none")
    just_low = flux[("low-memory", "none")].needed_bytes
    assert just_low < flux[("default", "none")].needed_bytes
    tight = memory.plan("flux", 512, free_bytes=just_low)
    assert (tight.choice.mode, tight.choice.quantize) == ("low-memory", "none")
    card = memory.plan("flux", 512, free_bytes=24 * memory.GIB)  # a 24 GB card: FLUX only with int8 weights
    assert card.choice is not None and card.choice.quantize == "int8"
    assert memory.plan("flux", 512, free_bytes=4 * memory.GIB).choice is None


def test_auto_on_a_cpu_keeps_the_default_mode():
    import torch

    from siso_lib.runtime import RuntimeSettings

    settings = RuntimeSettings.resolve(SISOConfig(), torch.device("cpu"))
    assert SISOConfig().mode == "auto" and (settings.mode, settings.quantize) == ("default", "none")
    assert settings.describe()["mode"] == "default"


@pytest.mark.slow
def test_plan_prints_every_mode_without_torch_and_fast():
    """`siso-generate --plan` loads no model and imports no torch (it answers in under 2 s)."""
    code = ("import sys; from siso_lib.cli.generate import main; rc = main(['--plan', '--model_family', 'flux', "
            "'--gpu_memory_gib', '24']); assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert out.returncode == 0, out.stderr
    for label in ("default", "low-memory", "default + int8 weights", "reference"):
        assert f"  {label} " in out.stdout
    assert "--mode auto would run: " in out.stdout


def test_reference_mode_takes_no_quantized_weights():
    from siso_lib.errors import SISOInputError

    with pytest.raises(SISOInputError, match="reference mode is the authors' fp32 setup"):
        SISOConfig(mode="reference", quantize="int8").validate()
    SISOConfig(mode="reference", quantize="auto").validate()  # auto: none in reference mode


def test_the_readme_and_docs_tables_are_the_models_predictions():
    """The tables are generated (`python -m siso_lib.offline.memory_probe --write-docs`); they must
    not drift from the shipped table."""
    from siso_lib.offline.memory_probe import DOCS_WITH_TABLES, doc_blocks, fill_blocks

    blocks = doc_blocks()
    for name in DOCS_WITH_TABLES:
        text = (ROOT / name).read_text()
        assert "<!-- memory-table:512 -->" in text
        assert fill_blocks(text, blocks) == text, f"{name}: run python -m siso_lib.offline.memory_probe --write-docs"


def test_the_plan_says_what_would_help_only_where_it_would():
    """The fresh-user trial: Sana (its 512 px model renders at 512 whatever the size) was told a
    smaller resolution helps; with --quantize none the quantized options that fit went unmentioned."""
    sana = memory.format_plan(memory.plan("sana", 256, free_bytes=8 * memory.GIB), "sana", 256, "8 GiB")
    assert "nothing allowed is predicted to fit" in sana and "resolution" not in sana.splitlines()[-1]
    flux = memory.plan("flux", 512, free_bytes=24 * memory.GIB, quantize="none")
    assert (flux.auto.mode, flux.auto.quantize) == ("low-memory", "none") and flux.choice is None
    assert "--quantize auto or int8" in memory.format_plan(flux, "flux", 512, "24 GiB")
    big = memory.format_plan(memory.plan("flux2_klein", 2048, free_bytes=24 * memory.GIB), "flux2_klein", 2048, "24 GiB")
    assert "extrapolated" in big and "a smaller --resolution would help" in big
