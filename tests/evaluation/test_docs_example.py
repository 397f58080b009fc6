"""docs/evaluation.md's offline Python example runs as pasted, from a folder that holds the tiny
models at outputs/test-assets (as a clone does after siso-demo or siso-make-test-assets), with
HF_HUB_OFFLINE=1: it needs no download."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def offline_example() -> str:
    text = (REPO / "docs" / "evaluation.md").read_text(encoding="utf-8")
    return next(block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "offline_config" in block)


def test_the_offline_python_example_runs_as_pasted(tiny_assets, tmp_path, monkeypatch, capsys):
    (tmp_path / "outputs").mkdir()
    (tmp_path / "outputs" / "test-assets").symlink_to(Path(tiny_assets["sdxl"]).parent)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SISO_OUTPUT_ROOT", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    exec(compile(offline_example(), "docs/evaluation.md", "exec"), {})
    said = capsys.readouterr().out
    assert said.startswith("True {'dino': ") and "paper_diversity_mse" in said
    assert len(list((tmp_path / "outputs" / "runs").glob("*/eval/metrics.json"))) == 1
