"""A finished tiny SDXL run (optimised on data/cat.png), shared by the evaluation tests."""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="session")
def finished_run(tiny_assets, subject_path, tmp_path_factory):
    from siso_lib.offline import offline_config
    from siso_lib.runner import run_siso

    folder = tmp_path_factory.mktemp("runs") / "cat"
    config = offline_config(tiny_assets, num_train_epochs=6, early_stopping_threshold_percentage=0.0)
    outcome = run_siso(config, subject_path, output_dir=folder)
    assert outcome.result.completed and outcome.artifacts.lora_path
    return folder


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run, for tests that write into it."""
    return shutil.copytree(finished_run, tmp_path / "run")


@pytest.fixture(scope="session")
def tiny_judges(tiny_assets):
    from siso_lib.evaluation import Judges

    return Judges.from_names(tiny_assets["dino"], tiny_assets["clip"], None, tiny_assets["ir"], device="cpu")
