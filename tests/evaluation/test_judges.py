"""judges.py: the scoring networks, loaded through the real loading code from files made here."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from siso_lib.errors import SISOInputError
from siso_lib.evaluation import Judges
from siso_lib.evaluation.metrics import similarity_to

REPO_DATA = __import__("pathlib").Path(__file__).resolve().parents[2] / "data"


def _noisy(image: Image.Image, sigma: float, seed: int = 0) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    pixels = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray((pixels.clip(0, 1) * 255).round().astype(np.uint8))


def test_identical_images_score_one_and_known_pairs_are_ordered(tiny_judges):
    """cat vs itself = 1; cat vs a lightly noised cat beats cat vs coffee, for every judge."""
    cat = Image.open(REPO_DATA / "cat.png").convert("RGB")
    coffee = Image.open(REPO_DATA / "coffee.png").convert("RGB")
    features = tiny_judges.image_features([cat, cat.copy(), _noisy(cat, 0.02), coffee])
    assert set(features) == {"dino", "clip", "ir"}
    for name, values in features.items():
        scores = similarity_to(values, values[0])
        assert scores[1] == pytest.approx(1.0, abs=1e-5), name
        assert scores[2] > scores[3], f"{name}: noised cat {scores[2]:.4f} <= coffee {scores[3]:.4f}"
        assert ((scores >= -1) & (scores <= 1)).all()


def test_batches_give_the_same_features_as_one_at_a_time(tiny_assets):
    judges = Judges.from_names(tiny_assets["dino"], tiny_assets["clip"], None, tiny_assets["ir"], device="cpu", batch_size=2)
    images = [_noisy(Image.new("RGB", (96, 80), (40 * i, 90, 200)), 0.1, i) for i in range(5)]
    together = judges.image_features(images)
    alone = [judges.image_features([image]) for image in images]
    for name in together:
        assert torch.allclose(together[name], torch.cat([a[name] for a in alone]), atol=1e-5), name
    text = judges.text_features(["a cat", "a dog", "a cat"])
    assert text.shape[0] == 3 and torch.allclose(text[0], text[2], atol=1e-5) and not torch.allclose(text[0], text[1], atol=1e-2)


def test_local_checkpoints_load_their_own_weights(tiny_assets):
    """The real-weight path (timm folder, open_clip local-dir folder, IR .pth) on files written here."""
    from safetensors.torch import load_file

    judges = Judges.from_names(tiny_assets["dino"], tiny_assets["clip"], None, tiny_assets["ir"], device="cpu")
    saved_clip = load_file(f"{tiny_assets['clip']}/open_clip_model.safetensors")
    assert all(torch.equal(saved_clip[k], v) for k, v in judges.clip.state_dict().items())
    saved_dino = load_file(f"{tiny_assets['dino']}/model.safetensors")
    assert all(torch.equal(saved_dino[k], v) for k, v in judges.dino.state_dict().items() if k in saved_dino)
    saved_ir = torch.load(tiny_assets["ir"], weights_only=True)
    assert torch.equal(saved_ir["module.fc1.weight"], judges.ir.network.fc1.weight)
    # the libraries' own evaluation transforms, sized by the checkpoints' configs
    clip_size = json.loads(open(f"{tiny_assets['clip']}/open_clip_config.json").read())["model_cfg"]["vision_cfg"]["image_size"]
    assert judges.clip_transform(Image.new("RGB", (300, 200))).shape == (3, clip_size, clip_size)
    assert judges.dino_transform(Image.new("RGB", (300, 200))).shape[-1] == judges.dino.pretrained_cfg["input_size"][-1]
    assert judges.names == {"dino": tiny_assets["dino"], "clip": tiny_assets["clip"], "ir": tiny_assets["ir"]}


def test_skipped_judges_and_ir_swaps(tiny_assets, tmp_path):
    judges = Judges.from_names(None, None, None, None, device="cpu")
    assert judges.image_features([Image.new("RGB", (64, 64))]) == {}
    judges.set_ir(tiny_assets["ir"])
    first = judges.ir
    judges.set_ir(tiny_assets["ir"])
    assert judges.ir is first  # the same checkpoint is not loaded twice across a sweep's runs
    judges.set_ir(None)
    assert judges.ir is None and "ir" not in judges.names


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(clip_model_name="{tmp}/no-such-clip"), "does not exist"),
        (dict(clip_model_name="{tmp}"), "has no open_clip_config.json"),
        (dict(clip_model_name="ViT-B-32", clip_pretrained="openai"), "could not be loaded"),
        (dict(dino_model_name="vit_small_patch16_224.dino"), "could not be loaded"),
    ],
)
def test_unavailable_judges_are_one_line_errors(tmp_path, kwargs, message, monkeypatch):
    """Missing folders, and real models that are not in the (empty) hub cache. Offline mode, as on
    a machine without network: otherwise the hub client retries for about a minute first."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    defaults = dict(dino_model_name=None, clip_model_name=None, clip_pretrained=None)
    kwargs = {k: v.replace("{tmp}", str(tmp_path)) if isinstance(v, str) else v for k, v in kwargs.items()}
    with pytest.raises(SISOInputError, match=message) as error:
        Judges.from_names(**{**defaults, **kwargs}, device="cpu")
    assert "\n" not in str(error.value)
