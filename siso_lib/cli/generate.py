"""`siso-generate`: the command line, a drop-in for the authors' `siso_generation_sdxl.py`,
`siso_generation_flux.py` and `siso_generation_sana.py`.

`--model_family auto` (the default) reads the family from the base model folder's
model_index.json or the hub id; the family's recipe (config.FAMILY_RECIPES) gives every default
that differs between families. Every upstream argument of the three scripts is accepted, so a
documented upstream command runs unchanged; the ones that do nothing there (dataset, hub,
validation, tracker, prior-preservation and distributed options) are accepted with a one-line
warning. Defaults are the documented commands' (see config.py), not upstream's argparse
defaults, and `--seed` defaults to 42 instead of crashing.

Progress: a tqdm bar on stderr and, on stdout when a program reads it (a pipe or a file, not an
interactive terminal; SISO_PROGRESS_LINES=1 / 0 forces them on / off), one machine-readable line
per step:

    SISO_PROGRESS {"step": 3, "total": 50, "loss": -1.61, "dino": -0.80, "ir": -0.81, ...}

and a final `SISO_RESULT {...}` line with the status and the paths. Exit codes: 0 the run
finished and the LoRA is written; 1 the run ended early on a non-finite loss or out of memory
(the best LoRA so far is written); 2 bad input (nothing written); 130/143 interrupted by
SIGINT/SIGTERM (the best LoRA so far is written); 129/141 its parent (SIGHUP, or SISO_PARENT_PID)
or its output pipe went away: the iteration in progress is finished, the best LoRA and run.json
are written ("interrupted_by" says why), and nothing more is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from typing import Callable

# only light modules here: --help and every input error answer before torch is imported
from ..config import FAMILY_RECIPES, MODEL_FAMILIES, MODES, QUANTIZE, SISOConfig, field_help
from ..errors import FLAG_NAMES, SISOInputError
from ..io.progress import RESULT, format_line
from ..preflight import PreparedRun, preflight
from .common import (
    OneLineArgumentParser, ProgressPrinter, interrupt_exit_code, print_error, progress_lines_wanted, quiet_libraries,
    record_interruption, run_command,
)

logger = logging.getLogger("siso_lib")

DEFAULTS = SISOConfig()

# upstream arguments that have no effect in upstream's SISO loop either: accepted, warned about
NO_EFFECT = {
    "dataset_name": None, "dataset_config_name": None, "train_data_dir": None, "image_column": "image",
    "caption_column": "text", "validation_prompt": None, "num_validation_images": 4, "validation_epochs": 1,
    "max_train_samples": None, "center_crop": False, "random_flip": False, "train_batch_size": 16,
    "max_train_steps": None, "checkpointing_steps": 500, "checkpoints_total_limit": None,
    "resume_from_checkpoint": None, "snr_gamma": None, "dataloader_num_workers": 0, "use_8bit_adam": False,
    "push_to_hub": False, "hub_token": None, "prediction_type": None, "hub_model_id": None, "logging_dir": "logs",
    "report_to": "tensorboard", "local_rank": -1, "enable_xformers_memory_efficient_attention": False,
    "enable_npu_flash_attention": False, "noise_offset": 0.0, "debug_loss": False, "subject_class": None,
    # siso_generation_flux.py / siso_generation_sana.py (DreamBooth leftovers and options their loops ignore)
    "instance_data_dir": None, "repeats": 1, "class_data_dir": None, "class_prompt": None,
    "with_prior_preservation": False, "prior_loss_weight": 1.0, "num_class_images": 100, "sample_batch_size": 4,
    "weighting_scheme": "none", "logit_mean": 0.0, "logit_std": 1.0, "mode_scale": 1.29, "prodigy_beta3": None,
    "prodigy_decouple": "True", "prodigy_use_bias_correction": "True", "prodigy_safeguard_warmup": "True",
    "cache_latents": False, "upcast_before_saving": False, "prior_generation_precision": None, "strength": 0.5,
    "complex_human_instruction": None, "enable_vae_tiling": False, "offload": False,
}
NO_EFFECT_HINTS = {
    "train_batch_size": "SISO generates one image per iteration",
    "max_train_steps": "use --num_train_epochs for the iteration budget",
    "report_to": "progress goes to the terminal, run.json and SISO_PROGRESS lines",
    "resume_from_checkpoint": "a SISO run is short; start a new one",
    "enable_xformers_memory_efficient_attention": "PyTorch SDPA attention is used",
    "complex_human_instruction": "the Sana pipeline's own instruction is used, as upstream",
    "offload": "frozen text encoders leave the GPU by themselves in the default mode",
    "cache_latents": "SISO encodes no training images",
}


def recipe_help(name: str) -> str:
    """'sdxl 2e-4, flux 2e-4, sana 8e-4': a recipe field's default per family, for --help."""
    return ", ".join(f"{family} {FAMILY_RECIPES[family][name]}" for family in MODEL_FAMILIES)


def _help(name: str, config_class: type[SISOConfig] = SISOConfig) -> str:
    """A config field's help text (config.py), as argparse shows it."""
    return field_help(config_class, name).replace("%", "%%")


def shared_options(d: SISOConfig) -> dict[str, dict]:
    """argparse keyword arguments of the options siso-generate and siso-edit share (same names as
    the authors' scripts and as the config fields), with the defaults of `d`."""
    return {
        "pretrained_vae_model_name_or_path": dict(default=None, help=_help("pretrained_vae_model_name_or_path")),
        "revision": dict(default=None, help=_help("revision")),
        "variant": dict(default=None, help=_help("variant")),
        "cache_dir": dict(default=None, help=_help("cache_dir")),
        "dino_model_name": dict(default=d.dino_model_name, help=_help("dino_model_name")),
        "ir_features_path": dict(default=d.ir_features_path, help=_help("ir_features_path")),
        "overwrite": dict(action="store_true", help="replace a LoRA an earlier run left in the output folder"),
        "log_every_epoch": dict(action="store_true", help="also save every iteration's image as epoch_N.png"),
        "save_on_improve": dict(action="store_true", help=_help("save_on_improve")),
        "progress_file": dict(default=None, help="also append the SISO_PROGRESS JSON objects to this file"),
        "preview_file": dict(default=None, help="write each iteration's image to this file (JPEG or PNG, at most 512 px) "
                             "and name it in the progress records' \"preview\" (for programs that show the run live)"),
        "resolution": dict(type=int, default=d.resolution, help=_help("resolution")),
        "seed": dict(type=int, default=d.seed, help=_help("seed")),
        "num_train_epochs": dict(type=int, default=d.num_train_epochs, help=_help("num_train_epochs")),
        "scale_lr": dict(action="store_true", help="upstream's LR scaling by accumulation x batch size"),
        "lr_scheduler": dict(default=d.lr_scheduler, help=_help("lr_scheduler")),
        "lr_warmup_steps": dict(type=int, default=d.lr_warmup_steps, help=_help("lr_warmup_steps")),
        "gradient_accumulation_steps": dict(type=int, default=1, help="must be 1 (one image per iteration)"),
        "adam_beta1": dict(type=float, default=d.adam_beta1, help=_help("adam_beta1")),
        "adam_beta2": dict(type=float, default=d.adam_beta2, help=_help("adam_beta2")),
        "adam_epsilon": dict(type=float, default=d.adam_epsilon, help=_help("adam_epsilon")),
        "max_grad_norm": dict(type=float, default=d.max_grad_norm, help=_help("max_grad_norm")),
        "rank": dict(type=int, default=d.rank, help=_help("rank")),
        "dino_features_weight": dict(type=float, default=d.dino_features_weight, help=_help("dino_features_weight")),
        "ir_features_weight": dict(type=float, default=d.ir_features_weight, help=_help("ir_features_weight")),
        "early_stopping_threshold_percentage": dict(
            type=float, default=d.early_stopping_threshold_percentage, help=_help("early_stopping_threshold_percentage")),
        "device": dict(default=d.device, help=_help("device")),
        "mixed_precision": dict(default=d.precision, choices=["auto", "no", "fp32", "fp16", "bf16"], help=_help("precision")),
        "mode": dict(default=d.mode, choices=MODES, help=_help("mode")),
        "quantize": dict(default=d.quantize, choices=QUANTIZE, help=_help("quantize")),
        "gradient_checkpointing": dict(action=argparse.BooleanOptionalAction, default=None, help=_help("gradient_checkpointing")),
        "allow_tf32": dict(action="store_true", help="allow TF32 matmuls on NVIDIA GPUs"),
        "quiet": dict(action="store_true", help="no progress bar (the SISO_PROGRESS lines go to stdout when a program reads "
                      "it, never on a terminal unless SISO_PROGRESS_LINES=1)"),
        "debug": dict(action="store_true", help="show full tracebacks"),
    }


def add_options(group, specs: dict[str, dict], names: str) -> None:
    """Add the options `names` (space-separated) from `specs` to an argparse group, in that order."""
    for name in names.split():
        group.add_argument(f"--{name}", **specs[name])


def add_no_effect_options(parser: argparse.ArgumentParser, no_effect: dict) -> None:
    """Upstream arguments accepted for compatibility (hidden from --help; warn_no_effect names them)."""
    g = parser.add_argument_group("accepted for upstream compatibility (no effect)")
    for name, default in no_effect.items():
        if isinstance(default, bool):
            g.add_argument(f"--{name}", action="store_true", help=argparse.SUPPRESS)
        else:
            kind = type(default) if default is not None else str
            g.add_argument(f"--{name}", type=kind, default=default, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    d = DEFAULTS
    shared = shared_options(d)
    p = OneLineArgumentParser(
        prog="siso-generate",
        description="SISO: optimise a LoRA so that SDXL-Turbo, FLUX.1-schnell, Sana or FLUX.2 klein draws the subject of one photo. "
        "Defaults marked 'recipe' are the authors' per model family.",
    )
    g = p.add_argument_group("inputs")
    g.add_argument("--subject_image_path", help="the ONE photo of the subject (required, except with --plan)")
    g.add_argument("--prompt", default=d.prompt, help="a simple prompt naming the subject's class")
    g.add_argument("--model_family", default="auto", choices=("auto", *MODEL_FAMILIES),
                   help="auto reads it from the base model (model_index.json or the hub id)")
    g.add_argument("--pretrained_model_name_or_path", default=None,
                   help=f"hub id or local diffusers folder (recipe: {recipe_help('pretrained_model_name_or_path')})")
    add_options(g, shared, "pretrained_vae_model_name_or_path revision variant cache_dir dino_model_name ir_features_path")

    g = p.add_argument_group("outputs")
    g.add_argument("--output_dir", default=None, help="folder for result.png, loss_curve.png, run.json (default: a fresh outputs/runs/<time>-<subject>)")
    g.add_argument("--weights_output_dir", default=None, help="folder for the LoRA files (default: --output_dir)")
    g.add_argument("--save_weights", action="store_true", help="accepted for upstream compatibility: the LoRA is always saved")
    add_options(g, shared, "overwrite log_every_epoch save_on_improve progress_file preview_file")

    g = p.add_argument_group("generation")
    add_options(g, shared, "resolution")
    g.add_argument("--num_inference_steps", type=int, default=None,
                   help=f"denoising steps per image (recipe: {recipe_help('num_inference_steps')})")
    g.add_argument("--num_grad_steps", type=int, default=None,
                   help=f"the last k denoising steps carry gradients, 0 = every step (recipe: {recipe_help('num_grad_steps')})")
    g.add_argument("--guidance_scale", type=float, default=None,
                   help=f"classifier-free guidance for Sana and a FLUX.2 klein base model, embedded guidance for FLUX.1-dev "
                   f"(recipe: {recipe_help('guidance_scale')})")
    g.add_argument("--max_sequence_length", type=int, default=None,
                   help=f"T5 / Gemma prompt tokens (recipe: {recipe_help('max_sequence_length')}; upstream ignores its own flag)")
    add_options(g, shared, "seed")

    g = p.add_argument_group("optimisation")
    add_options(g, shared, "num_train_epochs")
    g.add_argument("--learning_rate", type=float, default=None,
                   help=f"AdamW learning rate of the denoiser's LoRA (recipe: {recipe_help('learning_rate')})")
    g.add_argument("--text_encoder_lr", type=float, default=None,
                   help="learning rate of the text-encoder LoRA (recipe: flux 5e-6; sdxl: --learning_rate; sana has no text-encoder LoRA)")
    add_options(g, shared, "scale_lr lr_scheduler lr_warmup_steps gradient_accumulation_steps adam_beta1 adam_beta2")
    g.add_argument("--adam_weight_decay", type=float, default=None,
                   help=f"AdamW weight decay of the denoiser's LoRA (recipe: {recipe_help('adam_weight_decay')})")
    g.add_argument("--adam_weight_decay_text_encoder", type=float, default=None,
                   help="AdamW weight decay of the text-encoder LoRA (recipe: flux 1e-3; sdxl: --adam_weight_decay; sana: none)")
    g.add_argument("--lr_num_cycles", type=int, default=d.lr_num_cycles, help="hard restarts of cosine_with_restarts")
    g.add_argument("--lr_power", type=float, default=d.lr_power, help="power of the polynomial schedule")
    g.add_argument("--optimizer", default="AdamW", help="AdamW (the only optimiser SISO uses here)")
    add_options(g, shared, "adam_epsilon max_grad_norm rank")
    g.add_argument("--lora_alpha", type=float, default=d.lora_alpha, help="LoRA alpha (default: the rank, i.e. scale 1)")
    g.add_argument("--lora_layers", default=None,
                   help="comma-separated denoiser module names for the LoRA (recipe: sdxl to_q,to_k,to_v,to_out.0; sana to_k,to_q,to_v; "
                   "flux attn.to_*, attn.add_*_proj, attn.to_add_out, ff*.net.0.proj/net.2, see docs/families.md)")
    g.add_argument("--train_text_encoder", action=argparse.BooleanOptionalAction, default=None,
                   help=f"also put LoRA on the CLIP text encoder(s) (recipe: {recipe_help('train_text_encoder')})")
    add_options(g, shared, "dino_features_weight ir_features_weight early_stopping_threshold_percentage")
    g.add_argument("--early_stopping_max_count", type=int, default=None,
                   help=f"stop after this many iterations without such an improvement (recipe: {recipe_help('early_stopping_max_count')})")

    g = p.add_argument_group("device, speed and memory")
    add_options(g, shared, "device mixed_precision mode quantize gradient_checkpointing")
    g.add_argument("--plan", action="store_true",
                   help="print the predicted peak GPU memory of every mode for these settings and what --mode auto would "
                   "choose, then exit (no model is loaded; docs/memory.md)")
    g.add_argument("--gpu_memory_gib", type=float, default=None,
                   help="with --plan: plan for this much free GPU memory instead of asking nvidia-smi")
    g.add_argument("--compile", action="store_true", help="torch.compile the denoiser (UNet or transformer; slow first step)")
    g.add_argument("--cuda_graphs", action=argparse.BooleanOptionalAction, default=None,
                   help="replay each iteration as one CUDA graph where supported (SDXL, default mode, bf16/fp32, 1 step); "
                   "on unless --no-cuda_graphs. Why they are not used is said on a CUDA device, or when --cuda_graphs is given")
    add_options(g, shared, "allow_tf32")

    add_options(p.add_argument_group("logging"), shared, "quiet debug")
    add_no_effect_options(p, NO_EFFECT)
    return p


def config_from_args(args: argparse.Namespace, config_class: type[SISOConfig] = SISOConfig) -> SISOConfig:
    """Arguments -> `config_class` (SISOConfig, or SISOEditConfig for siso-edit): every config field
    has an argument of the same name (errors.FLAG_NAMES lists the few that differ: `precision` is
    upstream's `--mixed_precision`). An argument left at None takes the config's default (for a
    recipe field: the family's recipe)."""
    def given(name: str):
        return getattr(args, name, None) if getattr(args, name, None) is not None else getattr(args, FLAG_NAMES.get(name, name), None)

    values = {f.name: given(f.name) for f in dataclasses.fields(config_class) if given(f.name) is not None}
    values["precision"] = {"no": "fp32"}.get(args.mixed_precision, args.mixed_precision)
    if args.scale_lr:
        factor = args.gradient_accumulation_steps * args.train_batch_size
        values["learning_rate"] = config_class(**values).learning_rate * factor
        logger.warning(
            "--scale_lr: learning rate x%d (accumulation x train_batch_size, as upstream) = %g", factor, values["learning_rate"]
        )
    return config_class(**values)


def check_progress_file(path: str | None, flag: str = "--progress_file") -> None:
    """--progress_file / --preview_file must be writable; refused up front instead of failing at the first iteration."""
    if not path:
        return
    import os

    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        example = "progress.jsonl" if flag == "--progress_file" else "preview.jpg"
        raise SISOInputError(f"{flag} {path!r} is a folder: give a file name, e.g. {example}")
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise SISOInputError(f"{flag} {path!r} cannot be written (its folder is missing or not writable): choose another path")
    if flag == "--preview_file" and not path.lower().endswith((".jpg", ".jpeg", ".png")):
        raise SISOInputError(f"{flag} {path!r} must end in .jpg, .jpeg or .png (the image format)")


def warn_no_effect(args: argparse.Namespace, no_effect: dict = NO_EFFECT) -> None:
    """One warning line per upstream argument that was given but does nothing here; refuse the two
    that would change the method (accumulation, another optimiser)."""
    for name, default in no_effect.items():
        if getattr(args, name) != default:
            hint = NO_EFFECT_HINTS.get(name, "it has no effect in SISO (upstream ignores it too)")
            logger.warning("ignoring --%s: %s", name, hint)
    if args.gradient_accumulation_steps != 1:
        raise SISOInputError("--gradient_accumulation_steps must be 1: SISO takes one step per generated image")
    if getattr(args, "optimizer", "AdamW").lower() != "adamw":
        raise SISOInputError(f"--optimizer {args.optimizer!r} is not available: SISO here uses AdamW (drop --optimizer)")


def warn_family_options(args: argparse.Namespace, config: SISOConfig) -> None:
    """Options that the chosen family (or setting) leaves without effect are named, not silently ignored."""
    if not config.train_text_encoder:
        for name in ("text_encoder_lr", "adam_weight_decay_text_encoder"):
            if getattr(args, name) is not None:
                logger.warning("ignoring --%s: no text-encoder LoRA is trained in this run (%s)", name, config.family)
    steps, grad_steps = config.num_inference_steps, config.num_grad_steps
    if steps is not None and grad_steps is not None and grad_steps > steps:
        logger.warning("--num_grad_steps %d > --num_inference_steps %d: gradients flow through all %d steps", grad_steps, steps, steps)


def prepare_libraries(args: argparse.Namespace) -> None:
    """After the checks, before the models: quiet the libraries' logs; TF32 if asked."""
    quiet_libraries()
    if args.allow_tf32:
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True


PROG = "siso-generate"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.plan:
        return run_command(args, lambda: print_plan(args), prog=PROG)
    if not args.subject_image_path:
        parser.error("the following arguments are required: --subject_image_path")
    return run_command(args, lambda: _check_and_run(args), prog=PROG)


def print_plan(args: argparse.Namespace) -> int:
    """--plan: every mode's predicted peak for these settings and the device, and auto's choice
    (memory.py; no torch, no model)."""
    from ..memory import GIB, format_plan, nvidia_smi_free_bytes, plan

    config = config_from_args(args)
    config.validate()
    if args.gpu_memory_gib is not None:
        if args.gpu_memory_gib <= 0:
            raise SISOInputError(f"--gpu_memory_gib {args.gpu_memory_gib:g} must be above 0 (the GPU's free memory in GiB)")
        free, label = int(args.gpu_memory_gib * GIB), f"{args.gpu_memory_gib:g} GiB free, as given"
    else:
        index = int(config.device.split(":")[1]) if config.device.startswith("cuda:") else 0
        free = nvidia_smi_free_bytes(index) if config.device in ("auto", "cuda") or config.device.startswith("cuda:") else None
        label = (f"GPU {index}: {free / GIB:.1f} GiB free (nvidia-smi)" if free is not None
                 else "no NVIDIA GPU found: give --gpu_memory_gib to see what fits")
    task = "edit" if getattr(args, "task", "generate") == "edit" else "generate"
    options = plan(config.family, config.resolution, bool(config.train_text_encoder), task, config.rank,
                   config.num_grad_steps, free_bytes=free, quantize=config.quantize)
    if not options.predictions:
        raise SISOInputError(f"no memory measurements for {config.family} {task}: see docs/memory.md")
    lines = [format_plan(options, config.family, config.resolution, label)]
    if config.mode != "auto":  # what was asked for, beside what auto would do
        quantize = "none" if config.quantize == "auto" else config.quantize
        asked = next((p for p in options.predictions if (p.mode, p.quantize) == (config.mode, quantize)), None)
        if asked is not None:
            verdict = "" if free is None else ("; fits" if asked.needed_bytes <= free else "; does NOT fit")
            lines.append(f"--mode {asked.label} (asked for): {asked.peak_bytes / GIB:.1f} GiB predicted{verdict}")
    try:
        print("\n".join(lines), flush=True)
    except BrokenPipeError:  # `siso-generate --plan | head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _check_and_run(args: argparse.Namespace) -> int:
    warn_no_effect(args)
    check_progress_file(args.progress_file)
    check_progress_file(args.preview_file, "--preview_file")
    config = config_from_args(args)
    warn_family_options(args, config)
    # every check that needs no model, before the heavy imports below (seconds)
    prepared = preflight(config, args.subject_image_path, args.output_dir, args.weights_output_dir, args.overwrite)
    return run_in_folder(prepared, lambda: _run(args, prepared), args)


def run_in_folder(prepared: PreparedRun, run: Callable[[], int], args: argparse.Namespace) -> int:
    """Load the libraries and `run()`; a Ctrl-C before the loop has written anything leaves no
    empty run folder behind (the loop itself ends cleanly and saves what it has)."""
    from ..offline import use_single_thread_for

    try:
        use_single_thread_for(prepared.config)  # the tiny offline models on the CPU: one torch thread
        prepare_libraries(args)
        return run()
    except KeyboardInterrupt:
        prepared.discard_if_empty()
        raise


def _run(args: argparse.Namespace, prepared: PreparedRun) -> int:
    from ..runner import run_prepared

    printer = ProgressPrinter(prepared.config.num_train_epochs, args.quiet, args.progress_file, args.preview_file)
    try:
        outcome = run_prepared(prepared, callbacks=[printer], log_every_epoch=args.log_every_epoch,
                               optimizer_hook=tell_cuda_graphs if args.cuda_graphs else None)
    finally:
        printer.close()
    record_interruption(outcome.artifacts.run_json)
    print_result(outcome.result, outcome.artifacts.as_dict())
    return report(outcome.result, outcome.artifacts, outcome.optimizer)


def tell_cuda_graphs(optimizer) -> None:
    """--cuda_graphs given explicitly: say why CUDA graphs are not used where the optimiser kept
    quiet about it (a device without CUDA; on a CUDA device it said so itself)."""
    note = optimizer.settings.cuda_graphs_note
    if note and optimizer.device.type != "cuda":
        logger.info("%s: iterations run eagerly", note)


def print_result(result, paths: dict) -> None:
    """The final `SISO_RESULT {...}` line on stdout: status, stop reason, steps, best losses, `paths`
    (when a program reads stdout, as the progress lines: `progress_lines_wanted`)."""
    if not progress_lines_wanted():
        return
    summary = {
        "status": "success" if result.completed and paths.get("lora_path") else result.stop_reason,
        "stop_reason": result.stop_reason,
        "steps_run": result.steps_run,
        "best_step": result.best_step,
        "best_losses": result.best_losses,
        "error": result.error,
        **paths,
    }
    print(format_line(RESULT, summary), flush=True)


def report(result, artifacts, optimizer, labelled: list[tuple[str, str]] | None = None, prog: str = PROG) -> int:
    """The closing lines on stderr (why it stopped, the best iteration, where each file went:
    `labelled`, default the artifacts' own list) and the exit code."""
    reason = optimizer.describe_stop(result.stop_reason, result)
    best = result.describe_best()
    losses = ", ".join(f"{k} {v:.4f}" for k, v in result.best_losses.items())
    stopped = reason if reason.startswith("stopped") else f"stopped: {reason}"  # "stopped early: ..." says it already
    print(f"siso: {stopped}; best {best} ({losses})", file=sys.stderr)
    if not optimizer.uses_ir:
        print("siso: NOTE: optimised with DINO features only (no --ir_features_path)", file=sys.stderr)
    for label, path in labelled if labelled is not None else artifacts.labelled():
        print(f"siso: {label:22s} {path}", file=sys.stderr)
    if result.best_step == 1:
        print("siso: WARNING: the best iteration is the first one, whose LoRA is still zero (the base model)", file=sys.stderr)
    if result.stop_reason == "interrupted":
        return interrupt_exit_code()
    if result.error:
        print_error(prog, result.error)
        return 1
    return 0 if artifacts.lora_path else 1


if __name__ == "__main__":
    sys.exit(main())
