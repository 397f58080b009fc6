"""What the nodes take from ComfyUI itself: its folders, console, UI messages, progress bar, Cancel,
model unloading.

ComfyUI's modules are imported lazily and each use falls back to doing nothing (or to a plain
folder) without them, so the nodes also import and run in a plain Python for tests and tools.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid

from .siso import defaults, folders, images
from .siso.child import Hooks
from .siso.progress import format_progress

CONSOLE_PREFIX = "[SISO]"
logger = logging.getLogger(__name__)


class SISOCancelled(Exception):
    """A cancelled run outside ComfyUI (inside, ComfyUI's InterruptProcessingException is raised)."""


def module(name: str):
    """ComfyUI's module `name` (e.g. "comfy.utils"), or None outside ComfyUI."""
    try:
        return __import__(name, fromlist=["_"])
    except Exception:  # noqa: BLE001 - not inside ComfyUI (tests, tools)
        return None


def folder(kind: str) -> list[str]:
    """ComfyUI's folders of `kind` ("loras", "diffusers", ...); [] outside ComfyUI."""
    folder_paths = module("folder_paths")
    if folder_paths is None:
        return []
    try:
        return list(folder_paths.get_folder_paths(kind))
    except Exception:  # noqa: BLE001 - an unknown folder kind
        return []


def loras_root() -> str:
    """ComfyUI's first models/loras folder (SISO_LORAS_DIR overrides; ./loras outside ComfyUI)."""
    if os.environ.get("SISO_LORAS_DIR"):
        return os.environ["SISO_LORAS_DIR"]
    found = folder("loras")
    return found[0] if found else os.path.abspath("loras")


def loras_folders() -> list[str]:
    """Every folder ComfyUI's LoraLoader lists (SISO_LORAS_DIR alone when set)."""
    if os.environ.get("SISO_LORAS_DIR"):
        return [os.environ["SISO_LORAS_DIR"]]
    return folder("loras") or [loras_root()]


def runs_root() -> str:
    """Where a run's files other than the LoRA ComfyUI loads go: ComfyUI's output/siso (SISO_RUNS_DIR overrides)."""
    if os.environ.get("SISO_RUNS_DIR"):
        return os.environ["SISO_RUNS_DIR"]
    folder_paths = module("folder_paths")
    try:
        if folder_paths is not None:
            return os.path.join(folder_paths.get_output_directory(), folders.RUNS_SUBFOLDER)
    except Exception:  # noqa: BLE001
        pass
    return folders.default_runs_root(loras_root())


def search_dirs() -> dict[str, list[str]]:
    """Where relative model paths are looked up: ComfyUI's models/siso, models/diffusers, ..."""
    folder_paths = module("folder_paths")
    models = [getattr(folder_paths, "models_dir", "")] if folder_paths is not None else []
    siso = [os.path.join(m, "siso") for m in models if m]
    return {"ir": siso + models, "base_model": folder("diffusers") + folder("checkpoints") + siso, "dino": siso}


HUB_OR_FOLDER = "hub id or diffusers folder (base_model_path)"  # the pick-list's first entry: type it in base_model_path
MODEL_FOLDERS = ("checkpoints", "diffusion_models", "diffusers")  # ComfyUI's model folders the base model is picked from


def base_model_choices() -> list[str]:
    """The base_model pick-list: HUB_OR_FOLDER, then '<folder>/<name>' for each .safetensors file in ComfyUI's
    checkpoints and diffusion_models folders and each diffusers folder (model_index.json) in models/diffusers."""
    choices = [HUB_OR_FOLDER]
    folder_paths = module("folder_paths")
    if folder_paths is None:
        return choices
    for kind in MODEL_FOLDERS[:2]:
        try:
            names = folder_paths.get_filename_list(kind)
        except Exception:  # noqa: BLE001 - an older ComfyUI without this folder kind
            names = []
        choices += [f"{kind}/{name}" for name in names if name.lower().endswith((".safetensors", ".sft"))]
    for root in folder("diffusers"):
        for current, _, files in sorted(os.walk(root, followlinks=True)):
            if "model_index.json" in files:
                choices.append("diffusers/" + os.path.relpath(current, root).replace(os.sep, "/"))
    return choices


def resolve_base_model(choice: str, typed: str) -> str:
    """The base model a run uses: `typed` (base_model_path) for HUB_OR_FOLDER, else the picked file or folder's path."""
    if not choice or choice == HUB_OR_FOLDER:
        return typed
    kind, _, name = choice.partition("/")
    folder_paths = module("folder_paths")
    if folder_paths is not None and kind in MODEL_FOLDERS[:2]:
        try:
            return folder_paths.get_full_path(kind, name) or choice
        except Exception:  # noqa: BLE001
            return choice
    for root in folder(kind):
        if os.path.isdir(os.path.join(root, name)):
            return os.path.join(root, name)
    return choice


def child_environment() -> dict[str, str]:
    """What the SISO process gets from ComfyUI besides: its T5 tokenizer (a FLUX.1 single-file checkpoint has none)."""
    comfy = module("comfy")
    for root in list(getattr(comfy, "__path__", None) or []):
        found = os.path.join(root, "text_encoders", "t5_tokenizer")
        if os.path.isfile(os.path.join(found, "tokenizer.json")):
            return {"SISO_T5_TOKENIZER": found}
    return {}


def comfy_families() -> tuple[str, ...] | None:
    """The model families this ComfyUI has a model class for (comfy.model_base), or None outside ComfyUI."""
    model_base = module("comfy.model_base")
    if model_base is None:
        return None
    return tuple(family for family, name in defaults.COMFY_MODEL_CLASSES.items() if hasattr(model_base, name))


def console(text: str) -> None:
    for line in str(text).splitlines() or [""]:
        print(f"{CONSOLE_PREFIX} {line}", flush=True)


def server():
    """ComfyUI's PromptServer.instance, or None."""
    return getattr(getattr(module("server"), "PromptServer", None), "instance", None)


def send_to_ui(event: str, data: dict) -> None:
    instance = server()
    if instance is None:
        return
    try:
        instance.send_sync(event, data, getattr(instance, "client_id", None))
    except Exception:  # noqa: BLE001 - the UI is optional
        pass


def blocked(message: str | None, fallback):
    """ExecutionBlocker(message) inside ComfyUI (downstream nodes do not run), else `fallback`."""
    graph = module("comfy_execution.graph")
    blocker = getattr(graph, "ExecutionBlocker", None) if graph is not None else None
    return blocker(message) if blocker is not None else fallback


def save_preview(image_path: str, node_id: str | None) -> list[dict]:
    """Copy an image into ComfyUI's temp folder and return the 'images' UI entry ([] outside ComfyUI)."""
    folder_paths = module("folder_paths")
    if folder_paths is None or not image_path:
        return []
    try:
        target = os.path.join(folder_paths.get_temp_directory(), "siso")
        os.makedirs(target, exist_ok=True)
        name = f"siso_best_{node_id or 'node'}_{uuid.uuid4().hex[:8]}.png"
        shutil.copyfile(image_path, os.path.join(target, name))
        return [{"filename": name, "subfolder": "siso", "type": "temp"}]
    except OSError:
        return []


NO_IMAGE_HEADLINES = {"Idle": "SISO: not run (execute is False)", "Cancelled": "SISO: cancelled, no image",
                      "Running": "SISO: running ..."}


def no_image(status: str):
    """The IMAGE output of a run that has no picture: clearly labelled as none (never a black square that
    could pass for a result), with the status written on it."""
    word = status.split(":", 1)[0]
    headline = NO_IMAGE_HEADLINES.get(word, "SISO: no image, the run failed")
    return images.no_image_tensor(headline, status)


def unload_models() -> None:
    """Free the GPU for SISO: unload ComfyUI's models from VRAM."""
    model_management = module("comfy.model_management")
    if model_management is None:
        return
    try:
        model_management.unload_all_models()
        model_management.soft_empty_cache(True)
        console("unloaded ComfyUI's models from VRAM before starting SISO")
    except Exception as error:  # noqa: BLE001
        console(f"could not unload ComfyUI's models ({error}); continuing")


def _quote(text: str) -> str:
    return text if text and all(c.isalnum() or c in "/._-=:" for c in text) else json.dumps(text)


def progress_hooks(unique_id, total: int) -> Hooks:
    """Hooks that drive ComfyUI's progress bar and the node's text, print to the console, and cancel the
    run when the user pressed Cancel (the bar's hook raises then, or processing_interrupted says so)."""
    utils = module("comfy.utils")
    model_management = module("comfy.model_management")
    bar = utils.ProgressBar(total) if utils is not None else None
    cancel = threading.Event()

    def update_bar(step: int, steps: int, preview=None) -> None:
        if bar is None:
            return
        if preview is not None:
            try:
                bar.update_absolute(step, steps, preview)
                return
            except Exception as error:  # noqa: BLE001 - Cancel, or a preview ComfyUI could not take
                if interrupted(error):
                    cancel.set()
                    return
                logger.debug("live preview not sent: %s", error)
        try:
            bar.update_absolute(step, steps)
        except Exception:  # noqa: BLE001 - the hook raises when the user pressed Cancel
            cancel.set()

    def interrupted(error: Exception) -> bool:
        """The bar's hook raised for Cancel (else the update is retried without the preview)."""
        if model_management is None:
            return False
        kind = getattr(model_management, "InterruptProcessingException", None)
        return (isinstance(kind, type) and isinstance(error, kind)) or bool(model_management.processing_interrupted())

    def on_progress(record: dict) -> None:
        preview = live_preview(record) if bar is not None else None
        update_bar(int(record.get("step", 0)), int(record.get("total", total) or total), preview)
        send_to_ui("siso.progress", {"node": unique_id, "text": format_progress(record)})

    def should_cancel() -> bool:
        return cancel.is_set() or bool(model_management is not None and model_management.processing_interrupted())

    def on_start(command, pid) -> None:
        console(f"started pid {pid}: {' '.join(_quote(c) for c in command)}")
        update_bar(0, total)
        send_to_ui("siso.progress", {"node": unique_id, "text": "loading models ..."})

    return Hooks(on_line=lambda stream, text: console(text), on_progress=on_progress, should_cancel=should_cancel,
                 on_start=on_start)


def live_preview(record: dict):
    """The preview ComfyUI's progress bar sends to the node ("JPEG", PIL image, max size) for a progress record
    that names one (siso-generate/siso-edit --preview_file); None without one or when it cannot be read."""
    path = record.get("preview")
    if not isinstance(path, str) or not path:
        return None
    picture = images.read_preview(path)
    return None if picture is None else ("JPEG", picture, images.PREVIEW_MAX_SIZE)


def raise_cancelled(report: str, unique_id=None) -> None:
    """End the node after a cancelled run: ComfyUI's InterruptProcessingException (the prompt ends as
    interrupted), SISOCancelled outside ComfyUI."""
    console(report)
    send_to_ui("siso.progress", {"node": unique_id, "text": report})
    model_management = module("comfy.model_management")
    if model_management is None:
        raise SISOCancelled(report.splitlines()[0])
    model_management.interrupt_current_processing(False)
    raise model_management.InterruptProcessingException()
