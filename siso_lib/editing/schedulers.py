"""Euler-ancestral sampling with a FIXED noise list, its exact inverse, and noise correction.

The Euler-ancestral sampler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", and k-diffusion's `sample_euler_ancestral` with eta = 1; diffusers'
`EulerAncestralDiscreteScheduler`) works on latents z of variance-exploding scale: z = x0 + sigma * n.
Its step k goes from sigma_from = sigma_k to sigma_to = sigma_{k+1} (sigma_K = 0 after the last
timestep) in two parts, a deterministic Euler step down to sigma_down and fresh noise back up:

    sigma_up   = min(sigma_to, sqrt(sigma_to^2 * (sigma_from^2 - sigma_to^2) / sigma_from^2))
    sigma_down = sqrt(sigma_to^2 - sigma_up^2)                  (= sigma_to^2 / sigma_from)
    z_to       = z_from + (sigma_down - sigma_from) * eps + sigma_up * n_k                   (1)

where eps = eps_theta(z_from / sqrt(sigma_from^2 + 1), t_k) is the UNet's noise prediction at
z_from (epsilon prediction: diffusers writes the derivative as (z - x0_hat) / sigma, which is eps)
and n_k ~ N(0, I) is drawn afresh at every step. Here n_k is instead the k-th tensor of a list set
once by the caller (`set_noise_list`), so that a trajectory can be inverted and replayed: with n_k
fixed, (1) is an invertible map between z_from and z_to given eps,

    z_from = z_to - (sigma_down - sigma_from) * eps - sigma_up * n_k                          (2)

(`inverse_step_at`). In (2) eps must be the prediction at z_from, which is what inversion is
looking for; ReNoise (renoise.py) estimates it by fixed-point iteration.

Noise correction (ReNoise, Garibi et al., arXiv 2403.14602, for non-deterministic samplers): once
z_from is estimated, the noise n* that makes (1) land exactly on the known z_to is

    n* = (z_to - z_from - (sigma_down - sigma_from) * eps_theta(z_from)) / sigma_up          (3)

`correct_noise` either sets n_k = n* ("exact") or, as the SISO/ReNoise reference implementation
does, moves n_k towards n* by `steps` normalised steps of L2 length `step_size` (10 x 1.8):
n <- n - step_size * (n - n*) / ||n - n*||_2, i.e. gradient descent on ||n - n*||_2 (not squared).
That moves n by at most steps * step_size in L2 norm, so on a 64x64x4 latent (512 px) it is a
partial correction, and on a tiny 8x8x4 latent nearly a full one (it stops within step_size).

Shapes: latents and noises are [B, C, h, w] (noises broadcast over B); sigmas are 0-d float32
tensors on the CPU (as diffusers keeps them). The arithmetic runs in float32 whatever the model's
dtype; `step` (the diffusers API) casts its result back to the model output's dtype, the
`*_at` methods return float32.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput


@dataclass(frozen=True)
class AncestralSigmas:
    """The noise levels of one Euler-ancestral step (0-d float32 tensors, see the module doc)."""

    sigma_from: torch.Tensor
    sigma_to: torch.Tensor
    sigma_up: torch.Tensor
    sigma_down: torch.Tensor


class FixedNoiseEulerAncestralScheduler(EulerAncestralDiscreteScheduler):
    """`EulerAncestralDiscreteScheduler` whose ancestral noise n_k is the k-th tensor of a fixed list.

    Build it from any SDXL scheduler config (`FixedNoiseEulerAncestralScheduler.from_config(
    pipe.scheduler.config)`), call `set_timesteps(K)` and `set_noise_list` with K tensors (one per
    timestep of the full K-step schedule, indexed like `sigmas`: an img2img run that starts at step
    k0 uses n_k0 ... n_{K-1}). `step` then follows diffusers' API (usable inside a diffusers
    pipeline); `step_at`, `inverse_step_at` and `correct_noise` take the schedule index explicitly
    and leave the scheduler's step counter alone, which is what inversion (visiting the timesteps
    in reverse, several times each) needs. Only epsilon prediction is supported (SDXL-Turbo's).
    """

    noises: list[torch.Tensor] | None = None

    # ------------------------------------------------------------------ the fixed noise
    def set_noise_list(self, noises: Sequence[torch.Tensor]) -> None:
        """Use `noises[k]` ([1 or B, C, h, w]) as the ancestral noise of schedule step k.

        The list is copied (the tensors are not): `correct_noise` replaces entries of this
        scheduler's list, never a caller's tensor in place.
        """
        self.noises = list(noises)

    def noise_at(self, index: int, like: torch.Tensor) -> torch.Tensor:
        """n_index as float32 on `like`'s device."""
        if self.noises is None or not 0 <= index < len(self.noises):
            count = "no noise list" if self.noises is None else f"a noise list of {len(self.noises)}"
            raise ValueError(f"step {index} needs fixed noise, but the scheduler has {count}: call set_noise_list first")
        return self.noises[index].to(device=like.device, dtype=torch.float32)

    # ------------------------------------------------------------------ the maths
    def ancestral_sigmas(self, index: int) -> AncestralSigmas:
        """sigma_from, sigma_to, sigma_up, sigma_down of schedule step `index` (equations in the module doc)."""
        self._check_prediction_type()
        sigma_from, sigma_to = self.sigmas[index], self.sigmas[index + 1]
        # diffusers' own expressions, so that step_at equals EulerAncestralDiscreteScheduler.step
        sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        sigma_up = torch.minimum(sigma_up, sigma_to)
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        return AncestralSigmas(sigma_from, sigma_to, sigma_up, sigma_down)

    def scale_input_at(self, index: int, sample: torch.Tensor) -> torch.Tensor:
        """The UNet's input at step `index`: z / sqrt(sigma_from^2 + 1) (as `scale_model_input`)."""
        sigma = self.sigmas[index]
        return sample / ((sigma**2 + 1) ** 0.5)

    def step_at(self, index: int, noise_pred: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Equation (1): z_from -> z_to with the fixed noise n_index; float32, differentiable."""
        s = self.ancestral_sigmas(index)
        moved = sample.float() + noise_pred.float() * (s.sigma_down - s.sigma_from)
        return moved + self.noise_at(index, sample) * s.sigma_up

    def inverse_step_at(self, index: int, noise_pred: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """Equation (2): z_to -> z_from, given the prediction `noise_pred` at z_from; float32."""
        s = self.ancestral_sigmas(index)
        moved = sample.float() - noise_pred.float() * (s.sigma_down - s.sigma_from)
        return moved - self.noise_at(index, sample) * s.sigma_up

    def correct_noise(
        self,
        index: int,
        noise_pred: torch.Tensor,
        sample: torch.Tensor,
        target: torch.Tensor,
        steps: int = 10,
        step_size: float | None = 1.8,
    ) -> torch.Tensor:
        """Equation (3): update n_index so that step_at(index, noise_pred, sample) lands (nearer) on `target`.

        `sample` is z_from, `noise_pred` the prediction there, `target` the z_to the step should
        reach. `step_size=None` sets n_index = n* exactly; otherwise `steps` normalised steps of
        L2 length `step_size` towards n* (the reference implementation's update). A step with
        sigma_up = 0 (the last one, to sigma = 0) has no noise to correct. Returns the new n_index.
        """
        s = self.ancestral_sigmas(index)
        noise = self.noise_at(index, sample)
        if float(s.sigma_up) == 0.0:
            return noise
        deterministic = sample.float() + noise_pred.float() * (s.sigma_down - s.sigma_from)
        required = (target.float() - deterministic) / s.sigma_up
        if step_size is None:
            noise = required
        else:
            for _ in range(steps):
                offset = noise - required
                distance = torch.linalg.vector_norm(offset)
                if float(distance) == 0.0:  # already exact: the normalised direction is undefined
                    break
                noise = noise - step_size * (offset / distance)
        self.noises[index] = noise
        return noise

    # ------------------------------------------------------------------ diffusers' API
    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> EulerAncestralDiscreteSchedulerOutput | tuple:
        """`EulerAncestralDiscreteScheduler.step` with the fixed noise n_k instead of a fresh draw.

        `generator` is accepted for API compatibility and ignored. The step counter advances as
        in diffusers (the first call finds its index from `timestep`). Returns (prev_sample,
        pred_original_sample) as the parent does, prev_sample in model_output's dtype.
        """
        if isinstance(timestep, (int, torch.IntTensor, torch.LongTensor)):
            raise ValueError("pass one of `scheduler.timesteps` to step(), not an integer index")
        if self.step_index is None:
            self._init_step_index(timestep)
        index = self.step_index
        prev_sample = self.step_at(index, model_output, sample).to(model_output.dtype)
        pred_original_sample = sample.float() - self.sigmas[index] * model_output.float()
        self._step_index += 1
        if not return_dict:
            return prev_sample, pred_original_sample
        return EulerAncestralDiscreteSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def _check_prediction_type(self) -> None:
        if self.config.prediction_type != "epsilon":
            raise NotImplementedError(
                f"FixedNoiseEulerAncestralScheduler supports epsilon prediction only, not {self.config.prediction_type!r}"
            )
