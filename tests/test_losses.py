import torch

from siso_lib.features.dino import DinoFeatures
from siso_lib.io.images import load_subject_image
from siso_lib.features.ir import IRFeatures
from siso_lib.losses import SubjectSimilarityLoss, negative_cosine


def test_negative_cosine_values():
    a = torch.tensor([[1.0, 0.0]])
    assert negative_cosine(a, a).item() == -1.0
    assert negative_cosine(a, torch.tensor([0.0, 2.0])).item() == 0.0


def test_loss_is_the_weighted_sum_and_the_subject_scores_perfectly(tiny_assets, subject_path):
    subject = load_subject_image(subject_path).tensor
    dino = DinoFeatures.from_pretrained(tiny_assets["dino"])
    ir = IRFeatures.from_checkpoint(tiny_assets["ir"])
    loss = SubjectSimilarityLoss(subject, dino, ir, dino_weight=0.5, ir_weight=2.0)
    same = loss(subject)
    assert torch.allclose(same["dino"], torch.tensor(-1.0), atol=1e-5)
    assert torch.allclose(same["ir"], torch.tensor(-1.0), atol=1e-5)
    other = loss(torch.rand(1, 3, 64, 64))
    assert torch.allclose(other["total"], 0.5 * other["dino"] + 2.0 * other["ir"])
    assert other["total"] > same["total"]


def test_feature_networks_are_frozen_and_pass_gradients_to_the_image(tiny_assets, subject_path):
    subject = load_subject_image(subject_path).tensor
    dino = DinoFeatures.from_pretrained(tiny_assets["dino"])
    ir = IRFeatures.from_checkpoint(tiny_assets["ir"])
    loss = SubjectSimilarityLoss(subject, dino, ir)
    loss.train()
    assert not dino.training and not ir.training
    image = torch.rand(1, 3, 64, 64, requires_grad=True)
    loss(image)["total"].backward()
    assert image.grad is not None and image.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_dino_only_when_no_ir(tiny_assets, subject_path):
    subject = load_subject_image(subject_path).tensor
    loss = SubjectSimilarityLoss(subject, DinoFeatures.from_pretrained(tiny_assets["dino"]), None)
    out = loss(torch.rand(1, 3, 64, 64))
    assert set(out) == {"dino", "total"} and torch.equal(out["dino"], out["total"])
