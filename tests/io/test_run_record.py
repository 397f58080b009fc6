"""Reading a run folder back: RunRecord and LoraInfo (io/run_record.py)."""

from __future__ import annotations

import json

import pytest

from siso_lib.errors import SISOInputError
from siso_lib.io.run_record import RunRecord, lora_info


def test_a_finished_run_reads_back(finished_run):
    record = RunRecord.read(finished_run)
    assert record.status == "completed" and record.task == "generate" and record.model_family == "sdxl"
    assert record.best_losses["total"] < 0 and len(record.history) == record.get("steps_run")
    assert record.path_of("lora_path").endswith("pytorch_lora_weights.safetensors")
    assert record.subject_image_path.endswith("cat.png") and record.evaluation is None
    info = lora_info(finished_run)
    assert info.record.path == record.path and info.model_family == "sdxl" and info.base_model == record.parameters["pretrained_model_name_or_path"]


def test_missing_or_broken_records_are_one_line(tmp_path):
    with pytest.raises(SISOInputError, match="does not exist"):
        RunRecord.read(tmp_path)
    (tmp_path / "run.json").write_text('{"status": "compl')
    with pytest.raises(SISOInputError, match="not saved completely"):
        RunRecord.read(tmp_path)
    assert RunRecord.find(tmp_path) is None
    (tmp_path / "run.json").write_text("[1, 2]")
    with pytest.raises(SISOInputError, match="no JSON object"):
        RunRecord.read(tmp_path / "run.json")


def test_an_evaluation_entry_counts_only_with_scores_and_writes_back(tmp_path):
    (tmp_path / "run.json").write_text(json.dumps({"status": "completed", "evaluation": {"summary": {}}}))
    record = RunRecord.read(tmp_path)
    assert record.evaluation is None
    record.data["evaluation"] = {"summary": {"lora": {"dino": 0.5}}}
    record.write()
    assert RunRecord.read(tmp_path).evaluation == {"summary": {"lora": {"dino": 0.5}}}
    assert RunRecord.read(tmp_path).model_family is None  # an old record without the family
