"""The checks a run makes before it loads a model (preflight.py): here, hub models on a machine
without network (HF_HUB_OFFLINE=1), answered from the local hub cache before torch is imported."""

from __future__ import annotations

import time

import pytest

from siso_lib.errors import SISOInputError
from siso_lib.preflight import check_in_hub_cache, dino_hub_id


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    import huggingface_hub.constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


def test_a_hub_model_missing_from_the_cache_is_named_with_the_fix(empty_hub_cache):
    with pytest.raises(SISOInputError) as caught:
        check_in_hub_cache("stabilityai/sdxl-turbo", "model_index.json", "base model", "pretrained_model_name_or_path")
    message = str(caught.value)
    assert message.startswith("base model 'stabilityai/sdxl-turbo' is not in the Hugging Face cache")
    assert "hf download stabilityai/sdxl-turbo" in message and "pretrained_model_name_or_path" in message
    snapshot = empty_hub_cache / "models--stabilityai--sdxl-turbo" / "snapshots" / "abc"
    snapshot.mkdir(parents=True)
    (snapshot / "model_index.json").write_text("{}")
    (empty_hub_cache / "models--stabilityai--sdxl-turbo" / "refs").mkdir()
    (empty_hub_cache / "models--stabilityai--sdxl-turbo" / "refs" / "main").write_text("abc")
    check_in_hub_cache("stabilityai/sdxl-turbo", "model_index.json", "base model", "pretrained_model_name_or_path")


def test_online_nothing_is_looked_up(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    check_in_hub_cache("nobody/nothing-here", "model_index.json", "base model", "pretrained_model_name_or_path")


def test_the_dino_names_that_come_from_the_hub():
    assert dino_hub_id("vit_large_patch14_dinov2.lvd142m") == "timm/vit_large_patch14_dinov2.lvd142m"
    assert dino_hub_id("hf-hub:org/dino") == "org/dino"
    assert dino_hub_id("vit_small_patch14_dinov2") is None  # timm picks the tag: no repository to name
    assert dino_hub_id("outputs/test-assets/dino") is None


def test_the_commands_say_so_before_torch_loads(tmp_path, monkeypatch, subject_path, tiny_assets):
    """The fresh-user trial: with HF_HUB_OFFLINE=1 a hub id not in the cache took 12-23 s to be
    reported (torch and diffusers were imported first)."""
    from cli_cases import run_cli_cases

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    generate = ["--subject_image_path", subject_path, "--output_dir", str(tmp_path / "out")]
    cases = {
        "base model": ("siso_lib.cli.generate", generate + ["--pretrained_model_name_or_path", "nobody/not-cached"]),
        "DINO": ("siso_lib.cli.generate", generate + ["--pretrained_model_name_or_path", tiny_assets["sdxl"]]),
    }
    started = time.perf_counter()
    report, heavy = run_cli_cases(cases, tmp_path)
    assert heavy == [] and time.perf_counter() - started < 30
    code, stderr = report["base model"]
    assert code == 2 and stderr.strip().startswith("siso-generate: error: base model 'nobody/not-cached' is not in the Hugging Face cache")
    assert "--pretrained_model_name_or_path" in stderr and len(stderr.strip().splitlines()) == 1
    assert report["DINO"][0] == 2 and "DINO model 'timm/vit_large_patch14_dinov2.lvd142m' is not in" in report["DINO"][1]
    assert not (tmp_path / "out").exists()
