"""Run the authors' UNMODIFIED `siso_generation_sdxl.py` on the CPU with our tiny models.

The authors' script (github.com/yairshp/SISO) was written for diffusers ~0.29, their own old
open_clip fork, hub downloads and CUDA. This harness imports their file as it is and calls its
`parse_args` / `main` (in the harness's own process: the patches are process-wide), after
changing only its *environment*:

1. CUDA -> CPU: `Tensor.cuda`, `Module.cuda`, `Tensor.to("cuda"...)` and `Module.to("cuda"...)`
   are redirected to the CPU (their `dino_utils`, `ir_features_utils` and `main()` hard-code them).
2. `utils.renoise_inversion_utils` (imported by their `general_utils`, used only by the editing
   script) is replaced by an empty module: it imports their vendored diffusers 0.29 copy, which
   cannot be imported with transformers 5.
3. `diffusers.loaders.LoraLoaderMixin` is aliased to `StableDiffusionLoraLoaderMixin` if the
   installed diffusers no longer has it (diffusers 0.42.1 still does; the script only uses it
   when resuming from a checkpoint).
4. `open_clip` is replaced, for their code only, by a module whose
   `create_model_and_transforms("ViT-H-14-290")` calls THEIR fork's own factory
   (`third_party/IR_dependencies/open_clip_280_overlap`, loaded from their checkout under a
   private module name) with a tiny model config read from the IR checkpoint's tensor shapes
   (width, layers, grid, MLP ratio, output dim; head width 80 as in ViT-H-14-290). So the tower
   and the preprocessing values are the fork's (stride-12 patches, Resize/CenterCrop to the
   tower's input size, OpenAI-CLIP mean/std); for our tiny checkpoint the input is 50 px.
5. Their IR head `add_layer_model` hard-codes `fc1 = Linear(1024, 64)` (ViT-H's output dim);
   after their `__init__` the harness re-creates `fc1` with the tower's output dim (32 for the
   tiny checkpoint), under `torch.random.fork_rng` so no global random number is consumed.
   Their loader then loads the checkpoint strictly, fc2 (ArcFace head) included.

DINO needs no patch: their `--dino_model_name` is passed `local-dir:<tiny DINO folder>`, which
their `timm.create_model(name, pretrained=True, num_classes=0)` loads offline; their
preprocessing then reads the sizes from timm's resolved data config (56 px for the tiny DINO).

Their per-iteration `dino_losses`, `ir_losses` and `total_losses` are read from `main()`'s
locals when it returns (a `sys.settrace` hook that traces only that one frame), together
with `early_stopping_count` and the preprocessing sizes their code resolved, and written as JSON.

Usage:
    python tests/parity/upstream_harness.py --upstream_dir /path/to/SISO --assets_dir DIR \\
        --out losses.json [--learning_rate 2e-4 --num_train_epochs 10 --early_stopping_max_count 100 ...]

Nothing of the authors' code is copied here; their checkout is only imported at run time.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import os
import re
import sys
import tempfile
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEFAULT_SUBJECT = REPO / "data" / "cat.png"
FORK_RELATIVE = Path("third_party/IR_dependencies/open_clip_280_overlap/src/open_clip")
FORK_MODULE = "siso_upstream_open_clip_fork"
IR_MODEL_NAME = "ViT-H-14-290"
IR_HEAD_WIDTH = 80  # ViT-H-14-290.json: head_width 80
IR_PATCH, IR_STRIDE = 14, 12


# --------------------------------------------------------------------------- the run's arguments
def documented_argv(
    assets: dict[str, str],
    out_dir: str,
    subject: str = str(DEFAULT_SUBJECT),
    prompt: str = "a photo of a cat",
    resolution: int = 64,
    num_train_epochs: int = 10,
    learning_rate: float = 2e-4,
    threshold: int = 3,
    max_count: int = 7,
    seed: int = 42,
) -> list[str]:
    """The README's SDXL command, with our tiny models and the given overrides."""
    return [
        "--subject_image_path", subject,
        "--prompt", prompt,
        "--train_text_encoder",
        "--output_dir", os.path.join(out_dir, "logs"),
        "--lr_warmup_steps", "0",
        "--lr_scheduler", "constant",
        "--train_batch_size", "1",
        "--resolution", str(resolution),
        "--pretrained_model_name_or_path", assets["sdxl"],
        "--num_train_epochs", str(num_train_epochs),
        "--early_stopping_threshold_percentage", str(threshold),  # upstream parses it as int
        "--early_stopping_max_count", str(max_count),
        "--num_inference_steps", "1",
        "--learning_rate", repr(learning_rate),
        f"--seed={seed}",
        "--save_weights",
        "--weights_output_dir", os.path.join(out_dir, "weights"),
        "--ir_features_path", assets["ir"],
        "--dino_model_name", "local-dir:" + str(Path(assets["dino"]).resolve()),
    ]


# --------------------------------------------------------------------------- patches
def _patch_cuda_to_cpu() -> None:
    import torch

    def cpu(device):
        if isinstance(device, str) and device.startswith("cuda"):
            return "cpu"
        if isinstance(device, torch.device) and device.type == "cuda":
            return torch.device("cpu")
        return device

    def redirect(original):
        def to(self, *args, **kwargs):
            args = tuple(cpu(a) for a in args)
            if "device" in kwargs:
                kwargs["device"] = cpu(kwargs["device"])
            return original(self, *args, **kwargs)

        to.__wrapped__ = original
        return to

    torch.Tensor.to = redirect(torch.Tensor.to)
    torch.nn.Module.to = redirect(torch.nn.Module.to)
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self


def _patch_diffusers() -> None:
    import diffusers.loaders

    try:
        diffusers.loaders.LoraLoaderMixin  # noqa: B018
    except (AttributeError, ImportError):
        diffusers.loaders.LoraLoaderMixin = diffusers.loaders.StableDiffusionLoraLoaderMixin


def _stub_renoise() -> None:
    stub = types.ModuleType("utils.renoise_inversion_utils")
    stub.__doc__ = "parity harness stub: the editing-only ReNoise helpers are not needed for generation"
    sys.modules["utils.renoise_inversion_utils"] = stub


def _load_fork(upstream: Path) -> types.ModuleType:
    root = upstream / FORK_RELATIVE
    if not (root / "__init__.py").is_file():
        raise FileNotFoundError(f"the authors' open_clip fork is missing: {root}")
    spec = importlib.util.spec_from_file_location(FORK_MODULE, root / "__init__.py", submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[FORK_MODULE] = module
    spec.loader.exec_module(module)
    return module


def tiny_ir_model_config(ir_path: str) -> dict:
    """The fork's model config (ViT-H-14-290.json layout) for the checkpoint's tensor shapes."""
    import torch

    state = torch.load(ir_path, map_location="cpu", weights_only=True)
    state = {k.split("module.")[-1]: v for k, v in state.items()}
    width = state["backbone.conv1.weight"].shape[0]
    grid = round((state["backbone.positional_embedding"].shape[0] - 1) ** 0.5)
    layers = 1 + max(int(m.group(1)) for k in state if (m := re.match(r"backbone\.transformer\.resblocks\.(\d+)\.", k)))
    mlp_width = state["backbone.transformer.resblocks.0.mlp.c_fc.weight"].shape[0]
    return {
        "embed_dim": int(state["backbone.proj"].shape[1]),
        "vision_cfg": {
            # the fork: grid = (image_size - 2) // (patch_size - 2), stride = patch_size - 2
            "image_size": IR_STRIDE * grid + 2,
            "layers": layers,
            "width": int(width),
            "head_width": IR_HEAD_WIDTH,
            "mlp_ratio": mlp_width / width,
            "patch_size": IR_PATCH,
        },
        # the text tower is built by the fork's CLIP but never used: keep it small
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }


def _install_open_clip(upstream: Path, ir_path: str, workdir: Path) -> None:
    fork = _load_fork(upstream)
    name = "siso-parity-tiny-ir"
    config_file = workdir / f"{name}.json"
    config_file.write_text(json.dumps(tiny_ir_model_config(ir_path)))
    fork.add_model_config(config_file)

    shim = types.ModuleType("open_clip")
    shim.__doc__ = "parity harness: the authors' open_clip fork, ViT-H-14-290 mapped to the tiny IR tower"

    def create_model_and_transforms(model_name, *args, **kwargs):
        if model_name != IR_MODEL_NAME:
            raise ValueError(f"parity harness: unexpected open_clip model {model_name!r}")
        return fork.create_model_and_transforms(name, *args, **kwargs)

    shim.create_model_and_transforms = create_model_and_transforms
    shim.fork = fork
    sys.modules["open_clip"] = shim


def _patch_ir_head(ir_features_utils: types.ModuleType) -> None:
    import torch

    head = ir_features_utils.add_layer_model
    original = head.__init__

    def __init__(self, backbone):
        original(self, backbone)
        out_dim = getattr(backbone, "output_dim", None)
        if out_dim is not None and self.fc1.in_features != out_dim:
            with torch.random.fork_rng(devices=[]):
                self.fc1 = torch.nn.Linear(out_dim, self.fc1.out_features)

    head.__init__ = __init__


# --------------------------------------------------------------------------- running their main()
def _capture_locals_of(function, names: tuple[str, ...], sink: dict):
    """A sys.settrace hook that copies `names` from `function`'s frame when it returns."""
    code = function.__code__

    def local_trace(frame, event, arg):
        if event == "return":
            for key in names:
                if key in frame.f_locals:
                    value = frame.f_locals[key]
                    sink[key] = list(value) if isinstance(value, list) else value
        return local_trace

    def global_trace(frame, event, arg):
        if frame.f_code is code:
            return local_trace
        return None

    return global_trace


def _side(size) -> int:
    """torchvision/kornia sizes are an int or an (h, w) pair; the reference only uses squares."""
    if isinstance(size, (tuple, list)):
        if len(size) == 1:
            return int(size[0])
        assert size[0] == size[1], size
        return int(size[0])
    return int(size)


def run_upstream(upstream_dir: str | os.PathLike, argv: list[str], workdir: str | os.PathLike, threads: int = 1) -> dict:
    """Import and run their script's main() with `argv`; return the captured per-epoch losses.

    Patches this whole process (torch, sys.modules): run it in a process of its own.
    """
    import torch

    torch.set_num_threads(threads)
    upstream = Path(upstream_dir).resolve()
    script = upstream / "siso_generation_sdxl.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: SISO_UPSTREAM_DIR must be a checkout of github.com/yairshp/SISO")
    ir_path = argv[argv.index("--ir_features_path") + 1]
    workdir = Path(workdir)

    _patch_cuda_to_cpu()
    _patch_diffusers()
    sys.path.insert(0, str(upstream))
    _stub_renoise()
    _install_open_clip(upstream, ir_path, workdir)
    ir_features_utils = importlib.import_module("utils.ir_features_utils")
    _patch_ir_head(ir_features_utils)

    spec = importlib.util.spec_from_file_location("siso_generation_sdxl_upstream", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(argv)

    captured: dict = {}
    previous = sys.gettrace()
    names = ("dino_losses", "ir_losses", "total_losses", "early_stopping_count", "transforms_configs", "feature_extractor_transforms")
    sys.settrace(_capture_locals_of(module.main, names, captured))
    try:
        module.main(args)
    finally:
        sys.settrace(previous)
    totals = captured["total_losses"]
    stopped_early = captured.get("early_stopping_count", 0) >= args.early_stopping_max_count
    dino_sizes = captured["transforms_configs"]
    ir_resize, ir_crop = captured["feature_extractor_transforms"][:2]
    return {
        "dino": [float(v) for v in captured["dino_losses"]],
        "ir": [float(v) for v in captured["ir_losses"]],
        "total": [float(v) for v in totals],
        "steps_run": len(totals),
        "stopped_early": bool(stopped_early),
        # what their preprocessing resolved to: short side after resizing, square crop
        "dino_preprocess": [_side(dino_sizes["resize_size"]), _side(dino_sizes["center_crop_size"])],
        "ir_preprocess": [_side(ir_resize.size), _side(ir_crop.size)],
        "argv": argv,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream_dir", default=os.environ.get("SISO_UPSTREAM_DIR"), required="SISO_UPSTREAM_DIR" not in os.environ)
    parser.add_argument("--assets_dir", required=True, help="tiny models (written by siso_lib.offline.ensure_test_assets if missing)")
    parser.add_argument("--out", required=True, help="JSON file for the per-epoch losses")
    parser.add_argument("--subject_image_path", default=str(DEFAULT_SUBJECT))
    parser.add_argument("--prompt", default="a photo of a cat")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--learning_rate", type=float, default=2e-4)
    parser.add_argument("--early_stopping_threshold_percentage", type=int, default=3)
    parser.add_argument("--early_stopping_max_count", type=int, default=7)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    options = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from siso_lib.offline import ensure_test_assets  # before any patch: writing assets needs the real open_clip

    assets = ensure_test_assets(options.assets_dir)
    with tempfile.TemporaryDirectory(prefix="siso-upstream-run-") as workdir:
        run_argv = documented_argv(
            assets, workdir, options.subject_image_path, options.prompt, options.resolution, options.num_train_epochs,
            options.learning_rate, options.early_stopping_threshold_percentage, options.early_stopping_max_count, options.seed,
        )
        result = run_upstream(options.upstream_dir, run_argv, workdir, options.threads)
    Path(options.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"upstream: {result['steps_run']} epochs, total losses {result['total']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
