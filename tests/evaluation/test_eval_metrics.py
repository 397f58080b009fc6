"""metrics.py: cosines, seed diversity and pixel differences on inputs whose answers are known."""

from __future__ import annotations

import math

import pytest
import torch

from siso_lib.evaluation.metrics import diversity, mean, similarity, similarity_to


def test_similarity_of_known_pairs():
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [3.0, 4.0]])
    b = torch.tensor([[2.0, 0.0], [0.0, 5.0], [-1.0, 0.0], [4.0, 3.0]])
    assert similarity(a, b).tolist() == pytest.approx([1.0, 0.0, -1.0, 24 / 25])


def test_similarity_to_one_reference_and_shape_errors():
    features = torch.randn(5, 7)
    assert torch.allclose(similarity_to(features, features[2]), similarity(features, features[2:3].expand(5, 7)))
    assert similarity_to(features, features[2])[2] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shapes differ"):
        similarity(torch.zeros(2, 3), torch.zeros(3, 3))


def test_diversity_is_zero_for_identical_images_and_the_mean_pairwise_distance_otherwise():
    same = torch.ones(4, 8)
    assert diversity(same) == pytest.approx(0.0, abs=1e-6)
    # three pairs: (e1, e2) distance 1, (e1, -e1) distance 2, (e2, -e1) distance 1
    assert diversity(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])) == pytest.approx(4 / 3)
    assert diversity(torch.ones(1, 3)) is None


def test_mean_skips_missing_values():
    assert mean([1.0, None, 3.0, math.nan]) == 2.0
    assert mean([None]) is None


def test_the_papers_diversity_is_the_mse_to_the_photos_centre_square():
    """Known answers: the photo itself gives 0; black against white gives 1; the photo's centre
    square (not the whole photo squeezed) is what the picture is compared with."""
    import numpy as np
    from PIL import Image

    from siso_lib.evaluation.metrics import mse_to_photo

    wide = np.zeros((40, 120, 3), np.uint8)
    wide[:, 30:90] = 255  # the centre square (x 40-80) and a margin are white, the sides black
    photo = Image.fromarray(wide)
    assert mse_to_photo(Image.new("RGB", (64, 64), "white"), photo) == pytest.approx(0.0, abs=1e-9)
    assert mse_to_photo(Image.new("RGB", (64, 64), "black"), photo) == pytest.approx(1.0, abs=1e-9)
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    assert mse_to_photo(grey, Image.new("RGB", (50, 50), "black")) == pytest.approx((128 / 255) ** 2, abs=1e-9)


def test_the_masked_mse_counts_only_the_kept_pixels():
    import numpy as np

    from siso_lib.evaluation.metrics import masked_mse

    image, reference = np.zeros((4, 4, 3)), np.zeros((4, 4, 3))
    image[:2] = 1.0  # changed in the top half only
    keep = np.zeros((4, 4), bool)
    keep[2:] = True
    assert masked_mse(image, reference, keep) == 0.0 and masked_mse(image, reference, ~keep) == 1.0
    with pytest.raises(ValueError, match="covers everything"):
        masked_mse(image, reference, np.zeros((4, 4), bool))
