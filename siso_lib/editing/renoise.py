"""ReNoise inversion of a real photo on SDXL(-Turbo), and img2img regeneration from the result.

Source: Garibi, Patashnik, Voynov, Averbuch-Elor, Cohen-Or, "ReNoise: Real Image Inversion
Through Iterative Noising" (ECCV 2024, arXiv 2403.14602), section 3, with the settings SISO's
editing script (Shpitzer et al., arXiv 2503.16025) uses on SDXL-Turbo. Written from the paper and
from the behaviour of the authors' code (read, not copied).

Setting. The photo x (H x W pixels) is encoded by the VAE to z_0 ([1, 4, H/8, W/8], scaled by the
VAE's scaling factor). The sampler is Euler-ancestral over K = 4 timesteps (999, 749, 499, 249 for
SDXL-Turbo's "trailing" spacing) with a FIXED noise list n_0..n_{K-1} (schedulers.py, equation (1)).
Editing runs img2img at strength s = 0.75: only the timesteps below round(T - (1 - s) * T) = 750
(T = 1000 training timesteps), i.e. 749, 499, 249, are used. Inversion walks them upwards (249,
499, 749), producing z at sigma(249), sigma(499) and finally sigma(749): the latent from which
`regenerate` denoises 3 of the 4 steps.

One inversion step (schedule index k, timestep t, known z_prev at sigma_{k+1}, unknown z at
sigma_k) solves equation (2) of schedulers.py,

    z = z_prev - (sigma_down - sigma_k) * eps_theta(z, t) - sigma_up * n_k,

whose right side needs the prediction at the unknown z. Plain inversion (DDIM/Euler inversion)
uses eps_theta(z_prev, t) instead. ReNoise treats it as a fixed-point problem and
iterates, renoising z_prev with ever better predictions:

    z^(0) = z_prev,   z^(i+1) = inverse_step(eps_theta(z^(i), t), z_prev),   i = 0..R      (4)

(R = 9 renoising iterations, at most 5 at "first" steps: timestep < 250, here only t = 249), and
uses as the final direction the MEAN of the (unregularised) predictions of a range of iterations
(averaging: iterations [0, 5) at the first step, [8, 10) later), z = inverse_step(mean, z_prev).

Editability (noise regularisation, after pix2pix-zero, Parmar et al. 2023): from the first
iteration of the averaging range on, each prediction (and the mean) is pulled towards the
statistics of Gaussian noise by `num_reg_steps` (4) rounds of gradient steps on two losses,

    L_pair = sum_c sum_levels (mean(e * roll(e, d, rows))^2 + mean(e * roll(e, d, cols))^2)
             (autocorrelation at a random shift d in [0, size/2) per channel c and level of an
             average-pooled pyramid down to 8 px; `num_ac_rolls` (5) steps of lambda_ac / 5 each)
    L_KL   = sum_patches sum_c |log((v1+e)/(v0+e)) + (v0 + (m0 - m1)^2) / (v1+e) - 1|
             (twice the KL divergence between per-channel Gaussians fitted to each 4x4 patch of
             the prediction (m0, v0) and of the reference prediction (m1, v1); one step of
             lambda_kl with the gradient clipped to [-100, 100]; e = 1e-6)

The reference, as in the authors' implementation, is the UNet's prediction at the forward-noised
z_0 + sigma_k * n_fwd (n_fwd one fixed Gaussian draw), whose true noise IS Gaussian; it is run in
one batch with the first iteration's input. lambda_ac = 20, lambda_kl = 0.065.

Noise correction (for non-deterministic samplers): after z is fixed, one more UNet pass at z
and `FixedNoiseEulerAncestralScheduler.correct_noise` moves n_k so that the FORWARD step from z
lands on z_prev (schedulers.py, equation (3)); regeneration then replays the corrected noise. The
last step (t = 249, to sigma = 0) has sigma_up = 0 and nothing to correct.

Random numbers: one CPU `torch.Generator` seeded with `config.seed` (7865) draws, in this order,
the K noise tensors n_0..n_{K-1}, the VAE posterior sample z_0 = mean + std * N(0, I), n_fwd, and
the autocorrelation shifts (one `randint` per channel and pyramid level per roll) - the order of
the authors' code, so that the same seed gives the same numbers on any device. Guidance: inversion
uses guidance 0 and regeneration guidance 1; in diffusers both mean one conditional UNet pass (no
classifier-free guidance, which needs a scale > 1), so neither is a parameter here.

Precision: the latents, the regularisation and the scheduler arithmetic stay in float32 whatever
the UNet's dtype (the UNet's input is cast to its dtype, its output back to float32); the authors'
code rounds the latents to the model's dtype after every step. Keep an fp16 SDXL VAE in float32
(as SDXLGenerator.place does): encoding and decoding run in the VAE's own dtype.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F

from ..generators.base import grad_step_flags
from .schedulers import FixedNoiseEulerAncestralScheduler

KL_EPSILON = 1e-6
KL_PATCH = 4  # px of latent per side of a KL patch
KL_GRAD_CLIP = 100.0
AC_MIN_SIZE = 8  # the autocorrelation pyramid stops at this many latent rows


@dataclass
class ReNoiseConfig:
    """ReNoise settings; the defaults are SISO's for SDXL-Turbo (the authors' `get_inversion_config`).

    num_steps                  K, the sampler's schedule (SDXL-Turbo: 4 steps, timesteps 999..249)
    strength                   fraction of the schedule that is inverted and regenerated (0.75:
                               the last 3 of 4 steps, i.e. img2img with denoising_start 0.25)
    seed                       seeds the one CPU generator behind every random number (module doc)
    num_renoise_steps          R in equation (4): R + 1 UNet passes per step, before the final one
    max_first_step_renoise_steps   cap on R at "first" steps (timestep < first_step_max_timestep)
    first_step_max_timestep    steps with a timestep below this are "first" steps (only t = 249 here)
    average                    use the mean prediction of an iteration range as the final direction
    average_first_step_range   [start, stop) of iterations averaged at first steps
    average_step_range         [start, stop) of iterations averaged at the other steps; from `start`
                               on the predictions are also regularised
    lambda_ac, num_ac_rolls    autocorrelation (L_pair) weight and number of random-shift steps
    lambda_kl                  patch-KL weight
    num_reg_steps              rounds of (KL step, autocorrelation steps) per regularised prediction
    noise_correction           correct the fixed noise after each step (schedulers.correct_noise)
    noise_correction_steps, noise_correction_step_size
                               the normalised-step update (10 x 1.8); step size None = exact
    sample_vae                 z_0 = a sample of the VAE posterior (the authors'); False = its mean
    """

    num_steps: int = 4
    strength: float = 0.75
    seed: int = 7865
    num_renoise_steps: int = 9
    max_first_step_renoise_steps: int = 5
    first_step_max_timestep: int = 250
    average: bool = True
    average_first_step_range: tuple[int, int] = (0, 5)
    average_step_range: tuple[int, int] = (8, 10)
    lambda_ac: float = 20.0
    lambda_kl: float = 0.065
    num_reg_steps: int = 4
    num_ac_rolls: int = 5
    noise_correction: bool = True
    noise_correction_steps: int = 10
    noise_correction_step_size: float | None = 1.8
    sample_vae: bool = True

    @classmethod
    def plain(cls, **overrides: Any) -> "ReNoiseConfig":
        """Plain Euler inversion: one UNet pass per step (at z_prev), no averaging,
        regularisation or noise correction. Same schedule, seed and noise list."""
        settings = dict(num_renoise_steps=0, average=False, num_reg_steps=0, noise_correction=False)
        return cls(**{**settings, **overrides})

    def replace(self, **changes: Any) -> "ReNoiseConfig":
        return dataclasses.replace(self, **changes)

    @property
    def regularises(self) -> bool:
        return self.num_reg_steps > 0 and (self.lambda_ac > 0 or self.lambda_kl > 0)


@dataclass
class Conditioning:
    """What the UNet is conditioned on: prompt embeddings [B, 77, 2048], pooled [B, 1280], time ids [B, 6]."""

    embeds: torch.Tensor
    pooled: torch.Tensor
    time_ids: torch.Tensor

    def repeat(self, times: int) -> "Conditioning":
        return Conditioning(*(torch.cat([tensor] * times) for tensor in (self.embeds, self.pooled, self.time_ids)))


@dataclass
class Inversion:
    """The result of `renoise_invert`.

    latent        [1, 4, h, w] float32: z at sigma of `timesteps[0]`, where regeneration starts
    image_latent  [1, 4, h, w] float32: z_0, the photo's (scaled) VAE latent
    noises        K tensors [1, 4, h, w] float32: the fixed noise list after noise correction
    timesteps     the regeneration timesteps, descending (e.g. 749, 499, 249), on the device
    indices       their schedule indices (e.g. 1, 2, 3): noises[indices[j]] is used at timesteps[j]
    trajectory    z_0 then the latent after each inversion step (ascending sigma)
    config        the settings used
    """

    latent: torch.Tensor
    image_latent: torch.Tensor
    noises: list[torch.Tensor]
    timesteps: torch.Tensor
    indices: list[int]
    trajectory: list[torch.Tensor]
    config: ReNoiseConfig


# --------------------------------------------------------------------------- the pipeline's parts
def fixed_noise_scheduler(pipe, num_steps: int, device: torch.device | str) -> FixedNoiseEulerAncestralScheduler:
    """A fresh fixed-noise Euler-ancestral scheduler from the pipeline's scheduler config (the
    pipeline's own scheduler is left alone), with the K-step schedule set on `device`."""
    scheduler = FixedNoiseEulerAncestralScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(num_steps, device=device)
    return scheduler


def img2img_timesteps(scheduler, strength: float) -> tuple[torch.Tensor, list[int]]:
    """The img2img timesteps for `strength` (descending) and their schedule indices.

    diffusers' rule for `denoising_start = 1 - strength` (the authors call it that way): keep the
    timesteps below round(T - (1 - strength) * T), T = num_train_timesteps.
    """
    if not 0.0 < strength <= 1.0:
        raise ValueError(f"strength must be in (0, 1], not {strength}")
    train_steps = scheduler.config.num_train_timesteps
    cutoff = int(round(train_steps - (1.0 - strength) * train_steps))
    keep = [index for index, t in enumerate(scheduler.timesteps.tolist()) if t < cutoff]
    if not keep:
        raise ValueError(f"strength {strength} leaves no timestep of {scheduler.timesteps.tolist()}")
    return scheduler.timesteps[keep[0] :], keep


def encode_prompt(pipe, prompt: str, height: int, width: int, device: torch.device | str) -> Conditioning:
    """SDXL conditioning for one image of `height` x `width` px: the pipeline's `encode_prompt`
    (both CLIP encoders, no classifier-free guidance) and the size/crop time ids [[H, W, 0, 0, H, W]]
    (original size = target size = the image, no crop; no aesthetic score, as SDXL-Turbo).

    Runs under the caller's grad mode: frozen encoders build no graph, LoRA-carrying ones do.
    """
    text_device = pipe.text_encoder_2.device
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompt=prompt, device=text_device, num_images_per_prompt=1, do_classifier_free_guidance=False
    )
    time_ids = torch.tensor([[height, width, 0, 0, height, width]], dtype=embeds.dtype, device=device)
    return Conditioning(embeds.to(device), pooled.to(device), time_ids)


def encode_posterior(pipe, image, device: torch.device | str):
    """Photo -> the VAE's posterior (a diagonal Gaussian over the unscaled latent [1, 4, H/8, W/8]).

    `image`: a PIL image or a [1, 3, H, W] tensor in [0, 1] (the pipeline's image processor
    normalises it to [-1, 1]; H and W are rounded down to multiples of 8; a tensor is encoded in the
    channels-last layout the processor gives a PIL image, so both give the same bits). Deterministic:
    drawing from the posterior is `posterior_latent`'s job.
    """
    vae = pipe.vae
    pixels = pipe.image_processor.preprocess(image).to(device=device, dtype=vae.dtype)
    if isinstance(image, torch.Tensor):
        # a PIL image leaves the processor in channels-last strides (numpy's HWC array transposed) and
        # the encoder's convolutions round differently per memory layout: the same layout for a
        # tensor keeps a tensor scene's latent bit-identical to the PIL photo's (the authors' input)
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    return vae.encode(pixels).latent_dist


def posterior_latent(vae, posterior, generator: torch.Generator | None) -> torch.Tensor:
    """z_0 [1, 4, h, w] float32, scaled like the UNet's latents: a sample of the posterior drawn with
    `generator` (the authors' img2img encoding), or its mean without one."""
    latent = posterior.sample(generator=generator) if generator is not None else posterior.mode()
    mean, std = _latent_statistics(vae, latent)
    if mean is not None:
        return ((latent - mean) * vae.config.scaling_factor / std).float()
    return (latent * vae.config.scaling_factor).float()


def decode_latent(pipe, latent: torch.Tensor) -> torch.Tensor:
    """z [B, 4, h, w] -> image [B, 3, 8h, 8w] float32 in [0, 1]; differentiable."""
    vae = pipe.vae
    latent = latent.to(vae.dtype)
    mean, std = _latent_statistics(vae, latent)
    if mean is not None:
        latent = latent * std / vae.config.scaling_factor + mean
    else:
        latent = latent / vae.config.scaling_factor
    image = vae.decode(latent, return_dict=False)[0]
    return pipe.image_processor.postprocess(image, output_type="pt").float()


def _latent_statistics(vae, like: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The VAE's per-channel latents_mean / latents_std as [1, C, 1, 1], or (None, None) (SDXL has none)."""
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is None or std is None:
        return None, None
    shape = (1, -1, 1, 1)
    return torch.tensor(mean).view(shape).to(like), torch.tensor(std).view(shape).to(like)


def draw_noises(shape: tuple[int, ...], count: int, generator: torch.Generator, device) -> list[torch.Tensor]:
    """`count` float32 N(0, I) tensors of `shape`, drawn in order on the generator's device, moved to `device`."""
    return [torch.randn(shape, generator=generator, dtype=torch.float32, device=generator.device).to(device) for _ in range(count)]


def predict_noise(pipe, scheduler, index: int, timestep: torch.Tensor, latents: torch.Tensor, cond: Conditioning) -> torch.Tensor:
    """eps_theta(z, t) [B, 4, h, w] float32 for latents z at schedule step `index` (input scaled by
    1/sqrt(sigma^2 + 1), cast to the UNet's dtype); differentiable under the caller's grad mode."""
    unet = pipe.unet
    dtype = unet.dtype  # the text encoders' dtype may differ (e.g. a bf16 UNet, fp32 encoders)
    model_input = scheduler.scale_input_at(index, latents).to(dtype)
    out = unet(
        model_input,
        timestep,
        encoder_hidden_states=cond.embeds.to(dtype),
        added_cond_kwargs={"text_embeds": cond.pooled.to(dtype), "time_ids": cond.time_ids.to(dtype)},
        return_dict=False,
    )[0]
    return out.float()


# --------------------------------------------------------------------------- noise regularisation
def autocorrelation_loss(noise: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """L_pair of one noise map [1, C, h, w]: squared mean products with a random roll, per channel and pyramid level.

    One shift d ~ U{0, ..., rows/2 - 1} per channel and level (drawn with `generator`, channel by
    channel, finest level first), applied along rows and along columns; levels are 2x2
    average-pooled until the map has at most 8 rows.
    """
    if noise.shape[0] != 1:
        raise ValueError(f"the autocorrelation loss takes one noise map, not a batch of {noise.shape[0]}")
    loss = noise.new_zeros(())
    for channel in range(noise.shape[1]):
        level = noise[:, channel : channel + 1]
        while True:
            shift = int(torch.randint(0, level.shape[-2] // 2, (1,), generator=generator).item())
            loss = loss + (level * torch.roll(level, shifts=shift, dims=-2)).mean() ** 2
            loss = loss + (level * torch.roll(level, shifts=shift, dims=-1)).mean() ** 2
            if level.shape[-2] <= AC_MIN_SIZE:
                break
            level = F.avg_pool2d(level, kernel_size=2)
    return loss


def _patch_statistics(noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (unbiased) variance of each 4x4 patch: two [patches, C] tensors."""
    b, c, h, w = noise.shape
    p = KL_PATCH
    noise = noise[:, :, : h - h % p, : w - w % p]
    patches = noise.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p * p)
    return patches.mean(dim=-1), patches.var(dim=-1)


def patch_kl_loss(noise: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """L_KL (module doc): per 4x4 patch and channel, |2 KL(N(m0, v0) || N(m1, v1))| of the noise
    against the reference, summed. noise, reference [B, C, h, w]."""
    mean, var = _patch_statistics(noise)
    ref_mean, ref_var = _patch_statistics(reference)
    divergence = (
        torch.log((ref_var + KL_EPSILON) / (var + KL_EPSILON)) + (var + (mean - ref_mean) ** 2) / (ref_var + KL_EPSILON) - 1
    )
    return divergence.abs().sum()


def _loss_gradient(loss_fn, noise: torch.Tensor, *args) -> torch.Tensor:
    with torch.enable_grad():
        variable = noise.detach().clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(loss_fn(variable, *args), variable)
    return gradient


def regularize_noise(
    noise: torch.Tensor, reference: torch.Tensor | None, config: ReNoiseConfig, generator: torch.Generator | None
) -> torch.Tensor:
    """Pull a noise prediction towards Gaussian statistics (module doc): `num_reg_steps` rounds of one
    clipped patch-KL gradient step (weight lambda_kl) and `num_ac_rolls` autocorrelation steps
    (weight lambda_ac / num_ac_rolls each). Works on a detached copy; returns a detached tensor."""
    noise = noise.detach()
    for _ in range(config.num_reg_steps):
        if config.lambda_kl > 0:
            if reference is None:
                raise ValueError("the patch-KL regulariser needs the reference prediction")
            gradient = _loss_gradient(patch_kl_loss, noise, reference).clamp(-KL_GRAD_CLIP, KL_GRAD_CLIP)
            noise = noise - config.lambda_kl * gradient
        if config.lambda_ac > 0:
            for _ in range(config.num_ac_rolls):
                gradient = _loss_gradient(autocorrelation_loss, noise, generator) / config.num_ac_rolls
                noise = noise - config.lambda_ac * gradient
    return noise


# --------------------------------------------------------------------------- inversion
@dataclass
class _InversionContext:
    pipe: Any
    scheduler: FixedNoiseEulerAncestralScheduler
    cond: Conditioning
    config: ReNoiseConfig
    generator: torch.Generator
    image_latent: torch.Tensor
    forward_noise: torch.Tensor | None  # None: no patch-KL reference is needed


def _renoise_step(ctx: _InversionContext, z_prev: torch.Tensor, timestep: torch.Tensor, index: int) -> torch.Tensor:
    """One inversion step: z_prev at sigma_{index+1} -> z at sigma_index (equation (4) plus averaging,
    regularisation and noise correction, see the module doc)."""
    config, scheduler = ctx.config, ctx.scheduler
    first = float(timestep) < config.first_step_max_timestep
    iterations = min(config.max_first_step_renoise_steps, config.num_renoise_steps) if first else config.num_renoise_steps
    average_start, average_stop = config.average_first_step_range if first else config.average_step_range

    reference = None
    mean_prediction = None
    estimate = z_prev
    for i in range(iterations + 1):
        if i == 0 and ctx.forward_noise is not None:
            # the regulariser's reference: the prediction at the forward-noised z_0, batched with z_prev
            forward = ctx.image_latent + ctx.forward_noise * scheduler.sigmas[index]
            both = predict_noise(ctx.pipe, scheduler, index, timestep, torch.cat([forward, estimate]), ctx.cond.repeat(2))
            reference, prediction = both.chunk(2)
        else:
            prediction = predict_noise(ctx.pipe, scheduler, index, timestep, estimate, ctx.cond)
        if average_start <= i < average_stop:
            j = i - average_start  # running mean of the predictions in the range (unregularised)
            mean_prediction = prediction.clone() if mean_prediction is None else j * mean_prediction / (j + 1) + prediction / (j + 1)
        if config.regularises and (i >= average_start or (not config.average and i > 0)):
            prediction = regularize_noise(prediction, reference, config, ctx.generator)
        estimate = scheduler.inverse_step_at(index, prediction, z_prev)

    if config.average and mean_prediction is not None:
        if config.regularises:
            mean_prediction = regularize_noise(mean_prediction, reference, config, ctx.generator)
        estimate = scheduler.inverse_step_at(index, mean_prediction, z_prev)

    if config.noise_correction:
        prediction = predict_noise(ctx.pipe, scheduler, index, timestep, estimate, ctx.cond)
        scheduler.correct_noise(
            index, prediction, estimate, z_prev, config.noise_correction_steps, config.noise_correction_step_size
        )
    return estimate


def renoise_invert(
    pipe,
    image,
    prompt: str | Conditioning,
    config: ReNoiseConfig | None = None,
    device: torch.device | str | None = None,
) -> Inversion:
    """Invert a photo with ReNoise on an SDXL(-Turbo) pipeline (module doc); no gradients.

    pipe     a diffusers SDXL pipeline (StableDiffusionXLPipeline or its img2img sibling: only
             its vae, unet, text encoders, tokenizers, image processor and scheduler config are used)
    image    PIL image or [1, 3, H, W] tensor in [0, 1], H and W multiples of 8
    prompt   the scene's prompt ("a photo of a {label}" in SISO), or a `Conditioning` that
             `encode_prompt` made for this image's size
    device   where the UNet runs (default: the UNet's device)

    Returns an `Inversion`: `.latent` [1, 4, H/8, W/8] float32 is the inverted latent and
    `.noises` the corrected fixed noise list that `regenerate` replays.
    """
    config = config or ReNoiseConfig()
    device = torch.device(device) if device is not None else pipe.unet.device
    generator = torch.Generator(device="cpu").manual_seed(config.seed)
    scheduler = fixed_noise_scheduler(pipe, config.num_steps, device)
    timesteps, indices = img2img_timesteps(scheduler, config.strength)
    with torch.no_grad():
        # the RNG order matters (module doc): noise list, VAE sample, forward noise, autocorrelation shifts
        posterior = encode_posterior(pipe, image, device)  # draws nothing
        scheduler.set_noise_list(draw_noises(tuple(posterior.mean.shape), config.num_steps, generator, device))
        image_latent = posterior_latent(pipe.vae, posterior, generator if config.sample_vae else None)
        # drawn even when unused, so that the autocorrelation shifts after it stay the authors' numbers
        forward_noise = draw_noises(tuple(image_latent.shape), 1, generator, device)[0]
        needs_reference = config.regularises and config.lambda_kl > 0
        height, width = image_latent.shape[-2] * pipe.vae_scale_factor, image_latent.shape[-1] * pipe.vae_scale_factor
        cond = prompt if isinstance(prompt, Conditioning) else encode_prompt(pipe, prompt, height, width, device)
        ctx = _InversionContext(pipe, scheduler, cond, config, generator, image_latent, forward_noise if needs_reference else None)
        trajectory = [image_latent]
        for timestep, index in zip(reversed(timesteps), reversed(indices)):
            trajectory.append(_renoise_step(ctx, trajectory[-1], timestep, index))
    return Inversion(
        latent=trajectory[-1], image_latent=image_latent, noises=list(scheduler.noises), timesteps=timesteps,
        indices=indices, trajectory=trajectory, config=config,
    )


# --------------------------------------------------------------------------- regeneration
def regenerate(
    pipe,
    inversion: Inversion,
    prompt: str | Conditioning,
    grad_last_step_only: bool = True,
    output_type: Literal["pt", "latent"] = "pt",
    num_grad_steps: int | None = None,
) -> torch.Tensor:
    """Img2img from the inverted latent with the same fixed-noise scheduler; differentiable.

    Denoises `inversion.latent` through `inversion.timesteps` (749, 499, 249 for SISO) with
    equation (1) of schedulers.py and the corrected noise list, conditioned on `prompt` (in SISO
    the SUBJECT's prompt; guidance 1 = one conditional pass), then decodes with the VAE.

    Gradients follow the caller's grad mode. With `grad_last_step_only` (default) the steps before
    the last run under no_grad, as in the authors' `pipeline_stable_diffusion_xl_img2img_with_grads`
    (`torch.set_grad_enabled(i == num_timesteps - 1)` around each step): the LoRA gradient comes
    through the last UNet pass, its scheduler step and the VAE decode (and through the prompt
    encoding when a text encoder carries a LoRA). Unlike theirs, a caller's no_grad is respected.
    `num_grad_steps` (the last k steps carry gradients, 0 = all) overrides `grad_last_step_only`.
    An edit loop calling this every iteration should pass `prompt` as a `Conditioning` from
    `encode_prompt` (computed once) unless a text encoder is being trained.

    Returns the image [1, 3, H, W] float32 in [0, 1] (`output_type="pt"`) or the final latent
    [1, 4, H/8, W/8] float32 (`"latent"`).
    """
    latent = inversion.latent
    device = latent.device
    scheduler = fixed_noise_scheduler(pipe, inversion.config.num_steps, device)
    scheduler.set_noise_list(inversion.noises)
    height, width = latent.shape[-2] * pipe.vae_scale_factor, latent.shape[-1] * pipe.vae_scale_factor
    cond = prompt if isinstance(prompt, Conditioning) else encode_prompt(pipe, prompt, height, width, device)
    grad_enabled = torch.is_grad_enabled()
    if num_grad_steps is None:
        num_grad_steps = 1 if grad_last_step_only else 0
    with_grad = grad_step_flags(len(inversion.indices), num_grad_steps)
    for timestep, index, step_grad in zip(inversion.timesteps, inversion.indices, with_grad):
        with torch.set_grad_enabled(grad_enabled and step_grad):
            prediction = predict_noise(pipe, scheduler, index, timestep, latent, cond)
            latent = scheduler.step_at(index, prediction, latent)
    if output_type == "latent":
        return latent
    if output_type != "pt":
        raise ValueError(f"output_type must be 'pt' or 'latent', not {output_type!r}")
    return decode_latent(pipe, latent)
