"""What a run leaves on disk, all written atomically (run_record.py reads it back):

    weights_dir/pytorch_lora_weights.safetensors   diffusers LoRA (best state)
    weights_dir/siso_lora_kohya.safetensors        the same LoRA in Kohya/ComfyUI keys
    weights_dir/README.md                          the model card (model_card.py): the Hub's page
                                                   for the folder as it is
    output_dir/result.png                          the best generated image
    output_dir/loss_curve.png                      total / DINO / IR per iteration, best marked
    output_dir/run.json                            every parameter, per-iteration losses, best
                                                   iteration, why it stopped, device, versions
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import __version__
from .atomic import atomic_path, save_image, write_json
from ..config import SISOConfig
from .lora import save_lora_files
from .model_card import write_model_card
from ..optimizer import SISOResult, describe_stop
from .plots import loss_figure
from .run_record import LOSS_PLOT, RESULT_IMAGE, RUN_JSON, now_iso

VERSIONED_PACKAGES = (
    "torch", "diffusers", "transformers", "peft", "accelerate", "timm", "open_clip_torch", "kornia", "safetensors",
    "torchao",
)

def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "siso_lib": __version__}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions

def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return str(device)

def lora_metadata(config: SISOConfig, result: SISOResult, subject_sha256: str | None) -> dict[str, object]:
    """The run's description stored inside both LoRA files."""
    return {
        "base_model": config.pretrained_model_name_or_path,
        "model_family": config.family,
        "prompt": config.prompt,
        "seed": config.seed,
        "resolution": config.resolution,
        "num_inference_steps": config.num_inference_steps,
        "guidance_scale": config.guidance_scale,
        "rank": config.rank,
        "lora_alpha": config.effective_lora_alpha,
        "train_text_encoder": config.train_text_encoder,
        "steps_run": result.steps_run,
        "best_step": result.best_step,
        "final_losses": result.best_losses,
        "stop_reason": result.stop_reason,
        "version": __version__,
        "subject_image_sha256": subject_sha256 or "",
    }

@dataclass
class RunArtifacts:
    output_dir: str
    weights_dir: str
    lora_path: str | None
    kohya_path: str | None
    result_image: str | None
    loss_plot: str | None
    run_json: str
    model_card: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return dict(self.__dict__)

    def labelled(self) -> list[tuple[str, str]]:
        """(label, path) of each file that was written, in the order people look for them."""
        labels = (
            ("LoRA (diffusers)", self.lora_path),
            ("LoRA (ComfyUI/Kohya)", self.kohya_path),
            ("best image", self.result_image),
            ("loss plot", self.loss_plot),
            ("model card", self.model_card),
            ("run summary", self.run_json),
        )
        return [(label, path) for label, path in labels if path]

def run_record(
    config: SISOConfig,
    result: SISOResult,
    artifacts: RunArtifacts,
    device: torch.device,
    settings: dict,
    subject: dict | None,
    extra: dict | None = None,
) -> dict:
    status = "completed" if result.completed else ("interrupted" if result.stop_reason == "interrupted" else "failed")
    return {
        "status": status,
        "stop_reason": result.stop_reason,
        "stop_description": describe_stop(result.stop_reason, config, result),
        "error": result.error,
        "steps_run": result.steps_run,
        "best_step": result.best_step,
        "best_losses": result.best_losses,
        "elapsed_seconds": round(result.elapsed_seconds, 3),
        "finished_at": now_iso(),
        "model_family": config.family,  # the family that ran ("auto" is resolved here)
        "parameters": config.to_dict(),
        "runtime": {"device": device_description(device), **settings},
        "subject_image": subject,
        "history": result.history,
        "artifacts": artifacts.as_dict(),
        "versions": package_versions(),
        "command": sys.argv,
        "working_directory": os.getcwd(),
        **(extra or {}),
    }

def save_run(
    result: SISOResult,
    config: SISOConfig,
    output_dir: str | Path,
    weights_dir: str | Path | None,
    device: torch.device,
    settings: dict,
    subject: dict | None = None,
    extra: dict | None = None,
) -> RunArtifacts:
    """Write the LoRA files, best image, loss plot and run.json; return their paths."""
    output_dir = Path(output_dir).absolute()
    weights_dir = Path(weights_dir).absolute() if weights_dir else output_dir
    output_dir.mkdir(parents=True, exist_ok=True)
    artifacts = RunArtifacts(str(output_dir), str(weights_dir), None, None, None, None, str(output_dir / RUN_JSON))
    if result.best_lora:
        paths = save_lora_files(
            weights_dir,
            result.best_lora,
            config.rank,
            config.effective_lora_alpha,
            lora_metadata(config, result, (subject or {}).get("sha256")),
            family=config.family,
            denoiser_targets=config.lora_targets,
        )
        artifacts.lora_path, artifacts.kohya_path = paths["diffusers"], paths["kohya"]
    if result.best_image is not None:
        artifacts.result_image = str(output_dir / RESULT_IMAGE)
        save_image(artifacts.result_image, result.best_pil)
    if result.history:
        artifacts.loss_plot = str(output_dir / LOSS_PLOT)
        figure = loss_figure(result.history, result.best_step, title=f"SISO: {config.prompt[:60]}")

        with atomic_path(artifacts.loss_plot) as temporary:
            figure.savefig(temporary, format="png")
    if artifacts.lora_path:
        task = (extra or {}).get("task", "generate")
        artifacts.model_card = write_model_card(weights_dir, config, result, task, artifacts.result_image)
    write_json(artifacts.run_json, run_record(config, result, artifacts, device, settings, subject, extra))
    return artifacts
