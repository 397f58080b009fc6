"""Run the authors' UNMODIFIED `siso_generation_{sdxl,flux,sana}.py` on the CPU with our tiny models.

The authors' scripts (github.com/yairshp/SISO) were written for diffusers ~0.29, their own old
open_clip fork, hub downloads and CUDA. This harness imports one script file as it is (`--family`
picks `siso_generation_<family>.py`, default sdxl) and calls its `parse_args` / `main` (in the
harness's own process: the patches are process-wide), after changing only its *environment*:

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
6. FLUX only: `pytorch_lightning`, which `siso_generation_flux.py` imports but never uses, is an
   empty stub module when it is not installed (it is not one of our dependencies).
7. The module-level global `args` is set to the parsed arguments before `main(args)` is called,
   as the scripts' own `__main__` block (`args = parse_args(); main(args)`) does:
   `siso_generation_flux.py`'s `load_text_encoders` reads that global instead of a parameter.
8. Sana (`--isolate_loading_rng`, on by default for Sana only): every diffusers
   `ModelMixin.from_pretrained` runs under `torch.random.fork_rng`. Diffusers'
   `SanaTransformer2DModel.__init__` draws `torch.randn` (`scale_shift_table`), which their script
   does between `set_seed(seed)` and the LoRA initialisation; ours seeds right before the
   adapters. With the patch both LoRA A matrices come from the freshly seeded state.
9. FLUX / Sana: `Accelerator.clip_grad_norm_` is wrapped to RECORD, per epoch, the norm it clips
   by and the norm over the parameters the optimiser holds (the LoRA); what it does is unchanged.
10. transformers >= 5.2x flattened `CLIPTextModel`: its embeddings, encoder and final norm are its
   own children, and the `text_model` wrapper their FLUX script reaches through
   (`text_encoder_one.text_model.embeddings.requires_grad_(True)`) is gone. If it is missing,
   `CLIPTextModel.text_model` is a property returning the model itself, so that line reaches the
   same embeddings; nothing else changes (an older model's own `text_model` submodule is returned).

DINO needs no patch: their `--dino_model_name` is passed `local-dir:<tiny DINO folder>`, which
their `timm.create_model(name, pretrained=True, num_classes=0)` loads offline; their
preprocessing then reads the sizes from timm's resolved data config (56 px for the tiny DINO).

Their per-iteration `dino_losses`, `ir_losses` and `total_losses` are read from `main()`'s
locals when it returns (a `sys.settrace` hook that traces only that one frame), together
with `early_stopping_count` and the preprocessing sizes their code resolved, and written as JSON.

Usage:
    python tests/parity/upstream_harness.py --upstream_dir /path/to/SISO --assets_dir DIR \\
        --out losses.json [--family sdxl|flux|sana --learning_rate 2e-4 --num_train_epochs 10 \\
        --early_stopping_max_count 100 ...]

The arguments are the README's command for the family (`readme_argv`) with our tiny models, a
64 px resolution and the overrides given; FLUX's README command adds `--mixed_precision bf16`,
which is left out here (fp32, as upstream's default and our `--mode reference`).

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


# the README command's values that differ between the three scripts
FAMILIES = ("sdxl", "flux", "sana")
SCRIPTS = {family: f"siso_generation_{family}.py" for family in FAMILIES}
README_VALUES = {
    "sdxl": dict(learning_rate=2e-4, max_count=7, num_inference_steps=1, num_grad_steps=None, train_text_encoder=True),
    "flux": dict(learning_rate=2e-4, max_count=7, num_inference_steps=1, num_grad_steps=None, train_text_encoder=True),
    "sana": dict(learning_rate=8e-4, max_count=5, num_inference_steps=20, num_grad_steps=3, train_text_encoder=False),
}


def readme_argv(
    family: str,
    assets: dict[str, str],
    out_dir: str,
    subject: str = str(DEFAULT_SUBJECT),
    prompt: str = "a photo of a cat",
    resolution: int = 64,
    num_train_epochs: int = 10,
    learning_rate: float | None = None,
    threshold: int = 3,
    max_count: int | None = None,
    seed: int = 42,
    train_text_encoder: bool | None = None,
    num_inference_steps: int | None = None,
    num_grad_steps: int | None = None,
    max_grad_norm: float | None = None,
) -> list[str]:
    """The README's command for `family` with our tiny models; None = the README's value.

    SDXL is exactly `documented_argv`. FLUX: the README's FLUX command without its
    `--mixed_precision bf16` (fp32). Sana: the README's Sana command (no text-encoder LoRA,
    20 steps, `--num_grad_steps 3`, lr 8e-4, patience 5). `max_grad_norm` None leaves the
    scripts' default (1.0).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}: one of {FAMILIES}")
    readme = README_VALUES[family]
    learning_rate = readme["learning_rate"] if learning_rate is None else learning_rate
    max_count = readme["max_count"] if max_count is None else max_count
    train_text_encoder = readme["train_text_encoder"] if train_text_encoder is None else train_text_encoder
    num_inference_steps = readme["num_inference_steps"] if num_inference_steps is None else num_inference_steps
    num_grad_steps = readme["num_grad_steps"] if num_grad_steps is None else num_grad_steps
    if family == "sdxl" and (not train_text_encoder or num_inference_steps != 1 or num_grad_steps or max_grad_norm is not None):
        raise ValueError("the SDXL command is the README's (documented_argv): only the shared overrides apply")
    argv = documented_argv(
        {**assets, "sdxl": assets[family]}, out_dir, subject, prompt, resolution, num_train_epochs, learning_rate,
        threshold, max_count, seed,
    )
    if family == "sdxl":
        return argv
    argv[argv.index("--num_inference_steps") + 1] = str(num_inference_steps)
    if not train_text_encoder:
        argv.remove("--train_text_encoder")
    if num_grad_steps is not None:
        argv += ["--num_grad_steps", str(num_grad_steps)]
    if max_grad_norm is not None:
        argv += ["--max_grad_norm", repr(max_grad_norm)]
    return argv


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


def _patch_flattened_clip() -> None:
    """Item 10 of the module doc: `CLIPTextModel.text_model` for transformers that dropped it."""
    from transformers import CLIPTextModel

    if not hasattr(CLIPTextModel, "text_model"):
        # an older model keeps its wrapper as a submodule (found in _modules): then it is returned
        CLIPTextModel.text_model = property(lambda self: self._modules.get("text_model", self))


def text_embeddings(text_encoder):
    """CLIP's embedding module, with or without the `text_model` wrapper (transformers < / >= 5.2x)."""
    return getattr(text_encoder, "text_model", text_encoder).embeddings


def _stub_renoise() -> None:
    stub = types.ModuleType("utils.renoise_inversion_utils")
    stub.__doc__ = "parity harness stub: the editing-only ReNoise helpers are not needed for generation"
    sys.modules["utils.renoise_inversion_utils"] = stub


def _stub_unused_imports(family: str) -> None:
    """siso_generation_flux.py imports pytorch_lightning and never uses it: an empty stub if it is missing."""
    if family != "flux" or importlib.util.find_spec("pytorch_lightning") is not None:
        return
    stub = types.ModuleType("pytorch_lightning")
    stub.__doc__ = "parity harness stub: imported but never used by siso_generation_flux.py"
    sys.modules["pytorch_lightning"] = stub


def _isolate_model_loading_rng() -> None:
    """diffusers' model loading draws from the global torch RNG in some __init__s (Sana's
    `scale_shift_table = nn.Parameter(torch.randn(...))`, in every block): with this patch each
    `ModelMixin.from_pretrained` runs under `torch.random.fork_rng`, so the LoRA initialisation
    that follows draws from the state their `set_seed(seed)` left, as ours (seeded right before
    the adapters) does. Their code is unchanged; only which random numbers the LoRA A gets."""
    import functools

    import torch
    from diffusers.models.modeling_utils import ModelMixin

    original = ModelMixin.from_pretrained.__func__

    @functools.wraps(original)
    def from_pretrained(cls, *args, **kwargs):
        with torch.random.fork_rng(devices=[]):
            return original(cls, *args, **kwargs)

    ModelMixin.from_pretrained = classmethod(from_pretrained)


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


def _record_clip_norms(sink: list) -> None:
    """Record, at each `Accelerator.clip_grad_norm_` call, the gradient norm it clips by (all the
    parameters it is given) and the norm over those the optimiser holds (the LoRA): they differ
    when other parameters carry gradients (FLUX's CLIP embeddings). Behaviour is unchanged."""
    import torch
    from accelerate import Accelerator

    original = Accelerator.clip_grad_norm_

    def clip_grad_norm_(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        held = {id(p) for optimizer in self._optimizers for group in optimizer.param_groups for p in group["params"]}
        norms = [torch.linalg.vector_norm(p.grad.detach(), norm_type) for p in parameters if p.grad is not None and id(p) in held]
        lora_norm = float(torch.linalg.vector_norm(torch.stack(norms), norm_type)) if norms else 0.0
        total = original(self, parameters, max_norm, norm_type)
        sink.append({"clipped_by": float(total), "lora_only": lora_norm})
        return total

    Accelerator.clip_grad_norm_ = clip_grad_norm_


def _embedding_grad_norm(text_encoder) -> float | None:
    """L2 norm of the gradient left on CLIP's embeddings after the run (FLUX with --train_text_encoder).

    siso_generation_flux.py sets `text_model.embeddings.requires_grad_(True)` every epoch, the
    optimiser does not hold (so never zeroes) those weights, and their gradient, summed over all
    epochs, is part of the norm its `clip_grad_norm_` over all text-encoder parameters computes.
    None when no such gradient exists (no text-encoder LoRA, or not FLUX)."""
    if text_encoder is None:
        return None
    import torch

    text_encoder = getattr(text_encoder, "module", text_encoder)
    grads = [p.grad for p in text_embeddings(text_encoder).parameters() if p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


def run_upstream(
    upstream_dir: str | os.PathLike,
    argv: list[str],
    workdir: str | os.PathLike,
    threads: int = 1,
    family: str = "sdxl",
    isolate_loading_rng: bool = False,
) -> dict:
    """Import and run their `siso_generation_<family>.py` main() with `argv`; return the captured per-epoch losses.

    `isolate_loading_rng`: model loading leaves the global RNG as their `set_seed` left it
    (`_isolate_model_loading_rng`; needed for Sana, whose transformer draws random numbers in
    its __init__). Patches this whole process (torch, sys.modules): run it in a process of its own.
    """
    import torch

    torch.set_num_threads(threads)
    upstream = Path(upstream_dir).resolve()
    script = upstream / SCRIPTS[family]
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: SISO_UPSTREAM_DIR must be a checkout of github.com/yairshp/SISO")
    ir_path = argv[argv.index("--ir_features_path") + 1]
    workdir = Path(workdir)

    _patch_cuda_to_cpu()
    _patch_diffusers()
    _patch_flattened_clip()
    sys.path.insert(0, str(upstream))
    _stub_renoise()
    _stub_unused_imports(family)
    clip_norms: list[dict] = []
    if family != "sdxl":
        _record_clip_norms(clip_norms)
    if isolate_loading_rng:
        _isolate_model_loading_rng()
    _install_open_clip(upstream, ir_path, workdir)
    ir_features_utils = importlib.import_module("utils.ir_features_utils")
    _patch_ir_head(ir_features_utils)

    spec = importlib.util.spec_from_file_location(f"siso_generation_{family}_upstream", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args(argv)
    module.args = args  # what their `__main__` block does (FLUX's load_text_encoders reads this global)

    captured: dict = {}
    previous = sys.gettrace()
    names = ("dino_losses", "ir_losses", "total_losses", "early_stopping_count", "transforms_configs", "feature_extractor_transforms")
    if family == "flux":
        names += ("text_encoder_one",)  # for the gradient its CLIP embeddings accumulate (see _embedding_grad_norm)
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
        "family": family,
        "isolate_loading_rng": isolate_loading_rng,
        "text_embedding_grad_norm": _embedding_grad_norm(captured.get("text_encoder_one")),
        "clip_norms": clip_norms,  # per epoch (FLUX / Sana): the norm they clip by, and the LoRA's alone
        "argv": argv,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream_dir", default=os.environ.get("SISO_UPSTREAM_DIR"), required="SISO_UPSTREAM_DIR" not in os.environ)
    parser.add_argument("--assets_dir", required=True, help="tiny models (written by siso_lib.offline.ensure_test_assets if missing)")
    parser.add_argument("--out", required=True, help="JSON file for the per-epoch losses")
    parser.add_argument("--family", choices=FAMILIES, default="sdxl", help="which script: siso_generation_<family>.py")
    parser.add_argument("--subject_image_path", default=str(DEFAULT_SUBJECT))
    parser.add_argument("--prompt", default="a photo of a cat")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--num_train_epochs", type=int, default=10)
    parser.add_argument("--learning_rate", type=float, default=None, help="default: the README's (sdxl/flux 2e-4, sana 8e-4)")
    parser.add_argument("--early_stopping_threshold_percentage", type=int, default=3)
    parser.add_argument("--early_stopping_max_count", type=int, default=None, help="default: the README's (sdxl/flux 7, sana 5)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=1)
    # FLUX / Sana only (the SDXL command is the README's as it is)
    parser.add_argument("--train_text_encoder", action=argparse.BooleanOptionalAction, default=None,
                        help="default: the README's (flux yes, sana no)")
    parser.add_argument("--num_inference_steps", type=int, default=None, help="default: the README's (flux 1, sana 20)")
    parser.add_argument("--num_grad_steps", type=int, default=None, help="sana only; default: the README's 3")
    parser.add_argument("--max_grad_norm", type=float, default=None, help="default: the scripts' own (1.0)")
    parser.add_argument("--isolate_loading_rng", action=argparse.BooleanOptionalAction, default=None,
                        help="load the models under torch.random.fork_rng, so that the LoRA init draws from the fresh "
                        "seed as ours does (default: on for sana, whose transformer __init__ draws random numbers)")
    options = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from siso_lib.offline import ensure_test_assets  # before any patch: writing assets needs the real open_clip

    families = () if options.family == "sdxl" else (options.family,)
    assets = ensure_test_assets(options.assets_dir, families=families)
    with tempfile.TemporaryDirectory(prefix="siso-upstream-run-") as workdir:
        run_argv = readme_argv(
            options.family, assets, workdir, options.subject_image_path, options.prompt, options.resolution,
            options.num_train_epochs, options.learning_rate, options.early_stopping_threshold_percentage,
            options.early_stopping_max_count, options.seed, options.train_text_encoder, options.num_inference_steps,
            options.num_grad_steps, options.max_grad_norm,
        )
        isolate = options.family == "sana" if options.isolate_loading_rng is None else options.isolate_loading_rng
        result = run_upstream(options.upstream_dir, run_argv, workdir, options.threads, options.family, isolate)
    Path(options.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"upstream {options.family}: {result['steps_run']} epochs, total losses {result['total']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
