"""`siso-eval RUN_FOLDER [RUN_FOLDER ...]`: score runs' LoRAs (see evaluate.py for the metrics), and
edit runs by their edited photo (edit_scores.py).

    siso-eval outputs/runs/<run>                                  # built-in prompts, 4 seeds
    siso-eval outputs/runs/<run> --prompts dreambench_live.txt --class_name dog --seeds 4
    siso-eval outputs/runs/<run> --prompt "a {class} on the moon" --prompt "a {class} in Paris"

Judges ("auto"): DreamBench's DINO ViT-S/16 and CLIP ViT-B/32 (OpenAI), and IR from the run's own
checkpoint. A run made with the offline tiny models (siso-demo, the tests) is judged by the tiny
random-weight DINO and CLIP written beside them, so it works offline: its numbers test the
plumbing, not a picture. Every input is checked before torch is imported; bad input is one line
and exit code 2. Several runs share the loaded judges (and the base model, if it is the same).
"""

from __future__ import annotations

import sys

from ..errors import SISOInputError
from ..evaluation.defaults import DEFAULT_CLIP_PRETRAINED, DEFAULT_DETECTOR, judge_names
from ..evaluation.prompts import GENERIC_TEMPLATES, evaluation_prompts, read_prompt_file
from ..text import count
from .common import OneLineArgumentParser, quiet_libraries, run_command


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(
        prog="siso-eval",
        description="Score SISO runs: DINO, CLIP-I, IR similarity to the subject photo, CLIP-T to the prompts, "
        "seed diversity (ours: variety across seeds) and the paper's diversity (MSE to the photo); with and without the "
        "LoRA (same seeds). An edit run (siso-edit) is scored on its edited photo instead: DINO, CLIP-I, IR of the "
        "masked region against the subject photo, and the background's MSE to the scene outside the mask.",
    )
    parser.add_argument("runs", nargs="+", metavar="RUN_FOLDER", help="run folders (siso-generate, notebook 01 or a sweep wrote them)")
    prompts = parser.add_argument_group("prompts")
    prompts.add_argument("--prompts", dest="prompt_file", default=None,
                         help="text file, one prompt template per line ({class} or DreamBench's {0} {1}); "
                         f"default: {len(GENERIC_TEMPLATES)} built-in prompts")
    prompts.add_argument("--prompt", dest="prompt_templates", action="append", default=None,
                         help="a prompt template; repeat for more (added after --prompts)")
    prompts.add_argument("--class_name", default=None, help="the subject's class for the templates (default: from the run's prompt)")
    prompts.add_argument("--seeds", type=int, default=4, help="seeds 0..N-1 per prompt (seed diversity needs 2 or more)")
    prompts.add_argument("--subject_image_path", default=None,
                         help="the subject photo (default: the one run.json names; for a photo that has moved)")
    render = parser.add_argument_group("rendering (default: as the run was optimised)")
    render.add_argument("--pretrained_model_name_or_path", default=None,
                        help="the base model (default: the one the LoRA names; for a local folder that has moved)")
    render.add_argument("--num_inference_steps", type=int, default=None)
    render.add_argument("--guidance_scale", type=float, default=None)
    render.add_argument("--resolution", type=int, default=None)
    render.add_argument("--lora_scale", type=float, default=1.0)
    render.add_argument("--no_base", action="store_true", help="skip the images without the LoRA (no delta)")
    render.add_argument("--baseline", choices=("none", "reference"), default="none",
                        help="reference: also render FLUX.2 klein's zero-shot reference mode (the subject photo as its reference "
                        "image, no LoRA, same prompts and seeds) and score it beside the LoRA (klein runs only)")
    judges = parser.add_argument_group("judges")
    judges.add_argument("--dino_model_name", default="auto",
                        help="timm name or local timm folder (auto: vit_small_patch16_224.dino; a tiny offline run's own tiny DINO)")
    judges.add_argument("--clip_model_name", default="auto",
                        help="open_clip name, hf-hub:org/name or local folder (auto: ViT-B-32; a tiny offline run's own tiny CLIP)")
    judges.add_argument("--clip_pretrained", default=DEFAULT_CLIP_PRETRAINED, help="open_clip pretrained tag for a library model name")
    judges.add_argument("--ir_features_path", default=None, help="IR checkpoint (default: the one the run used)")
    judges.add_argument("--no_ir", action="store_true", help="no IR score (when ir_features.pth is not at hand)")
    judges.add_argument("--crop_subject", action="store_true",
                        help="crop the photo and each image to the class's Grounding-DINO box before DINO, CLIP-I and IR (the paper's protocol)")
    judges.add_argument("--detector_model", default=DEFAULT_DETECTOR, help="Grounding-DINO for --crop_subject (hub id or local folder)")
    judges.add_argument("--box_threshold", type=float, default=0.3, help="Grounding-DINO box threshold for --crop_subject")
    where = parser.add_argument_group("where")
    where.add_argument("--device", default="auto", help="auto, cuda, cuda:N, xpu, mps or cpu")
    where.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"), help="the generator's weights")
    where.add_argument("--batch_size", type=int, default=16, help="images per judge batch")
    where.add_argument("--output_dir", default=None, help="default: RUN_FOLDER/eval (only with one run folder)")
    return parser


def _check(args) -> tuple[list, list[str] | None]:
    """Everything that needs no model: the runs, prompts, numbers and local judge paths."""
    from ..io.model_paths import check_clip_name, check_ir_checkpoint_path, check_local_base_model, check_local_dino, is_hub_id
    from ..preflight import check_in_hub_cache
    from ..evaluation.edit_scores import edit_files
    from ..evaluation.evaluate import check_reference_baseline
    from ..evaluation.reports import check_output_dir, is_edit_run, read_run, subject_photo_path

    if args.output_dir and len(args.runs) > 1:
        raise SISOInputError(f"--output_dir names one folder but {len(args.runs)} runs were given: evaluate them one at a time, or drop --output_dir")
    for name, value in (("--seeds", args.seeds), ("--batch_size", args.batch_size)):
        if value < 1:
            raise SISOInputError(f"{name} must be 1 or more, not {value}")
    for name, value in (("--num_inference_steps", args.num_inference_steps), ("--resolution", args.resolution)):
        if value is not None and value < 1:
            raise SISOInputError(f"{name} must be 1 or more, not {value}")
    if args.resolution is not None and (args.resolution % 8 or not 64 <= args.resolution <= 2048):
        raise SISOInputError(f"--resolution {args.resolution} is not usable: give a multiple of 8 between 64 and 2048")
    if args.class_name is not None and not args.class_name.strip():
        raise SISOInputError("--class_name is empty: give the subject's class, e.g. --class_name dog (or leave it out to read it from the run's prompt)")
    if args.output_dir:
        check_output_dir(args.output_dir)
    templates = read_prompt_file(args.prompt_file) if args.prompt_file else []
    templates += [t.strip() for t in args.prompt_templates or [] if t.strip()]
    if args.prompt_templates is not None and not templates:
        raise SISOInputError("--prompt is empty: give a prompt, e.g. --prompt 'a {class} on the beach'")
    evaluation_prompts(args.class_name or "x", templates or None)  # a bad placeholder is refused now, not after loading
    infos = [read_run(run) for run in args.runs]
    edits = [info for info in infos if is_edit_run(info)]
    if edits:
        warn_rendering_options(args, edits)
    hub_bases = []
    for info in infos:
        if info in edits:
            edit_files(info)  # its edited photo, scene and mask are what is scored
        else:
            if args.baseline == "reference":
                try:
                    check_reference_baseline(info.model_family)
                except SISOInputError as error:  # name the run: several may be given
                    raise SISOInputError(f"run {str(info.folder)!r}: {error}") from None
            base = args.pretrained_model_name_or_path or info.base_model
            check_local_base_model(base, info.model_family)
            if is_hub_id(base):
                hub_bases.append(base)
        subject_photo_path(info, args.subject_image_path)
        if not args.no_ir:
            path = args.ir_features_path or info.run.get("parameters", {}).get("ir_features_path")
            if not path:
                raise SISOInputError(f"run {str(info.folder)!r} used no IR checkpoint: pass --ir_features_path, or --no_ir to score without IR")
            try:
                check_ir_checkpoint_path(path)
            except SISOInputError as error:
                raise SISOInputError(f"{str(error).split(':')[0]}: pass --ir_features_path with its new place, or --no_ir to score without IR") from error
    if args.dino_model_name != "auto":
        check_local_dino(args.dino_model_name)
    if args.clip_model_name != "auto":
        check_clip_name(args.clip_model_name)
    # the hub models last: a mistyped local path is named before a default model missing from the cache
    for base in dict.fromkeys(hub_bases):  # with HF_HUB_OFFLINE=1: in the hub cache, said before torch loads
        check_in_hub_cache(base, "model_index.json", "base model", "pretrained_model_name_or_path")
    check_judges_in_hub_cache(infos[0].base_model, args.dino_model_name, args.clip_model_name, args.clip_pretrained,
                              args.detector_model if args.crop_subject else None)
    return infos, templates or None


# the hub repository of open_clip's pretrained CLIP weights (open_clip.get_pretrained_cfg(name, tag)["hf_hub"],
# written here: open_clip imports torch) and the weight files open_clip looks for there
CLIP_HUB_IDS = {("ViT-B-32", "openai"): "timm/vit_base_patch32_clip_224.openai"}
CLIP_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def check_judges_in_hub_cache(base_model: str, dino: str = "auto", clip: str = "auto",
                              clip_pretrained: str = DEFAULT_CLIP_PRETRAINED, detector: str | None = None) -> None:
    """With HF_HUB_OFFLINE=1: the judges of a run of `base_model` that come from the hub (DINO, CLIP,
    the `detector` of --crop_subject) are in the hub cache, said in one line before torch loads
    (else 10-15 s later). siso-eval, and siso-sweep --eval before its runs."""
    from ..io.model_paths import is_hub_id
    from ..preflight import check_in_hub_cache, dino_hub_id, hub_is_offline

    if not hub_is_offline():
        return
    dino, clip, _ = judge_names(base_model, dino, clip)
    if dino_hub_id(dino):
        check_in_hub_cache(dino_hub_id(dino), "config.json", "DINO judge", "dino_model_name")
    if clip.startswith("hf-hub:"):
        check_in_hub_cache(clip[len("hf-hub:"):], "open_clip_config.json", "CLIP judge", "clip_model_name")
    elif (clip, clip_pretrained) in CLIP_HUB_IDS:
        check_in_hub_cache(CLIP_HUB_IDS[clip, clip_pretrained], CLIP_WEIGHT_FILES,
                           f"CLIP judge {clip} ({clip_pretrained}) from", "clip_model_name")
    if detector and is_hub_id(detector):
        check_in_hub_cache(detector, "config.json", "Grounding-DINO", "detector_model")


# options that shape what is rendered: an edit run renders nothing (its edited photo is scored)
RENDERING_OPTIONS = ("prompt_file", "prompt_templates", "class_name", "seeds", "pretrained_model_name_or_path",
                     "num_inference_steps", "guidance_scale", "resolution", "lora_scale", "no_base", "baseline", "crop_subject")


def warn_rendering_options(args, edits: list) -> None:
    """One line per rendering option given that an edit run does not use."""
    defaults = build_parser().parse_args([str(edits[0].folder)])
    flags = {"prompt_file": "--prompts", "prompt_templates": "--prompt"}
    for name in RENDERING_OPTIONS:
        if getattr(args, name) != getattr(defaults, name):
            print(f"siso-eval: warning: ignoring {flags.get(name, '--' + name)} for the edit run{'s' if len(edits) > 1 else ''} "
                  f"({', '.join(info.folder.name for info in edits)}): an edit is scored on its edited photo, nothing is rendered",
                  file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command(args, lambda: _evaluate(args, *_check(args)), prefix="siso-eval", prog="siso-eval",
                       interrupted="interrupted: runs already scored keep their eval/; the one in progress was not written")


def _evaluate(args, infos, templates) -> int:
    from ..evaluation.evaluate import EvalSettings, Evaluator
    from ..evaluation.judges import Judges

    quiet_libraries()
    dino, clip, tiny = judge_names(infos[0].base_model, args.dino_model_name, args.clip_model_name)
    if tiny:
        print("siso-eval: tiny random-weight judges (an offline test run): the numbers test the plumbing, not the picture", file=sys.stderr)
    detector = None
    if args.crop_subject:
        from ..features.detection import SubjectDetector

        detector = SubjectDetector.from_pretrained(args.detector_model, device=args.device)
    judges = Judges.from_names(dino, clip, args.clip_pretrained, None, device=args.device, batch_size=args.batch_size)
    evaluator = Evaluator(judges, device=args.device, precision=args.precision, detector=detector)
    settings = EvalSettings(
        templates=templates, class_name=args.class_name, seeds=tuple(range(args.seeds)),
        num_inference_steps=args.num_inference_steps, guidance_scale=args.guidance_scale, resolution=args.resolution,
        lora_scale=args.lora_scale, with_base=not args.no_base, crop_subject=args.crop_subject, box_threshold=args.box_threshold,
        subject_image_path=args.subject_image_path, base_model=args.pretrained_model_name_or_path,
        baseline=None if args.baseline == "none" else args.baseline,
    )
    for info in infos:
        judges.set_ir(None if args.no_ir else args.ir_features_path or info.run["parameters"]["ir_features_path"])
        report = evaluator.evaluate(info.folder, settings, args.output_dir, progress=lambda m: print(f"siso-eval: {m}", file=sys.stderr))
        record = report.record
        if record.get("task") == "edit":
            print(f"siso-eval: {info.folder}: an edit run: its edited photo is scored (the mask's region against the subject "
                  "photo, the background against the scene), not its LoRA", file=sys.stderr)
        else:
            print(f"siso-eval: {info.folder}: class {record['class_name']!r} ({record['class_name_source']}), "
                  f"{count(len(record['prompts']), 'prompt')} x {count(len(record['seeds']), 'seed')}", file=sys.stderr)
        print(f"siso-eval: {format_summary(report.summary)}", file=sys.stderr)
        print(f"siso-eval: metrics {report.output_dir / 'metrics.json'}; grid {report.output_dir / 'grid.png'}", file=sys.stderr)
        if args.output_dir:
            print("siso-eval: run.json keeps the scores of the run's own eval/ (a side evaluation is not recorded there)", file=sys.stderr)
    return 0


VARIANT_LABELS = {"lora": "with LoRA:", "base": "base model:", "delta": "LoRA - base:",
                  "reference": "klein reference mode (baseline):", "delta_reference": "LoRA - reference mode:",
                  "edited": "edited photo:", "scene": "scene before:"}
EDIT_VARIANT_LABELS = {**VARIANT_LABELS, "delta": "edited - scene:"}
# the two diversities are named so that neither is read as the other (evaluation/evaluate.py)
METRIC_LABELS = {"dino": "DINO", "clip_i": "CLIP-I", "clip_t": "CLIP-T", "ir": "IR", "seed_diversity": "seed-diversity(ours)",
                 "paper_diversity_mse": "paper-diversity(MSE-to-photo)", "background_mse": "background-MSE"}


def format_summary(summary: dict) -> str:
    """"with LoRA: DINO 0.481 ...; base model: ...; LoRA - base: ..." on one line (higher is
    closer to the subject / the prompt; seed diversity: more varied across seeds; the paper's
    diversity: further from the photo). An edit's summary: "edited photo: ...; scene before: ..."."""
    labels = EDIT_VARIANT_LABELS if "edited" in summary else VARIANT_LABELS
    parts = []
    for variant, values in summary.items():
        shown = " ".join(f"{METRIC_LABELS.get(k, k)} {_number(v, variant.startswith('delta'))}" for k, v in values.items() if v is not None)
        parts.append(f"{labels[variant]} {shown}")
    return "; ".join(parts)


def _number(value: float, signed: bool) -> str:
    """3 decimals, or 3 significant digits for a small number (an MSE)."""
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    return text if abs(value) >= 0.01 or value == 0 else (f"{value:+.3g}" if signed else f"{value:.3g}")


if __name__ == "__main__":
    raise SystemExit(main())
