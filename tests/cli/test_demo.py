import pytest
"""`make demo`'s command (siso-demo) finishes and writes every artefact."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_demo_command_writes_every_artefact(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "siso_lib.cli.demo", "--assets_dir", str(tmp_path / "assets"), "--output_dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("pytorch_lora_weights.safetensors", "siso_lora_kohya.safetensors", "result.png", "loss_curve.png", "run.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert str(out / name) in proc.stderr  # the demo says where each artefact went
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "completed" and record["steps_run"] >= 2
    assert record["history"][-1]["total"] < record["history"][0]["total"]
    assert "tiny random-weight models" in proc.stderr


@pytest.mark.slow
def test_demo_never_replaces_an_earlier_lora_unasked(tmp_path):
    """The fresh-user trial: `siso-demo --output_dir X` silently replaced a LoRA already in X."""
    out = tmp_path / "held"
    out.mkdir()
    (out / "pytorch_lora_weights.safetensors").write_bytes(b"an earlier run's LoRA")
    command = [sys.executable, "-m", "siso_lib.cli.demo", "--assets_dir", str(tmp_path / "assets"), "--output_dir", str(out)]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2 and "already holds a LoRA" in proc.stderr and "--overwrite" in proc.stderr
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == b"an earlier run's LoRA"


def test_adding_a_family_to_the_assets_leaves_the_other_models_alone(tmp_path):
    """A sweep adding FLUX to a folder other runs read must not rewrite their SDXL, DINO and IR files."""
    from siso_lib.offline import ensure_test_assets

    first = ensure_test_assets(tmp_path, families=("sdxl",))
    files = {"sdxl": "unet/config.json", "dino": "config.json", "ir": ""}
    stamps = {name: Path(first[name], files[name]).stat().st_mtime_ns for name in files}
    second = ensure_test_assets(tmp_path, families=("flux",))
    assert Path(second["flux"], "model_index.json").is_file()
    assert {name: Path(second[name], files[name]).stat().st_mtime_ns for name in files} == stamps
    assert ensure_test_assets(tmp_path, families=("flux",)) == second  # nothing left to write
