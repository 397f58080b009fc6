"""Run the authors' UNMODIFIED `siso_editing_sdxl.py` (SISO editing) on the CPU with our tiny models.

Imports their script file as it is and calls its `parse_args` / `main` (in this process of its
own: the patches are process-wide) with the README's editing command (`--seed=42
--lr_warmup_steps 0 --lr_scheduler constant --learning_rate 3e-4 --train_batch_size 1
--bg_mse_loss_weight 10. --ir_features_weight 1.0 --dino_features_weight 1.0
--early_stopping_threshold_percentage 3 --early_stopping_max_count 7`, no --train_text_encoder)
but our tiny SDXL / DINO / IR, `--resolution 64 --num_train_epochs 10`, and the class flags
`--input_class` / `--subject_class` (their LLaVA captioner is then never asked for a label).
Only the environment changes:

1. The generation harness's patches (tests/parity/upstream_harness.py, imported, not copied):
   CUDA -> CPU, `diffusers.loaders.LoraLoaderMixin`, `open_clip` -> THEIR fork with a tiny
   ViT config read from the IR checkpoint, their IR head's `fc1` rebuilt for the tiny tower.
2. The ReNoise harness's patch (tests/parity/upstream_renoise_harness.py): the transformers
   constant `FLAX_WEIGHTS_NAME` their vendored diffusers 0.29 imports; and, as there,
   `renoise_inversion_utils.model_type_to_size` returns the run's resolution instead of
   SDXL-Turbo's 512 (their `create_noise_list` sizes the fixed noise list from it).
3. `utils.labeler_utils.get_labeler_model_and_processor` returns (None, None): their `main()`
   loads LLaVA-1.5-7B even when both class flags are given; with the flags it is never used.
4. The mask: `utils.grounding_sam_utils.get_grounding_sam` loads nothing and `get_seg_mask`
   returns OUR mask (`siso_lib.editing.inputs.load_mask` of the test's mask PNG, at the run's
   resolution, white 255 = the subject's region, as their SAM mask image), so both sides use the
   same mask. The image it is asked about must be the R x R scene (checked). Their module
   imports cv2 (not one of our dependencies): without cv2 a module holding only these two
   functions stands in for it.
5. `datasets` (only `datasets.utils.logging.set_verbosity_*` is called) and `pytorch_lightning`
   (imported, never used) are empty stubs when they are not installed.
6. Recorders that change nothing: their module-level `update_early_stopping_count` (per epoch,
   the count and best loss it returns, and whether their `if loss <= best_loss` then takes that
   epoch's image as the best one), `Accelerator.clip_grad_norm_` (the first epoch's LoRA
   gradients before clipping, the norm per epoch), and a hook on the first image their
   `generate_image` returns (the loss's gradient w.r.t. it).

Their per-epoch `dino_losses`, `ir_losses`, `bg_losses` and `total_losses` are read from
`main()`'s locals when it returns (the generation harness's `sys.settrace` hook), with the scene
tensor, the mask tensor and the inverted latent they used and their img2img pipeline (whether it
runs the script's LoRA UNet and text encoders). `--tensors` saves the tensors (and the recorded
gradients) with torch.save, for the test to compare with ours.

Usage:
    python tests/parity/upstream_edit_harness.py --upstream_dir /path/to/SISO --assets_dir DIR \\
        --scene data/coffee.png --mask mask.png --input_class cup --subject_class cat --out losses.json

Nothing of the authors' code is copied here; their checkout is only imported at run time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import sys
import tempfile
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SCRIPT = "siso_editing_sdxl.py"
DEFAULT_SUBJECT = REPO / "data" / "cat.png"
DEFAULT_SCENE = REPO / "data" / "coffee.png"
NAMES = (
    "dino_losses", "ir_losses", "bg_losses", "total_losses", "early_stopping_count", "best_loss",
    "input_image_arr", "input_image_mask_arr", "last_latent", "inversion_prompt", "generation_prompt",
    "pipeline_inference", "text_encoder_one", "text_encoder_two", "unet",
)


def _load(name: str, path: Path) -> types.ModuleType:
    """A harness module by path (tests/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generation_harness() -> types.ModuleType:
    return _load("siso_parity_upstream_harness", HERE / "upstream_harness.py")


def renoise_harness() -> types.ModuleType:
    return _load("siso_editing_upstream_renoise_harness", REPO / "tests" / "parity" / "upstream_renoise_harness.py")


# --------------------------------------------------------------------------- the run's arguments
def editing_argv(
    assets: dict[str, str],
    out_dir: str,
    scene: str,
    subject: str,
    input_class: str,
    subject_class: str,
    resolution: int = 64,
    num_train_epochs: int = 10,
    learning_rate: float = 3e-4,
    threshold: int = 3,
    max_count: int = 7,
    seed: int = 42,
    bg_weight: float = 10.0,
    dino_weight: float = 1.0,
    ir_weight: float = 1.0,
    train_text_encoder: bool = False,
) -> list[str]:
    """The README's editing command ("Run SISO for Editing", SDXL) with our tiny models, the class flags
    and the given overrides."""
    return [
        "--output_dir", os.path.join(out_dir, "logs"),
        f"--seed={seed}",
        "--lr_warmup_steps", "0",
        "--lr_scheduler", "constant",
        "--learning_rate", repr(learning_rate),
        "--train_batch_size", "1",
        "--resolution", str(resolution),
        "--pretrained_model_name_or_path", assets["sdxl"],
        "--num_train_epochs", str(num_train_epochs),
        "--bg_mse_loss_weight", repr(bg_weight),
        "--ir_features_weight", repr(ir_weight),
        "--dino_features_weight", repr(dino_weight),
        "--early_stopping_threshold_percentage", str(threshold),  # upstream parses it as int
        "--early_stopping_max_count", str(max_count),
        "--input_image_path", scene,
        "--subject_image_path", subject,
        "--ir_features_path", assets["ir"],
        "--dino_model_name", "local-dir:" + str(Path(assets["dino"]).resolve()),
        "--input_class", input_class,
        "--subject_class", subject_class,
    ] + (["--train_text_encoder"] if train_text_encoder else [])  # not in the README's editing command


# --------------------------------------------------------------------------- environment patches
def _stub_if_missing(name: str, doc: str, **attributes) -> None:
    if name in sys.modules or importlib.util.find_spec(name) is not None:
        return
    stub = types.ModuleType(name)
    stub.__doc__ = doc
    for key, value in attributes.items():
        setattr(stub, key, value)
    sys.modules[name] = stub


def _stub_unused_imports() -> None:
    no_op = lambda *args, **kwargs: None  # noqa: E731
    logging = types.SimpleNamespace(set_verbosity_warning=no_op, set_verbosity_error=no_op, set_verbosity_info=no_op)
    _stub_if_missing("datasets", "parity harness stub: the editing script only sets datasets' log level",
                     utils=types.SimpleNamespace(logging=logging))
    _stub_if_missing("pytorch_lightning", "parity harness stub: imported but never used by siso_editing_sdxl.py")


def _patch_labeler() -> None:
    """Their main() loads LLaVA-1.5-7B before it looks at --input_class / --subject_class."""
    labeler_utils = importlib.import_module("utils.labeler_utils")

    def get_label(*args, **kwargs):
        raise RuntimeError("parity harness: give --input_class and --subject_class (the LLaVA labeler is not loaded)")

    labeler_utils.get_labeler_model_and_processor = lambda *args, **kwargs: (None, None)
    labeler_utils.get_label = get_label


def _install_mask(mask, asked: list) -> None:
    """get_grounding_sam loads nothing; get_seg_mask returns `mask` (a PIL "L" image, 255 = subject)."""

    def get_grounding_sam(*args, **kwargs):
        return 0.3, None, None, None

    def get_seg_mask(image, label, threshold, detector_model, segmentator_model, segment_processor):
        asked.append({"size": list(image.size), "label": list(label)})
        if tuple(image.size) != tuple(mask.size):
            raise ValueError(f"parity harness: the mask is {mask.size}, their scene {image.size}")
        return mask.copy()

    name = "utils.grounding_sam_utils"
    if importlib.util.find_spec("cv2") is not None:
        module = importlib.import_module(name)
    else:
        module = types.ModuleType(name)
        module.__doc__ = "parity harness: stands in for their Grounding-DINO + SAM module (cv2 is not installed)"
        sys.modules[name] = module
    module.get_grounding_sam = get_grounding_sam
    module.get_seg_mask = get_seg_mask


def _record_early_stopping(module: types.ModuleType, sink: list) -> None:
    original = module.update_early_stopping_count

    def update_early_stopping_count(threshold, count, best_loss, loss):
        best_loss, count = original(threshold, count, best_loss, loss)
        sink.append({
            "count": int(count),
            "best_loss": float(best_loss.detach() if hasattr(best_loss, "detach") else best_loss),
            "takes_image": bool(loss <= best_loss),  # their `if loss <= best_loss: best_image = image_out`
        })
        return best_loss, count

    module.update_early_stopping_count = update_early_stopping_count


def _record_gradients(sink: dict) -> None:
    """At each `Accelerator.clip_grad_norm_` call: the norm it clips by; at the first, a copy of every
    gradient it is given (the LoRA's, in their optimiser's order, before clipping). Behaviour unchanged."""
    import torch
    from accelerate import Accelerator

    original = Accelerator.clip_grad_norm_

    def clip_grad_norm_(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        if "first" not in sink:
            sink["first"] = [None if p.grad is None else p.grad.detach().clone() for p in parameters]
        total = original(self, parameters, max_norm, norm_type)
        sink.setdefault("norms", []).append(float(total))
        return total

    Accelerator.clip_grad_norm_ = clip_grad_norm_


def _record_image_gradient(module: types.ModuleType, sink: dict) -> None:
    """The gradient of the first epoch's loss w.r.t. the first generated image (a tensor hook on what
    their `generate_image` returns); the image itself is unchanged."""
    original = module.generate_image

    def generate_image(*args, **kwargs):
        image = original(*args, **kwargs)
        if "image" not in sink and image.requires_grad:
            sink["image"] = image.detach().clone()
            image.register_hook(lambda grad: sink.setdefault("image_gradient", grad.detach().clone()))
        return image

    module.generate_image = generate_image


# --------------------------------------------------------------------------- running their main()
def run_upstream(upstream_dir: str | os.PathLike, argv: list[str], mask_path: str, workdir: str | os.PathLike,
                 threads: int = 1) -> tuple[dict, dict]:
    """Import and run their `siso_editing_sdxl.py` main() with `argv` (module doc); returns (the
    per-epoch record, the tensors they used: scene, mask, inverted latent). Patches this whole
    process: run it in a process of its own."""
    import torch
    from PIL import Image

    sys.path.insert(0, str(REPO))
    from siso_lib.editing.inputs import load_mask, mask_image

    torch.set_num_threads(threads)
    upstream = Path(upstream_dir).resolve()
    script = upstream / SCRIPT
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: SISO_UPSTREAM_DIR must be a checkout of github.com/yairshp/SISO")
    option = lambda name: argv[argv.index(name) + 1]  # noqa: E731
    resolution = int(option("--resolution"))
    with Image.open(option("--input_image_path")) as scene:
        scene_size = scene.size
    loaded = load_mask(mask_path, scene_size, resolution)
    mask, mask_info = loaded.square, loaded.info
    workdir = Path(workdir)

    generation = generation_harness()
    generation._patch_cuda_to_cpu()
    generation._patch_diffusers()
    renoise_harness()._define_flax_weights_name()
    sys.path.insert(0, str(upstream))
    _stub_unused_imports()
    generation._install_open_clip(upstream, option("--ir_features_path"), workdir)
    generation._patch_ir_head(importlib.import_module("utils.ir_features_utils"))
    renoise_utils = importlib.import_module("utils.renoise_inversion_utils")
    renoise_utils.model_type_to_size = lambda model_type: (resolution, resolution)
    _patch_labeler()
    asked: list = []
    _install_mask(mask_image(mask), asked)

    spec = importlib.util.spec_from_file_location("siso_editing_sdxl_upstream", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(argv)
    module.args = args  # what their `__main__` block does
    stopping: list = []
    _record_early_stopping(module, stopping)
    gradients: dict = {}
    _record_gradients(gradients)
    _record_image_gradient(module, gradients)

    captured: dict = {}
    previous = sys.gettrace()
    sys.settrace(generation._capture_locals_of(module.main, NAMES, captured))
    try:
        module.main(args)
    finally:
        sys.settrace(previous)
    totals = captured["total_losses"]
    pipe = captured["pipeline_inference"]
    unwrap = lambda model: getattr(model, "module", model)  # noqa: E731  (accelerate's wrapper, if any)
    record = {
        "dino": [float(v) for v in captured["dino_losses"]],
        "ir": [float(v) for v in captured["ir_losses"]],
        "background": [float(v) for v in captured["bg_losses"]],
        "total": [float(v) for v in totals],
        "steps_run": len(totals),
        "stopped_early": bool(captured["early_stopping_count"] >= args.early_stopping_max_count),
        "early_stopping": stopping,  # per epoch: their count, best loss, and whether the image became "best"
        "inversion_prompt": captured["inversion_prompt"],
        "generation_prompt": captured["generation_prompt"],
        "grad_norms": gradients.get("norms", []),  # per epoch, the norm clip_grad_norm_ clips by
        # which models their img2img pipeline really runs: the LoRA UNet, and the script's text encoders?
        "pipeline_unet_is_the_scripts": pipe.unet is unwrap(captured["unet"]),
        "pipeline_text_encoders_are_the_scripts": [
            pipe.text_encoder is unwrap(captured["text_encoder_one"]),
            pipe.text_encoder_2 is unwrap(captured["text_encoder_two"]),
        ],
        "mask_requests": asked,
        "mask": mask_info,
        "argv": argv,
    }
    tensors = {
        "scene": captured["input_image_arr"].detach().cpu().clone(),
        "mask": captured["input_image_mask_arr"].detach().cpu().clone(),
        "latent": captured["last_latent"].detach().cpu().clone(),
        "first_gradients": gradients.get("first", []),
        "first_image": gradients.get("image"),
        "first_image_gradient": gradients.get("image_gradient"),
    }
    return record, tensors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream_dir", default=os.environ.get("SISO_UPSTREAM_DIR"), required="SISO_UPSTREAM_DIR" not in os.environ)
    parser.add_argument("--assets_dir", required=True, help="tiny models (written by siso_lib.offline.ensure_test_assets if missing)")
    parser.add_argument("--out", required=True, help="JSON file for the per-epoch losses")
    parser.add_argument("--tensors", default=None, help="torch.save file for the scene, mask and inverted latent they used")
    parser.add_argument("--scene", default=str(DEFAULT_SCENE), help="the photo to edit (--input_image_path)")
    parser.add_argument("--mask", required=True, help="PNG of the scene's size, white = the subject's region")
    parser.add_argument("--subject_image_path", default=str(DEFAULT_SUBJECT))
    parser.add_argument("--input_class", default="cup")
    parser.add_argument("--subject_class", default="cat")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--learning_rate", type=float, default=3e-4)
    parser.add_argument("--early_stopping_threshold_percentage", type=int, default=3)
    parser.add_argument("--early_stopping_max_count", type=int, default=7)
    parser.add_argument("--bg_mse_loss_weight", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train_text_encoder", action="store_true", help="add --train_text_encoder (not in the README's command)")
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from siso_lib.offline import ensure_test_assets  # before any patch: writing assets needs the real open_clip

    assets = ensure_test_assets(options.assets_dir)
    with tempfile.TemporaryDirectory(prefix="siso-upstream-edit-") as workdir:
        run_argv = editing_argv(
            assets, workdir, options.scene, options.subject_image_path, options.input_class, options.subject_class,
            options.resolution, options.num_train_epochs, options.learning_rate,
            options.early_stopping_threshold_percentage, options.early_stopping_max_count, options.seed,
            options.bg_mse_loss_weight, train_text_encoder=options.train_text_encoder,
        )
        record, tensors = run_upstream(options.upstream_dir, run_argv, options.mask, workdir, options.threads)
    Path(options.out).write_text(json.dumps(record, indent=2) + "\n")
    if options.tensors:
        import torch

        torch.save(tensors, options.tensors)
    print(f"upstream editing: {record['steps_run']} epochs, total losses {record['total']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
