"""Write a rank-4 SISO LoRA for the FULL-SIZE FLUX.1-schnell architecture, as siso-generate writes it.

    python tests/comfyui/make_full_flux_lora.py DIR

The pipeline is built on the meta device (siso_lib.offline.tiny_models.build_flux_pipeline("full"): no
weights, seconds); the LoRA adapters are attached by siso_lib's own FluxGenerator.add_lora with the
FLUX recipe's targets (CLIP-L included), their peft state-dict names are read as a run's snapshot
reads them, filled with random values (B is not zero, as after some SISO steps), and written by
siso_lib.io.lora.save_lora_files(family="flux"): DIR/pytorch_lora_weights.safetensors. Also
DIR/transformer_shapes.json (the diffusers transformer's key -> shape, from which the ComfyUI
side builds its model on the meta device) and DIR/counts.json. About 30 s, < 1 GB of RAM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from peft.utils import get_peft_model_state_dict  # noqa: E402

from siso_lib.config import FAMILY_RECIPES  # noqa: E402
from siso_lib.generators.flux import FluxGenerator  # noqa: E402
from siso_lib.io.lora import save_lora_files  # noqa: E402
from siso_lib.offline.tiny_models import build_flux_pipeline  # noqa: E402

RANK = 4


def main(directory: str) -> int:
    out = Path(directory)
    if (out / "counts.json").is_file():
        print(f"{out}: already made")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    pipe = build_flux_pipeline("full", device="meta")
    shapes = {key: list(value.shape) for key, value in pipe.transformer.state_dict().items()}
    (out / "transformer_shapes.json").write_text(json.dumps(shapes) + "\n")
    recipe = FAMILY_RECIPES["flux"]
    targets = tuple(recipe["lora_layers"].split(","))
    FluxGenerator.add_lora(pipe, rank=RANK, alpha=float(RANK), seed=42, train_text_encoder=recipe["train_text_encoder"], targets=targets)
    generator = torch.Generator().manual_seed(0)
    best = {}
    for part, module in FluxGenerator.lora_modules(pipe, recipe["train_text_encoder"]).items():
        best[part] = {
            key: torch.randn(tuple(value.shape), generator=generator) * (0.02 if ".lora_A." in key else 1e-3)
            for key, value in get_peft_model_state_dict(module).items()
        }
    paths = save_lora_files(out, best, rank=RANK, alpha=float(RANK), run_metadata={"model_family": "flux"}, family="flux",
                            denoiser_targets=targets)
    assert paths["kohya"] is None, paths
    counts = {
        "transformer_modules": sum(key.endswith(".lora_A.weight") for key in best["transformer"]),
        "clip_modules": sum(key.endswith(".lora_A.weight") for key in best.get("text_encoder", {})),
        "tensors": sum(len(state) for state in best.values()),
        "lora_parameters": sum(value.numel() for state in best.values() for value in state.values()),
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "counts.json").write_text(json.dumps(counts, indent=2) + "\n")
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
