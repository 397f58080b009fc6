import pytest
"""The public API: exported from `siso_lib`, imported lazily, and the README's example runs."""

import re
import subprocess
import sys
from pathlib import Path

import siso_lib

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_entry_points_are_exported_without_importing_torch():
    """The field report: siso_lib exported only SISOConfig. Every public name resolves, and a bare
    `import siso_lib` (what the command lines do first) imports no heavy library."""
    expected = {"SISOConfig", "SISOOptimizer", "SISOResult", "StepEvent", "SubjectSimilarityLoss", "DinoFeatures",
                "IRFeatures", "load_sdxl_pipeline", "load_subject_image", "run_siso", "RunOutcome",
                "load_pipeline_with_lora", "render", "image_grid", "save_lora_files", "read_metadata", "SISOInputError"}
    assert expected <= set(siso_lib.__all__)
    for name in siso_lib.__all__:
        assert getattr(siso_lib, name) is not None, name
    code = "import sys, siso_lib; siso_lib.SISOConfig(); print(sorted(m for m in ('torch', 'diffusers', 'timm') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def readme_python_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start: Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tiny_assets, tmp_path, monkeypatch, capsys):
    """README "Quick start: Python", run as written from an empty folder, but for the number of
    iterations and the tiny models already written for this session."""
    code = readme_python_example()
    assert len(code.strip().splitlines()) <= 20
    assert "config = offline_config()" in code, "the example runs offline as pasted"
    code = code.replace("config = offline_config()", "config = offline_config(assets, num_train_epochs=3)")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SISO_OUTPUT_ROOT", raising=False)
    exec(compile(code, "README.md", "exec"), {"assets": tiny_assets})
    printed = capsys.readouterr().out
    assert "iteration 1" in printed and "iteration 3" in printed
    assert list((tmp_path / "outputs" / "runs").glob("*-cat/pytorch_lora_weights.safetensors"))
    # the grid goes into the run's folder, not the current one (in a clone it showed up untracked)
    assert list((tmp_path / "outputs" / "runs").glob("*-cat/grid.png")) and not (tmp_path / "grid.png").exists()
