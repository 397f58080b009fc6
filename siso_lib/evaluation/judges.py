"""The scoring networks of the evaluation, loaded once and reused for every run of a sweep.

    DINO   timm ViT, CLS feature [N, D]      DreamBench's judge is DINO ViT-S/16
                                             (`vit_small_patch16_224.dino`, the default)
    CLIP   open_clip image [N, E] and text   default ViT-B-32 with OpenAI's weights
           [M, E] towers
    IR     the SISO retrieval network [N, 64] (features/ir.py; the run's own checkpoint)

Images are PIL images of any size. DINO and CLIP see them through their libraries' own
evaluation transforms (timm `create_transform`, open_clip's preprocess: antialiased resize,
centre crop, normalisation), as published evaluations do; IR through its kornia preprocessing,
the same as during optimisation. Features are computed under `torch.no_grad` in batches of
`batch_size` on `device` (CUDA, XPU, MPS or CPU), in float32.

Names follow the libraries: a timm name or local timm folder for DINO; an open_clip model name
plus pretrained tag (`ViT-B-32` + `openai`), `hf-hub:org/name`, or a local folder holding
`open_clip_config.json` and its weights (open_clip's `local-dir:` layout) for CLIP.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image

from ..errors import SISOInputError, error_summary, setting
from ..io.model_paths import CLIP_FOLDER_LAYOUT, check_clip_name, clip_local_folder
from .defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, DEFAULT_EVAL_DINO

DEFAULT_BATCH_SIZE = 16


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class Judges:
    """Loaded judges; any may be None (its metrics are then skipped). Build with `from_names`."""

    dino: torch.nn.Module | None = None
    dino_transform: object | None = None
    clip: torch.nn.Module | None = None
    clip_transform: object | None = None
    clip_tokenizer: object | None = None
    ir: torch.nn.Module | None = None  # features.ir.IRFeatures
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    batch_size: int = DEFAULT_BATCH_SIZE
    names: dict[str, str] = field(default_factory=dict)  # what was loaded, for metrics.json

    @classmethod
    def from_names(
        cls,
        dino_model_name: str | None = DEFAULT_EVAL_DINO,
        clip_model_name: str | None = DEFAULT_CLIP_MODEL,
        clip_pretrained: str | None = DEFAULT_CLIP_PRETRAINED,
        ir_features_path: str | os.PathLike | None = None,
        device: str | torch.device = "auto",
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> "Judges":
        """Load the named judges (None skips one) onto `device`; SISOInputError on a bad name."""
        from ..devices import pick_device

        device = pick_device(device) if isinstance(device, str) else device
        judges = cls(device=device, batch_size=batch_size)
        if dino_model_name:
            judges.load_dino(dino_model_name)
        if clip_model_name:
            judges.load_clip(clip_model_name, clip_pretrained)
        judges.set_ir(ir_features_path)
        return judges

    def set_ir(self, path: str | os.PathLike | None) -> None:
        """Judge IR with this checkpoint (loaded unless it already is); None: no IR score."""
        if path is None:
            self.ir = None
            self.names.pop("ir", None)
            return
        path = str(Path(path).absolute())
        if self.ir is not None and self.names.get("ir") == path:
            return
        from ..features.ir import IRFeatures

        self.ir = IRFeatures.from_checkpoint(path).to(self.device)
        self.names["ir"] = path

    def load_dino(self, name: str) -> None:
        import timm

        from ..features.dino import create_dino_network

        network = create_dino_network(name)
        self.dino = network.to(self.device).eval().requires_grad_(False)
        self.dino_transform = timm.data.create_transform(**timm.data.resolve_model_data_config(network), is_training=False)
        self.names["dino"] = name

    def load_clip(self, name: str, pretrained: str | None) -> None:
        import open_clip

        check_clip_name(name)
        folder = clip_local_folder(name)
        library_name = f"local-dir:{folder.absolute()}" if folder is not None else name
        tag = None if folder is not None or name.startswith("hf-hub:") else pretrained
        try:
            # OpenAI's CLIP weights were trained with QuickGELU; open_clip's plain "ViT-B-32" config
            # uses GELU and only warns, which would give other features than the published model
            quick_gelu = bool(tag and (open_clip.get_pretrained_cfg(name, tag) or {}).get("quick_gelu"))
            model, _, transform = open_clip.create_model_and_transforms(library_name, pretrained=tag, force_quick_gelu=quick_gelu)
            tokenizer = open_clip.get_tokenizer(library_name)
        except Exception as error:  # open_clip raises RuntimeError, OSError, ValueError... for names and files
            fix = (
                f"expected {CLIP_FOLDER_LAYOUT}" if folder is not None
                else f"download it once with network access (it goes to the hub cache) or give a local folder as {setting('clip_model_name')}"
            )
            raise SISOInputError(
                f"CLIP model {name!r} ({tag or 'no pretrained tag'}) could not be loaded "
                f"({type(error).__name__}: {error_summary(error, 160)}): {fix}"
            ) from error
        self.clip = model.to(self.device).eval().requires_grad_(False)
        self.clip_transform, self.clip_tokenizer = transform, tokenizer
        self.names["clip"] = name + (f" ({tag})" if tag else "")

    @torch.no_grad()
    def image_features(self, images: Sequence[Image.Image], which: Sequence[str] = ("dino", "clip", "ir")) -> dict[str, torch.Tensor]:
        """{"dino", "clip", "ir"} -> [N, D] float32 features on the CPU, for the judges loaded and asked for."""
        features: dict[str, list[torch.Tensor]] = {}
        for batch in _batches(list(images), self.batch_size):
            rgb = [image.convert("RGB") for image in batch]
            if self.dino is not None and "dino" in which:
                pixels = torch.stack([self.dino_transform(image) for image in rgb]).to(self.device)
                features.setdefault("dino", []).append(self.dino(pixels).float().cpu())
            if self.clip is not None and "clip" in which:
                pixels = torch.stack([self.clip_transform(image) for image in rgb]).to(self.device)
                features.setdefault("clip", []).append(self.clip.encode_image(pixels).float().cpu())
            if self.ir is not None and "ir" in which:
                features.setdefault("ir", []).append(self._ir_features(rgb))
        return {name: torch.cat(parts) for name, parts in features.items()}

    def _ir_features(self, images: list[Image.Image]) -> torch.Tensor:
        from ..io.images import pil_to_tensor

        # IR resizes and crops each tensor itself; photos of different sizes go one by one
        return torch.cat([self.ir(pil_to_tensor(image).to(self.device)).float().cpu() for image in images])

    @torch.no_grad()
    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """CLIP text features [M, E] (float32, CPU) of the prompts."""
        if self.clip is None:
            raise RuntimeError("no CLIP judge is loaded")
        parts = [self.clip.encode_text(self.clip_tokenizer(list(batch)).to(self.device)).float().cpu() for batch in _batches(list(texts), self.batch_size)]
        return torch.cat(parts)
