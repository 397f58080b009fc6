"""Reading a run folder back: `RunRecord` (its run.json) and `LoraInfo` (its LoRA file).

One reader for every program that looks at finished runs (siso-eval, the sweeps' results.csv,
notebooks 02 and 03, the ComfyUI nodes through siso-eval); the writer is run_folder.save_run.
Nothing here imports torch: a folder is checked in milliseconds.

    record = RunRecord.read("outputs/runs/<run>")    # SISOInputError if there is no readable run.json
    record.status, record.model_family, record.best_losses, record.history, record.path_of("lora_path")
    info = lora_info("outputs/runs/<run>")            # the LoRA's stored description + the record
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import MODEL_FAMILIES, SISOConfig
from ..errors import SISOInputError
from .atomic import write_json
from .lora import read_metadata, resolve_lora_path

RUN_JSON = "run.json"
RESULT_IMAGE = "result.png"
LOSS_PLOT = "loss_curve.png"


def now_iso() -> str:
    """The local time with its offset, to the second: how run files record when things happened."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass
class RunRecord:
    """run.json of one run folder as read back; `data` is the whole JSON object."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def read(cls, folder_or_file: str | os.PathLike) -> "RunRecord":
        """The run.json of a run folder (or the file itself); SISOInputError if missing or unreadable."""
        path = Path(folder_or_file)
        path = path / RUN_JSON if path.is_dir() else path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SISOInputError(f"{str(path)!r} does not exist: give a folder siso-generate, siso-edit or a sweep wrote") from None
        except (OSError, ValueError) as error:
            raise SISOInputError(f"{str(path)!r} is not a readable run record ({error}): the run was not saved completely; run it again") from None
        if not isinstance(data, dict):
            raise SISOInputError(f"{str(path)!r} is not a run record (it holds no JSON object)")
        return cls(path, data)

    @classmethod
    def find(cls, folder_or_file: str | os.PathLike) -> "RunRecord | None":
        """`read`, or None where there is no readable run.json (a run still going, or that failed early)."""
        try:
            return cls.read(folder_or_file)
        except SISOInputError:
            return None

    def write(self) -> None:
        """Write `data` back, atomically (e.g. after adding an "evaluation" entry)."""
        write_json(self.path, self.data)

    @property
    def folder(self) -> Path:
        return self.path.parent

    # the entries run_folder.run_record writes
    @property
    def status(self) -> str | None:
        """"completed", "interrupted" or "failed"."""
        return self.data.get("status")

    @property
    def error(self) -> str | None:
        return self.data.get("error")

    @property
    def task(self) -> str:
        """"generate", or "edit" for a siso-edit run."""
        return self.data.get("task") or "generate"

    @property
    def parameters(self) -> dict[str, Any]:
        return self.data.get("parameters") or {}

    @property
    def model_family(self) -> str | None:
        """The family that ran; records older than that entry: the one the parameters name, if any."""
        family = self.data.get("model_family") or self.parameters.get("model_family")
        return family if family in MODEL_FAMILIES else None

    @property
    def best_losses(self) -> dict[str, float]:
        return self.data.get("best_losses") or {}

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.data.get("history") or []

    @property
    def artifacts(self) -> dict[str, Any]:
        return self.data.get("artifacts") or {}

    @property
    def runtime(self) -> dict[str, Any]:
        return self.data.get("runtime") or {}

    @property
    def subject_image_path(self) -> str | None:
        """The subject photo the run read (absolute), as recorded."""
        return (self.data.get("subject_image") or {}).get("path") or self.parameters.get("subject_image_path")

    @property
    def evaluation(self) -> dict[str, Any] | None:
        """The "evaluation" entry (siso-eval or `siso-sweep --eval` wrote it), if it has scores."""
        entry = self.data.get("evaluation")
        return entry if isinstance(entry, dict) and entry.get("summary") else None

    def path_of(self, artifact: str) -> str | None:
        """A written file by its artifacts key ("lora_path", "result_image", ...), or None."""
        return self.artifacts.get(artifact)

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _json_or_text(value: str):
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


@dataclass
class LoraInfo:
    """A LoRA file, what it says about itself (its `siso.*` metadata), and the run beside it."""

    path: Path
    metadata: dict[str, object] = field(default_factory=dict)  # the siso.* entries, decoded
    record: RunRecord | None = None  # run.json beside it, if readable

    @property
    def run(self) -> dict:
        """run.json's contents ({} without one)."""
        return self.record.data if self.record is not None else {}

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def model_family(self) -> str:
        """The family the LoRA was optimised on; a file without it predates FLUX and Sana: SDXL."""
        family = self.metadata.get("model_family")
        return family if family in MODEL_FAMILIES else "sdxl"

    @property
    def recipe(self) -> SISOConfig:
        """SISOConfig with the family's recipe (the library's defaults for this LoRA)."""
        return SISOConfig(model_family=self.model_family)

    @property
    def base_model(self) -> str:
        return str(self.metadata.get("base_model") or self.recipe.pretrained_model_name_or_path)

    def render_settings(self, num_inference_steps: int | None = None, guidance_scale: float | None = None) -> tuple[int, float]:
        """(steps, guidance) to render with: the values given, else the family's recipe."""
        recipe = self.recipe
        return (num_inference_steps or recipe.num_inference_steps,
                recipe.guidance_scale if guidance_scale is None else float(guidance_scale))

    @property
    def prompt(self) -> str:
        return str(self.metadata.get("prompt") or SISOConfig().prompt)

    @property
    def resolution(self) -> int:
        return int(self.metadata.get("resolution") or SISOConfig().resolution)

    @property
    def subject_image(self) -> Path | None:
        path = self.record.subject_image_path if self.record is not None else None
        return Path(path) if path and Path(path).is_file() else None

    @property
    def result_image(self) -> Path | None:
        path = self.folder / RESULT_IMAGE
        return path if path.is_file() else None

    def to_markdown(self) -> str:
        keys = ("model_family", "base_model", "prompt", "seed", "resolution", "num_inference_steps", "guidance_scale", "rank",
                "lora_alpha", "train_text_encoder", "steps_run", "best_step", "final_losses", "stop_reason")
        rows = "\n".join(f"| `{k}` | `{self.metadata[k]}` |" for k in keys if k in self.metadata)
        if "model_family" not in self.metadata:
            rows = f"| `model_family` | `{self.model_family}` (not stored: an SDXL LoRA) |\n" + rows
        return f"LoRA: `{self.path}`\n\n| stored in the LoRA file | value |\n| --- | --- |\n{rows}"

    def _repr_markdown_(self) -> str:
        return self.to_markdown()


def lora_info(path: str | os.PathLike) -> LoraInfo:
    """The LoRA at `path` (a .safetensors file or a run folder) with its metadata and run record."""
    path = resolve_lora_path(path)
    raw = read_metadata(path)
    metadata = {key[len("siso."):]: _json_or_text(value) for key, value in raw.items() if key.startswith("siso.")}
    return LoraInfo(path, metadata, RunRecord.find(path.parent / RUN_JSON))
