"""Run the authors' UNMODIFIED ReNoise inversion and img2img regeneration (SISO editing) on the CPU.

Imports, from a checkout of github.com/yairshp/SISO, `utils/renoise_inversion_utils.py` (which
imports their vendored ReNoise pipeline `SDXLDDIMPipeline`, their `MyEulerAncestralDiscreteScheduler`
and their vendored diffusers 0.29) and `local_pipelines/pipeline_stable_diffusion_xl_img2img_with_grads.py`,
then does what `siso_editing_sdxl.py` does before its training loop:

    pipe_inversion, pipe_inference = get_renoise_inversion_pipes(vae, te1, te2, unet, model_name=<folder>)
    cfg    = get_inversion_config(0.75)                         # SDXL-Turbo: Euler, noise correction, lambda_ac 20
    latent = invert(pipe_inversion, pipe_inference, image, prompt, cfg)
    image  = pipe_inference(prompt, num_inference_steps=4, negative_prompt=prompt, image=latent, strength=0.75,
                            denoising_start=0.25, guidance_scale=1.0, output_type="pt")     # generate_image()

and saves (torch.save) the inverted latent, the trajectory their pipeline returns, the (corrected)
noise list and the regenerated image and latent. Only the environment is changed:

1. CUDA -> CPU (`_patch_cuda_to_cpu` of tests/parity/upstream_harness.py): their `create_noise_list`
   draws the noise on the CPU generator and moves it to a hard-coded `cuda:0`; that move lands on the CPU.
2. `transformers.utils.FLAX_WEIGHTS_NAME` is defined if missing (transformers 5 dropped it; their
   vendored diffusers 0.29 imports it and never uses it on this path).
3. `model_type_to_size`, as `renoise_inversion_utils` sees it, returns the test image's size instead
   of SDXL-Turbo's 512 x 512: `create_noise_list` sizes the noise from it, and the tiny test runs at 64 px.
4. `SDXLDDIMPipeline.__call__` is wrapped to keep its second output (the per-step latents that
   `invert` discards); what it computes is unchanged.

Usage: python tests/parity/upstream_renoise_harness.py --upstream_dir DIR --sdxl TINY_SDXL_DIR \\
    --image IMAGE.png --prompt "a photo of a cat" --out upstream.pt

Nothing of the authors' code is copied here; their checkout is only imported at run time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PARITY_HARNESS = HERE / "upstream_harness.py"
STRENGTH = 0.75


def _generation_harness():
    """tests/parity/upstream_harness.py, for its CUDA -> CPU patch (imported by path: tests/ is no package)."""
    spec = importlib.util.spec_from_file_location("siso_parity_upstream_harness", PARITY_HARNESS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _define_flax_weights_name() -> None:
    import transformers.utils

    if not hasattr(transformers.utils, "FLAX_WEIGHTS_NAME"):
        transformers.utils.FLAX_WEIGHTS_NAME = "flax_model.msgpack"


def _record_trajectory(pipeline_class, sink: list) -> None:
    original = pipeline_class.__call__

    def __call__(self, *args, **kwargs):
        output = original(self, *args, **kwargs)
        sink[:] = [latent.detach().clone() for latent in output[1]]
        return output

    pipeline_class.__call__ = __call__


def run_upstream(upstream_dir: str | os.PathLike, sdxl_dir: str, image_path: str, prompt: str, threads: int = 1) -> dict:
    """Their inversion + regeneration on the CPU (module doc); returns the tensors to compare."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from PIL import Image

    torch.set_num_threads(threads)
    _generation_harness()._patch_cuda_to_cpu()
    _define_flax_weights_name()
    sys.path.insert(0, str(Path(upstream_dir).resolve()))
    renoise_utils = importlib.import_module("utils.renoise_inversion_utils")
    image = Image.open(image_path).convert("RGB")
    renoise_utils.model_type_to_size = lambda model_type: (image.height, image.width)
    trajectory: list = []
    _record_trajectory(renoise_utils.SDXLDDIMPipeline, trajectory)

    vae = AutoencoderKL.from_pretrained(sdxl_dir, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(sdxl_dir, subfolder="unet")
    pipe_inversion, pipe_inference = renoise_utils.get_renoise_inversion_pipes(
        vae, None, None, unet, model_name=sdxl_dir, device="cpu"
    )
    pipe_inference.set_progress_bar_config(disable=True)
    pipe_inversion.set_progress_bar_config(disable=True)
    cfg = renoise_utils.get_inversion_config(STRENGTH)
    latent = renoise_utils.invert(pipe_inversion, pipe_inference, image, prompt, cfg)
    regeneration = dict(
        prompt=prompt, num_inference_steps=cfg.num_inference_steps, negative_prompt=prompt, image=latent,
        strength=cfg.inversion_max_step, denoising_start=1.0 - cfg.inversion_max_step, guidance_scale=1.0,
    )
    with torch.no_grad():
        regenerated = pipe_inference(**regeneration, output_type="pt").images
        regenerated_latent = pipe_inference(**regeneration, output_type="latent").images
    return {
        "latent": latent.detach().clone(),
        "trajectory": trajectory,
        "noises": [noise.detach().clone() for noise in pipe_inference.scheduler.noise_list],
        "image": regenerated.detach().clone(),
        "regenerated_latent": regenerated_latent.detach().clone(),
        "config": {key: repr(value) for key, value in vars(cfg).items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream_dir", default=os.environ.get("SISO_UPSTREAM_DIR"), required="SISO_UPSTREAM_DIR" not in os.environ)
    parser.add_argument("--sdxl", required=True, help="a (tiny) SDXL pipeline folder in diffusers layout")
    parser.add_argument("--image", required=True, help="the scene photo, already at the working size")
    parser.add_argument("--prompt", default="a photo of a cat")
    parser.add_argument("--out", required=True, help="torch.save file for the tensors")
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args(argv)
    import torch

    result = run_upstream(options.upstream_dir, options.sdxl, options.image, options.prompt, options.threads)
    torch.save(result, options.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
