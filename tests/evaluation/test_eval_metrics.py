"""metrics.py: cosines and diversity on features whose answers are known."""

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
