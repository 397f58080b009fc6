"""`siso-demo`: SISO end to end on the tiny offline models and a real photo, with no download.

    siso-demo                          # siso-generate on the tiny SDXL (--model_family flux / sana)
    siso-demo --task edit              # siso-edit: the cat into data/coffee.png, automatic mask
    siso-demo --notebook               # notebook 01 executed headless with papermill (make demo)

The tiny models are written once under outputs/test-assets/ (io/locations.py) and reused. Tiny
random models prove that the pipeline works (generation with gradients, both losses, the
optimiser, early stopping, saving and reloading); they do not draw the subject.

The photos and the output folder are checked before anything is printed or written; a photo
given without --prompt gets a prompt from its file name ("coffee.png" -> "a photo of a
coffee", guessed as siso-eval guesses a class). The runs use one torch thread
(offline.single_thread_env), and the printed command says so (`OMP_NUM_THREADS=1 siso-generate
...`), so that pasted on the same machine it repeats the run (the same losses with the same
package versions).

Exit codes are the command's it runs (siso-generate's, siso-edit's); with --notebook: 0 done,
1 the notebook failed (its executed copy is kept as the log), 2 bad input or no papermill
(nothing is left behind), 130 / 143 interrupted by SIGINT / SIGTERM.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from ..config import MODEL_FAMILIES, class_prompt
from ..errors import SISOInputError, flags_in_messages
from ..io.locations import example_photo, runs_root, test_assets_dir
from .common import OneLineArgumentParser, print_error, tell_where_the_commands_are

PROG = "siso-demo"

DEFAULT_SCENE_CLASS = "cup"  # --task edit: the object of data/coffee.png that the cat replaces


def build_parser() -> OneLineArgumentParser:
    parser = OneLineArgumentParser(prog=PROG, description="Run SISO end to end on tiny offline models and a real photo.")
    parser.add_argument("--task", choices=("generate", "edit"), default="generate",
                        help="generate: optimise a LoRA for the subject (siso-generate); edit: put the subject into the "
                        "scene photo, the mask made automatically by the tiny Grounding-DINO + SAM (siso-edit)")
    parser.add_argument("--notebook", action="store_true",
                        help="execute notebooks/01_generate_lora.ipynb headless with papermill instead of siso-generate")
    parser.add_argument("--model_family", choices=MODEL_FAMILIES, default=None, help="which tiny model to optimise (default sdxl; edit: sdxl only)")
    parser.add_argument("--subject_image_path", default=None, help="the subject photo (default: the shipped data/cat.png)")
    parser.add_argument("--prompt", default=None,
                        help="a simple prompt naming the subject's class (default: from the photo's file name, "
                        "e.g. coffee.png -> 'a photo of a coffee')")
    parser.add_argument("--input_image_path", default=None, help="--task edit: the scene photo (default: the shipped data/coffee.png)")
    parser.add_argument("--input_class", default=None, help=f"--task edit: the scene object the subject replaces (default: {DEFAULT_SCENE_CLASS})")
    parser.add_argument("--assets_dir", default=None, help="where the tiny models are written once and reused (default: outputs/test-assets)")
    parser.add_argument("--output_dir", default=None, help="default: a fresh outputs/runs/<time>-<photo> folder (with --notebook <time>-demo)")
    parser.add_argument("--overwrite", action="store_true", help="replace a LoRA an earlier run left in --output_dir")
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="--notebook: any other parameter of notebook 01, e.g. -p num_train_epochs=10 (repeatable)")
    return parser


def subject_from_photo(path: str | os.PathLike) -> str:
    """The subject's class guessed from a photo's file name, the way siso-eval guesses a class from
    a prompt (evaluation.prompts.guess_class_name): "coffee.png" -> "coffee", "a photo of a dog.jpg"
    -> "dog", "IMG_1234.jpg" -> "IMG"; "subject" when the name has no letters."""
    from ..evaluation.prompts import guess_class_name

    words = " ".join(re.findall(r"[^\W\d_]+", Path(path).stem))  # the name's words, without digits and _
    return guess_class_name(words) if words else "subject"


def check_inputs(args) -> None:
    """Everything the demo can check before it prints or writes anything: the photos, the prompt,
    an earlier LoRA in --output_dir (SISOInputError, one line naming the option)."""
    from ..io.images import load_subject_image
    from ..preflight import check_no_earlier_lora

    load_subject_image(args.subject_image_path)
    if args.task == "edit" and args.input_image_path:
        load_subject_image(args.input_image_path, "scene photo", "input_image_path", scene=True)
    if args.prompt is not None and not args.prompt.strip():
        raise SISOInputError("--prompt is empty: give a short prompt naming the subject's class, e.g. 'a photo of a cat'")
    if args.output_dir and Path(args.output_dir).is_dir() and not args.notebook:  # the notebook demo replaces its own
        check_no_earlier_lora(Path(args.output_dir), args.overwrite, "output_dir")


def by_hand(program: str, command: list[str]) -> str:
    """The command that repeats the run, with the thread setting the demo runs under."""
    threads = os.environ.get("OMP_NUM_THREADS")
    return (f"OMP_NUM_THREADS={shlex.quote(threads)} " if threads else "") + f"{program} {shlex.join(command)}"


def say_prompt(args) -> None:
    """Name the prompt the demo guessed from the photo's file name (once the run is sure to start)."""
    if args.prompt_guessed:
        print(f"{PROG}: prompt {args.prompt!r} (from the file name {Path(args.subject_image_path).name}; --prompt to give "
              "another)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.task == "edit" and args.model_family not in (None, "sdxl"):
        parser.error(f"--task edit runs on SDXL only, not --model_family {args.model_family}")
    if args.task == "generate" and (args.input_image_path or args.input_class):
        parser.error("--input_image_path and --input_class are for --task edit (generation has no scene photo)")
    if args.notebook and args.task == "edit":
        parser.error("--notebook runs notebook 01 (generation); for the edit notebook run notebooks/04_edit_image.ipynb with papermill")
    if args.parameter and not args.notebook:
        parser.error("-p sets a notebook parameter: add --notebook (or pass the siso-generate option to siso-generate)")
    args.subject_image_path = args.subject_image_path or str(example_photo("cat.png"))
    args.assets_dir = args.assets_dir or str(test_assets_dir())
    try:
        with flags_in_messages():
            check_inputs(args)
    except SISOInputError as error:
        print_error(PROG, str(error))
        return 2
    args.subject_class = subject_from_photo(args.subject_image_path)
    args.prompt_guessed = args.prompt is None
    if args.prompt_guessed:
        args.prompt = class_prompt(args.subject_class)
    if args.notebook:
        return _run_notebook(parser, args)
    from ..offline import use_single_thread

    use_single_thread("offline")  # the tiny models on the CPU (offline.single_thread_env decides)
    args.model_family = args.model_family or "sdxl"
    return _run_command(args)


def demo_command(args, assets: dict[str, str]) -> list[str]:
    """The arguments of the siso-generate (or, `args.task` "edit", siso-edit) run the demo makes, in
    the order docs/command-line.md and docs/editing.md show them (a test compares them)."""
    from ..offline import OFFLINE_OVERRIDES

    if args.task == "edit":
        # the subject named as the authors' editing command does (--subject_class), or by the prompt given
        naming = ["--subject_class", args.subject_class] if args.prompt == class_prompt(args.subject_class) else ["--prompt", args.prompt]
        command = [
            "--input_image_path", args.input_image_path or str(example_photo("coffee.png")),
            "--subject_image_path", args.subject_image_path, *naming,
            "--input_class", args.input_class or DEFAULT_SCENE_CLASS,
            "--detector_model", assets["grounding_dino"], "--segmenter_model", assets["sam"],
        ]
    else:
        command = ["--subject_image_path", args.subject_image_path, "--prompt", args.prompt]
    command += [
        "--pretrained_model_name_or_path", assets[args.model_family],
        "--dino_model_name", assets["dino"],
        "--ir_features_path", assets["ir"],
    ]
    for key, value in OFFLINE_OVERRIDES.items():
        command += [f"--{key}", str(value)]
    if args.task != "edit":
        command += ["--model_family", args.model_family]
    if args.output_dir:
        command += ["--output_dir", args.output_dir]
    if args.overwrite:
        command += ["--overwrite"]
    return command


def _run_command(args) -> int:
    from ..offline import ensure_test_assets

    assets = ensure_test_assets(args.assets_dir, families=(args.model_family,))
    command = demo_command(args, assets)
    print("siso-demo: tiny random-weight models: this proves the pipeline works, not the picture quality", file=sys.stderr)
    say_prompt(args)
    print(f"siso-demo: tiny {args.model_family} model: {assets[args.model_family]} (DINO {assets['dino']}, IR {assets['ir']})", file=sys.stderr)
    if args.task == "edit":
        from .edit import main as edit_main

        print(f"siso-demo: tiny Grounding-DINO {assets['grounding_dino']}, SAM {assets['sam']} (the automatic mask)", file=sys.stderr)
        print(f"siso-demo: the same run by hand: {by_hand('siso-edit', command)}", file=sys.stderr)
        return edit_main(command)
    from .generate import main as generate_main

    print(f"siso-demo: the same run by hand: {by_hand('siso-generate', command)}", file=sys.stderr)
    before = run_folders()
    code = generate_main(command)
    if code == 0:
        folder = args.output_dir or new_run_folder(before)
        where = shlex.quote(os.path.abspath(folder)) if folder else "<the run folder above>"
        print(f"siso-demo: score the LoRA (DINO, CLIP-I, CLIP-T, IR, diversities): siso-eval {where}", file=sys.stderr)
    return code


def run_folders() -> set[Path]:
    """The run folders under outputs/runs now (to find the one a run adds)."""
    root = runs_root()
    return set(root.iterdir()) if root.is_dir() else set()


def new_run_folder(before: set[Path]) -> Path | None:
    """The newest run folder (with a run.json) that is not in `before`; None if there is none."""
    added = [folder for folder in run_folders() - before if (folder / "run.json").is_file()]
    return max(added, key=lambda folder: folder.stat().st_mtime, default=None)


def _run_notebook(parser: OneLineArgumentParser, args) -> int:
    """Notebook 01 headless on the offline default; says where everything went."""
    from ..notebooks.papermill import INPUT_ERRORS, SignalGuard, describe_error, execute_generate_notebook, notebook_route_problem
    from ..notebooks.setup import GENERATE_NOTEBOOK, NotebookParameterError, coerce_parameter

    problem = notebook_route_problem(GENERATE_NOTEBOOK)  # papermill, nbformat, ipykernel, a kernel: before any folder
    if problem is not None:
        print_error(PROG, problem)
        return 2
    from ..offline import use_single_thread
    from ..preflight import fresh_run_dir  # light: the kernel, not this process, loads torch
    parameters: dict[str, Any] = {
        "models": "offline",
        **({"model_family": args.model_family} if args.model_family else {}),
        "subject_image_path": str(Path(args.subject_image_path).resolve()),
        "prompt": args.prompt,
        "assets_dir": str(Path(args.assets_dir).resolve()),
        "overwrite": True,
    }
    for item in args.parameter:
        name, equals, value = item.partition("=")
        name = name.strip()
        if not equals:
            parser.error(f"-p {item!r}: give NAME=VALUE, e.g. -p num_train_epochs=10")
        try:
            parameters[name] = coerce_parameter(name, value)  # the text as the parameter's type
        except NotebookParameterError as error:
            parser.error(f"-p {item!r}: {error}")
    # the kernel inherits the thread setting (the notebook makes the same choice for offline models)
    use_single_thread(parameters.get("models"), parameters.get("device"))
    output_dir = Path(args.output_dir) if args.output_dir else fresh_run_dir(runs_root(), "demo")
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters["output_dir"] = str(output_dir.resolve())
    executed = output_dir / GENERATE_NOTEBOOK.name
    if parameters.get("models") != "hub":
        print("siso-demo: tiny random-weight models: this proves the pipeline works, not the picture quality", file=sys.stderr)
    if parameters.get("prompt") == args.prompt:
        say_prompt(args)
    print(f"siso-demo: executing {GENERATE_NOTEBOOK.name} headless with papermill ...", file=sys.stderr)
    started = time.perf_counter()
    try:
        with SignalGuard() as guard:
            execute_generate_notebook(executed, parameters, guard=guard)
    except KeyboardInterrupt as interruption:
        name = getattr(interruption, "signal_name", "SIGINT")
        kept = f"; the executed notebook so far: {executed}" if executed.is_file() else ""
        print(f"siso-demo: interrupted ({name}){kept}", file=sys.stderr)
        return getattr(interruption, "exit_code", 130)
    except Exception as error:  # papermill's execution error names the failing cell
        if getattr(error, "ename", None) in INPUT_ERRORS:
            print_error(PROG, str(getattr(error, "evalue", error)))
            if not args.output_dir:  # bad input is no result: leave no folder behind
                executed.unlink(missing_ok=True)
                _remove_if_empty(output_dir)
            return 2
        print_error(PROG, f"the notebook failed: {describe_error(error)}")
        if executed.is_file():  # only a notebook that exists is named
            print(f"siso-demo: executed notebook (with the error): {executed}", file=sys.stderr)
        elif not args.output_dir:
            _remove_if_empty(output_dir)
        return 1
    print(f"siso-demo: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    for label, name in (
        ("executed notebook", executed.name),
        ("LoRA (diffusers)", "pytorch_lora_weights.safetensors"),
        ("LoRA (ComfyUI/Kohya)", "siso_lora_kohya.safetensors"),
        ("best image", "result.png"),
        ("loss plot", "loss_curve.png"),
        ("run summary", "run.json"),
    ):
        path = output_dir / name
        if path.exists():
            print(f"siso-demo: {label:22s} {path}", file=sys.stderr)
    print("siso-demo: open the executed notebook in JupyterLab to read the report", file=sys.stderr)
    print(f"siso-demo: score the LoRA (DINO, CLIP-I, CLIP-T, IR, diversities): siso-eval {output_dir}", file=sys.stderr)
    tell_where_the_commands_are("siso-demo")
    return 0


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()  # only an empty folder goes
    except OSError:
        pass


if __name__ == "__main__":
    raise SystemExit(main())
