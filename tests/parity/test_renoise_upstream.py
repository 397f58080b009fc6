"""Our ReNoise inversion and regeneration equal the authors' (SISO editing, vendored ReNoise) to TOLERANCES["renoise"].

Runs only when SISO_UPSTREAM_DIR points at a checkout of github.com/yairshp/SISO (their code is
never committed here):

    SISO_UPSTREAM_DIR=/path/to/SISO .venv/bin/python -m pytest -q -s tests/parity/test_renoise_upstream.py

Their unmodified code runs in a subprocess through `upstream_renoise_harness.py` (CPU, one
thread; see its docstring for the environment patches: CUDA -> CPU, the noise list sized from the
test image instead of 512 px, a transformers constant their vendored diffusers 0.29 imports); ours
runs here on the same tiny SDXL folder and image with `ReNoiseConfig()` (SISO's settings: seed
7865, 4 steps, strength 0.75, 9 renoise iterations, averaging, regularisation, noise correction).

Compared: the inverted latent, every latent of the inversion trajectory (z_0 included), the noise
list after noise correction, and the regenerated latent and image (img2img from the inverted
latent, 3 of 4 steps, guidance 1). Exact agreement needs the same random numbers in the same
order: ours draws from one CPU generator, as theirs does, the noise list, the VAE posterior
sample, the forward noise and the autocorrelation shifts, in that order.
Measured (torch 2.14.1, diffusers 0.42.1, CPU, one thread per side): max |diff| = 0 for every
tensor (bit-identical), 64x64 and 64 wide x 48 high. Both sides therefore run on ONE CPU thread:
with ours on two threads the differences are up to 1.1e-5 on the inverted latent and 2.9e-5 on the
image, exactly what our own inversion differs by between one and two threads (rounding in the
UNet's and VAE's reductions, amplified by the renoising iterations; z_0 already differs by 9e-7).
About 35 s on 2 shared CPU cores (two upstream subprocesses).
"""

from __future__ import annotations

from contextlib import contextmanager
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from siso_lib.editing.renoise import ReNoiseConfig, regenerate, renoise_invert
from upstream_checkout import SKIP_WITHOUT_CHECKOUT, TOLERANCES, checkout


HARNESS = Path(__file__).resolve().parent / "upstream_renoise_harness.py"
TOLERANCE = TOLERANCES["renoise"]
PROMPT = "a photo of a cat"

pytestmark = SKIP_WITHOUT_CHECKOUT


@pytest.fixture(scope="module")
def upstream_dir() -> Path:
    return checkout("utils/renoise_inversion_utils.py")


def scene(subject_path: str, width: int, height: int, path: Path) -> Path:
    Image.open(subject_path).convert("RGB").resize((width, height), Image.BICUBIC).save(path)
    return path


def run_theirs(upstream_dir: Path, sdxl: str, image: Path, out: Path) -> dict:
    command = [sys.executable, str(HARNESS), "--upstream_dir", str(upstream_dir), "--sdxl", sdxl,
               "--image", str(image), "--prompt", PROMPT, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the upstream harness failed:\n{done.stderr[-4000:]}"
    return torch.load(out)


@contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def max_diff(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return (ours.float() - theirs.float()).abs().max().item()


@pytest.mark.parametrize("width, height", [(64, 64), (64, 48)], ids=["64x64", "64wx48h"])
def test_inversion_and_regeneration_match_the_authors(upstream_dir, tiny_assets, subject_path, tmp_path, width, height):
    from diffusers import StableDiffusionXLPipeline

    image_path = scene(subject_path, width, height, tmp_path / "scene.png")
    theirs = run_theirs(upstream_dir, tiny_assets["sdxl"], image_path, tmp_path / "upstream.pt")

    pipe = StableDiffusionXLPipeline.from_pretrained(tiny_assets["sdxl"])
    pipe.set_progress_bar_config(disable=True)
    with one_thread():  # as the harness: CPU kernels sum in another order on more threads
        inversion = renoise_invert(pipe, Image.open(image_path).convert("RGB"), PROMPT, ReNoiseConfig())
        with torch.no_grad():
            image = regenerate(pipe, inversion, PROMPT)
            latent = regenerate(pipe, inversion, PROMPT, output_type="latent")

    diffs = {
        "inverted latent": max_diff(inversion.latent, theirs["latent"]),
        "trajectory": max(max_diff(a, b) for a, b in zip(inversion.trajectory, theirs["trajectory"], strict=True)),
        "corrected noise": max(max_diff(a, b) for a, b in zip(inversion.noises, theirs["noises"], strict=True)),
        "regenerated latent": max_diff(latent, theirs["regenerated_latent"]),
        "regenerated image": max_diff(image, theirs["image"]),
    }
    print(f"\n{width}x{height} max |ours - theirs|: " + ", ".join(f"{name} {value:.2e}" for name, value in diffs.items()))
    # a sanity check that the comparison can fail: noise correction really changed the noise
    moved = max(max_diff(a, b) for a, b in zip(theirs["noises"], _seeded_noises(theirs["noises"])))
    assert moved > 1e-2
    assert all(value <= TOLERANCE for value in diffs.values()), diffs


def _seeded_noises(like: list[torch.Tensor]) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(ReNoiseConfig().seed)
    return [torch.randn(tensor.shape, generator=generator) for tensor in like]
