"""Shared fixtures: tiny offline models (random weights, built once per session) and a photo."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from siso_lib.test_assets import write_test_assets  # noqa: E402

torch.set_num_threads(min(2, os.cpu_count() or 1))
SUBJECT = REPO / "data" / "cat.png"


@pytest.fixture(scope="session")
def tiny_assets(tmp_path_factory) -> dict[str, str]:
    return write_test_assets(tmp_path_factory.mktemp("assets"), "tiny")


@pytest.fixture(scope="session")
def subject_path() -> str:
    return str(SUBJECT)


@pytest.fixture
def tiny_config(tiny_assets):
    from siso_lib.offline import offline_config

    def make(**overrides):
        return offline_config(tiny_assets, **overrides)

    return make


@pytest.fixture(scope="session")
def family_assets(tmp_path_factory) -> dict[str, str]:
    """Tiny SDXL, FLUX.1 and Sana pipelines (plus DINO and IR) in the layouts users download."""
    return write_test_assets(tmp_path_factory.mktemp("family-assets"), "tiny", families=("flux", "sana"))
