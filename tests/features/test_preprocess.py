"""The feature networks' preprocessing equals kornia's own calls (the reference's), bit for bit."""

import kornia.augmentation as KA
import kornia.enhance as KE
import kornia.geometry.transform as KT
import pytest
import torch

from siso_lib.features.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    OPENAI_CLIP_MEAN,
    OPENAI_CLIP_STD,
    DinoPreprocess,
    IRPreprocess,
    PreprocessSpec,
)

SHAPES = [(512, 512), (600, 517), (333, 777), (64, 64), (1024, 768)]


@pytest.mark.parametrize("height, width", SHAPES)
@pytest.mark.parametrize("resize, crop", [(518, 518), (256, 224), (64, 63)])
def test_dino_preprocess_is_kornias_resize_center_crop_normalize(height, width, resize, crop):
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height * width))
    ours = DinoPreprocess(PreprocessSpec(resize, crop, IMAGENET_MEAN, IMAGENET_STD))
    resized = KT.resize(image, resize, interpolation="bicubic")
    expected = KE.normalize(KT.center_crop(resized, (crop, crop)), ours.mean, ours.std)
    assert torch.equal(ours(image), expected)
    assert torch.equal(ours(image), expected)  # and again from the cached crop matrix


@pytest.mark.parametrize("height, width", SHAPES)
@pytest.mark.parametrize("size", [290, 224, 63])
def test_ir_preprocess_is_kornias_augmentation_pipeline(height, width, size):
    image = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(height + width))
    reference = torch.nn.Sequential(
        KT.Resize(size, interpolation="bicubic"),
        KA.CenterCrop(size),
        KA.Normalize(mean=torch.tensor(OPENAI_CLIP_MEAN), std=torch.tensor(OPENAI_CLIP_STD)),
    )
    ours = IRPreprocess(PreprocessSpec(size, size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD))
    assert torch.equal(ours(image), reference(image))


def test_gradients_flow_through_the_preprocessing():
    image = torch.rand(1, 3, 96, 80, requires_grad=True)
    spec = PreprocessSpec(64, 56, IMAGENET_MEAN, IMAGENET_STD)
    (DinoPreprocess(spec)(image).sum() + IRPreprocess(spec)(image).sum()).backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
