"""SISO editing as a task of the SISO optimiser: what changes from generation.

The optimiser (optimizer.py) is the same loop; an `EditTask` swaps two of its parts (paper,
arXiv 2503.16025, section 3.3; the authors' `siso_editing_sdxl.py`):

* the renderer: instead of text-to-image from noise, `SDXLEditGenerator` inverts the scene photo
  y once with ReNoise (renoise.py) and, every iteration, regenerates img2img from the inverted
  latent with the subject's prompt (3 of 4 steps, gradients through the last), giving x [1, 3, H, W];
* the loss: the subject terms (DINO, IR: losses.py) plus a background-preservation term

      L_bg = sum_{c,h,w} (1 - m) * (x - y)^2 / sum_{c,h,w} (1 - m)                      (mean over
      the background pixels and channels; m [1, 1, H, W] = 1 on the subject's region, 0 elsewhere)

      L = w_dino * L_dino + w_ir * L_ir + w_bg * L_bg       (w_bg = bg_mse_loss_weight, 10 by default)

  so the LoRA learns to draw the subject where the mask is and to leave the rest of the photo as
  it was. The gradient of L_bg is 0 inside the mask.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..generators.sdxl import SDXLGenerator
from .renoise import Conditioning, Inversion, ReNoiseConfig, regenerate, renoise_invert


def background_mse(image: torch.Tensor, scene: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared difference outside the mask: image, scene [1, 3, H, W] in [0, 1], mask [1, 1, H, W]
    (1 = subject region) -> scalar. As the authors' `get_bg_mse_loss` (the mask repeated over channels)."""
    background = (1.0 - mask).expand_as(image)
    return ((image - scene) * background).pow(2).sum() / background.sum()


class EditLoss(nn.Module):
    """The subject loss plus `weight` x background MSE; `forward` returns {"total", "dino", "ir", "background"}."""

    def __init__(self, subject_loss: nn.Module, scene: torch.Tensor, mask: torch.Tensor, weight: float):
        super().__init__()
        self.subject_loss = subject_loss
        self.terms = subject_loss.terms  # the feature networks, as SubjectSimilarityLoss exposes them
        device = next(subject_loss.parameters()).device
        self.register_buffer("scene", scene.float().to(device), persistent=False)
        self.register_buffer("mask", mask.float().to(device), persistent=False)
        self.weights = dict(subject_loss.weights) | ({"background": float(weight)} if weight > 0 else {})

    def forward(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        losses = self.subject_loss(image)
        if "background" in self.weights:
            losses["background"] = background_mse(image.float(), self.scene, self.mask)
            losses["total"] = losses["total"] + self.weights["background"] * losses["background"]
        return losses


class SDXLEditGenerator(SDXLGenerator):
    """The edit's renderer: the scene inverted once (`prepare`), then img2img with gradients (`forward`).

    `scene` [1, 3, H, W] in [0, 1] at the run's resolution; `scene_prompt` describes the scene's
    object ("a photo of a dog"): ReNoise inverts with it. The prompt `prepare` receives is the
    subject's, used for every regeneration (guidance 1: one conditional UNet pass).
    """

    supports_cuda_graphs = False

    def __init__(
        self,
        pipe,
        device: torch.device,
        train_text_encoder: bool,
        cache_prompt_embeddings: bool = False,
        num_grad_steps: int = 1,
        scene: torch.Tensor | None = None,
        scene_prompt: str = "",
        renoise: ReNoiseConfig | None = None,
    ):
        super().__init__(pipe, device, train_text_encoder, cache_prompt_embeddings, num_grad_steps)
        if scene is None:
            raise ValueError("SDXLEditGenerator needs the scene photo")
        self.scene, self.scene_prompt, self.renoise = scene, scene_prompt, renoise or ReNoiseConfig()
        self.inversion: Inversion | None = None

    @classmethod
    def generation_options(cls, config) -> dict:
        """The config's rendering settings (num_grad_steps); the scene comes from the EditTask."""
        return SDXLGenerator.generation_options(config)

    def prepare(self, prompt: str, generator: torch.Generator, height: int, width: int, num_inference_steps: int = 1) -> dict:
        """Invert the scene (no gradients; the LoRA is still zero) and fix what every iteration reuses."""
        if tuple(self.scene.shape[-2:]) != (height, width):
            raise ValueError(f"the scene is {tuple(self.scene.shape[-2:])} px, the run renders {(height, width)}")
        self.inversion = renoise_invert(self.pipe, self.scene.to(self.device), self.scene_prompt, self.renoise, device=self.device)
        time_ids = torch.tensor([[height, width, 0, 0, height, width]], device=self.device)
        return {"prompt": prompt, "time_ids": time_ids}

    def start(self, inputs: dict) -> None:
        """Nothing to rewind: the regeneration's noise is the inversion's fixed list."""

    def forward(self, inputs: dict, ancestral_noise: bool = True) -> torch.Tensor:
        """The edited image [1, 3, H, W] float32 in [0, 1]; differentiable w.r.t. the LoRA."""
        embeds, pooled = self.encode(inputs["prompt"])  # cached, or with gradients for a text-encoder LoRA
        cond = Conditioning(embeds, pooled, inputs["time_ids"].to(embeds.dtype))
        return regenerate(self.pipe, self.inversion, cond, num_grad_steps=self.num_grad_steps)


@dataclass
class EditTask:
    """The inputs that turn a SISO run into an edit (see the module doc).

    scene         [1, 3, H, W] float32 in [0, 1]: the photo to edit, at the run's resolution
    mask          [1, 1, H, W] float32 in {0, 1}: 1 where the subject goes (the scene object's region)
    scene_prompt  "a photo of a {class of the scene's object}", ReNoise's inversion prompt
    renoise       inversion settings (strength = the authors' inversion_max_step)
    background_weight   w_bg (the authors' bg_mse_loss_weight)
    """

    scene: torch.Tensor
    mask: torch.Tensor
    scene_prompt: str
    renoise: ReNoiseConfig = field(default_factory=ReNoiseConfig)
    background_weight: float = 10.0
    name: str = "editing"

    def generator_class(self, family: type) -> type:
        if family.family != "sdxl":
            raise ValueError(f"SISO editing runs on SDXL(-Turbo), not {family.family}")
        return SDXLEditGenerator

    def generator_options(self) -> dict:
        return {"scene": self.scene, "scene_prompt": self.scene_prompt, "renoise": self.renoise}

    def loss(self, subject_loss: nn.Module) -> EditLoss:
        return EditLoss(subject_loss, self.scene, self.mask, self.background_weight)
