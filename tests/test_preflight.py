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


def test_siso_eval_says_so_for_its_judges_before_torch_loads(tmp_path, monkeypatch, run_copy):
    """The fresh-user trial: siso-eval with HF_HUB_OFFLINE=1 named a DINO or CLIP judge missing from
    the cache only after loading torch (10-15 s), and then in the hub client's words."""
    from cli_cases import run_cli_cases

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    run = str(run_copy)
    cases = {
        "DINO": ("siso_lib.cli.evaluate", [run, "--dino_model_name", "vit_small_patch16_224.dino"]),
        "CLIP": ("siso_lib.cli.evaluate", [run, "--clip_model_name", "ViT-B-32"]),
        "Grounding-DINO": ("siso_lib.cli.evaluate", [run, "--crop_subject"]),
    }
    report, heavy = run_cli_cases(cases, tmp_path)
    assert heavy == []
    repos = {"DINO": "timm/vit_small_patch16_224.dino", "CLIP": "timm/vit_base_patch32_clip_224.openai",
             "Grounding-DINO": "IDEA-Research/grounding-dino-tiny"}
    for name, (code, stderr) in report.items():
        lines = stderr.strip().splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("siso-eval: error: "), (name, stderr)
        assert f"'{repos[name]}' is not in the Hugging Face cache" in stderr and f"hf download {repos[name]}" in stderr, stderr
    assert not (run_copy / "eval").exists()


def test_a_sweep_of_hub_models_missing_from_the_cache_refuses_before_any_kernel(tmp_path, empty_hub_cache, capsys, subject_path):
    """The fresh-user trial: `siso-sweep --set models=hub` with HF_HUB_OFFLINE=1 started a kernel per
    run, and each failed after about 20 s in the same way."""
    from siso_lib.cli.sweep import main

    root = tmp_path / "sweeps"
    assert main(["--set", "models=hub", "--grid", "rank=2,4", "--subjects", subject_path, "--output-root", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("siso-sweep: error: run rank-2"), err
    assert "base model 'stabilityai/sdxl-turbo' is not in the Hugging Face cache" in err[0] and not root.exists()


def test_a_sweep_with_eval_names_a_judge_missing_from_the_cache_before_any_kernel(tmp_path, empty_hub_cache, capsys, subject_path):
    from siso_lib.cli.sweep import main

    for repo, filename in (("stabilityai/sdxl-turbo", "model_index.json"), ("timm/vit_large_patch14_dinov2.lvd142m", "config.json")):
        folder = empty_hub_cache / f"models--{repo.replace('/', '--')}"
        (folder / "snapshots" / "abc").mkdir(parents=True)
        (folder / "snapshots" / "abc" / filename).write_text("{}")
        (folder / "refs").mkdir()
        (folder / "refs" / "main").write_text("abc")
    root = tmp_path / "sweeps"
    argv = ["--set", "models=hub", "--grid", "rank=2,4", "--subjects", subject_path, "--output-root", str(root), "--eval"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("siso-sweep: error: --eval: DINO judge 'timm/vit_small_patch16_224.dino' is not in"), err
    assert not root.exists()


def test_a_mistyped_model_folder_is_named_before_a_default_hub_model(empty_hub_cache, tmp_path):
    """The fresh-user trial: a mistyped local folder was reported after a default hub model missing from the cache."""
    from siso_lib.config import SISOConfig
    from siso_lib.preflight import check_model_inputs

    with pytest.raises(SISOInputError, match=r"^DINO model folder .*nope' does not exist"):
        check_model_inputs(SISOConfig(dino_model_name=str(tmp_path / "nope")))  # the default base model is not cached
    with pytest.raises(SISOInputError, match=r"^base model 'stabilityai/sdxl-turbo' is not in the Hugging Face cache"):
        check_model_inputs(SISOConfig())  # ... which is then said


def test_siso_edit_names_the_users_detector_folder_before_the_default_sam(empty_hub_cache, tmp_path, subject_path, capsys):
    """The fresh-user trial: `--detector_model outputs/test-assets/nope` was reported after the default SAM."""
    from pathlib import Path

    from siso_lib.cli.edit import main

    nope = tmp_path / "nope"
    data = Path(__file__).resolve().parents[1] / "data"
    code = main(["--input_image_path", str(data / "coffee.png"), "--subject_image_path", subject_path,
                 "--subject_class", "cat", "--input_class", "cup", "--detector_model", str(nope),
                 "--output_dir", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"siso-edit: error: Grounding-DINO model {str(nope)!r} does not exist"), err
    assert not (tmp_path / "out").exists()
