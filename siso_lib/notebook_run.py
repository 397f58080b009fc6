"""What `notebooks/01_generate_lora.ipynb` does, as plain, testable Python.

The notebook's `parameters` cell (papermill) holds every SISO knob set to `None`, which means
"the library's default": `SISOConfig()` for the real models, `offline_config()` for the tiny
offline ones. `prepare_run(globals())` turns those cells into one checked `NotebookSetup`, so
the numbers live only in `siso_lib/config.py` and `siso_lib/offline.py`.

Headless mode (`run_headless`) runs SISO without widgets: one text line per iteration, a live
figure (loss curves, subject, current and best image) updated every few seconds, and the same
figure at the end, so an executed notebook is a readable report. The interactive panel
(`siso_lib.notebook_ui.SISOPanel`) uses the same recorder and figures.

`python -m siso_lib.notebook_run` (what `make demo` calls) executes the notebook headless with
papermill on the offline default and prints where everything went.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as _dt
import html
import io
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import SISOConfig
from .offline import DEFAULT_ASSETS_DIR, DEFAULT_SUBJECT, REPO_ROOT

PAPER_URL = "https://arxiv.org/abs/2503.16025"
# The repository the Colab badges and the Colab install cell point at (one place; tests check the
# notebooks use it). Colab users can point the install cell elsewhere with SISO_REPO_URL.
GITHUB_REPO = "siso-lab/siso-lab"
GITHUB_BRANCH = "main"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
GENERATE_NOTEBOOK = NOTEBOOKS_DIR / "01_generate_lora.ipynb"
DEFAULT_RUNS_ROOT = REPO_ROOT / "outputs" / "runs"

MODELS = ("auto", "hub", "offline")
# every SISOConfig field is a notebook parameter, except the free-form `extra` dict
SISO_KNOBS = tuple(f.name for f in dataclasses.fields(SISOConfig) if f.name != "extra")
# the notebook's own parameters, besides the SISO knobs
NOTEBOOK_OPTIONS = ("models", "interactive", "subject_image_path", "output_dir", "overwrite", "assets_dir")
PARAMETER_NAMES = NOTEBOOK_OPTIONS + SISO_KNOBS


def colab_badge_url(notebook_name: str) -> str:
    return f"https://colab.research.google.com/github/{GITHUB_REPO}/blob/{GITHUB_BRANCH}/notebooks/{notebook_name}"


def in_colab() -> bool:
    return "google.colab" in sys.modules


# ----------------------------------------------------------------------------- parameters
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SISOConfig)}


def _to_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "1", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "0", "off"):
        return False
    raise ValueError(f"{name}={value!r} is not a yes/no value: use True or False")


def coerce_knob(name: str, value: Any) -> Any:
    """Give a knob the type SISOConfig declares (sweep files and papermill may hand in strings)."""
    if value is None:
        return None
    kind = _FIELD_TYPES[name].replace(" ", "")
    base = kind.split("|")[0]
    try:
        if base == "bool":
            return _to_bool(name, value)
        if base == "int":
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if base == "float":
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if base == "str":
            return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} is not a valid {base}") from None
    return value


def resolve_models(models: str | None) -> str:
    """'auto' -> 'hub' where an accelerator (CUDA/XPU/MPS) is present, else 'offline'."""
    models = (models or "auto").lower()
    if models not in MODELS:
        raise ValueError(f"models={models!r} is unknown: use 'hub' (SDXL-Turbo + DINOv2), 'offline' (tiny test models) or 'auto'")
    if models != "auto":
        return models
    from .devices import pick_device

    return "hub" if pick_device("auto").type != "cpu" else "offline"


@dataclass
class NotebookSetup:
    """Everything one notebook run needs, resolved from the parameters cell."""

    config: SISOConfig
    subject_image_path: str
    models: str  # "hub" or "offline"
    output_dir: str | None  # None: a fresh folder under runs_root for every run
    overwrite: bool = False
    runs_root: str = str(DEFAULT_RUNS_ROOT)
    assets: dict[str, str] | None = None
    sources: dict[str, str] = field(default_factory=dict)  # knob -> "default" | "offline default" | "set"

    def describe(self) -> list[tuple[str, Any, str]]:
        return [(name, getattr(self.config, name), self.sources.get(name, "default")) for name in SISO_KNOBS]

    def to_html(self) -> str:
        models = {
            "hub": "real models from the model hub (SDXL-Turbo, DINOv2; IR from ir_features_path)",
            "offline": "<b>tiny random-weight offline models</b>: they prove the pipeline works; they do not draw the subject",
        }[self.models]
        rows = "".join(
            f"<tr><td style='text-align:left'><code>{html.escape(name)}</code></td>"
            f"<td style='text-align:left'>{'<b>' if source != 'default' else ''}{html.escape(repr(value))}"
            f"{'</b>' if source != 'default' else ''}</td><td style='text-align:left'>{source}</td></tr>"
            for name, value, source in self.describe()
        )
        output = self.output_dir or f"a fresh folder under {self.runs_root}"
        return (
            f"<p><b>models:</b> {models}<br><b>subject:</b> <code>{html.escape(self.subject_image_path)}</code>"
            f"<br><b>output:</b> <code>{html.escape(output)}</code></p>"
            "<table><thead><tr><th style='text-align:left'>setting</th><th style='text-align:left'>value</th>"
            f"<th style='text-align:left'>from</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def prepare_run(namespace: Mapping[str, Any], **changes: Any) -> NotebookSetup:
    """Resolve the notebook parameters found in `namespace` (e.g. `globals()`) into a NotebookSetup.

    A knob left at None takes the library default; `changes` override the namespace.
    """
    values = {name: namespace[name] for name in PARAMETER_NAMES if name in namespace}
    unknown = sorted(set(changes) - set(PARAMETER_NAMES))
    if unknown:
        raise ValueError(f"unknown notebook parameter(s): {', '.join(unknown)}")
    values.update(changes)
    models = resolve_models(values.get("models"))
    knobs = {name: coerce_knob(name, values[name]) for name in SISO_KNOBS if values.get(name) is not None}
    defaults = SISOConfig()
    assets = None
    if models == "offline":
        from .offline import ensure_test_assets, offline_config

        assets = ensure_test_assets(values.get("assets_dir") or DEFAULT_ASSETS_DIR)
        base = offline_config(assets)
    else:
        base = defaults
    config = base.replace(**knobs)
    config.validate()
    sources = {}
    for name in SISO_KNOBS:
        if name in knobs:
            sources[name] = "set"
        elif getattr(base, name) != getattr(defaults, name):
            sources[name] = "offline default"
        else:
            sources[name] = "default"
    subject = values.get("subject_image_path") or str(DEFAULT_SUBJECT)
    output_dir = values.get("output_dir") or None
    return NotebookSetup(
        config=config,
        subject_image_path=str(subject),
        models=models,
        output_dir=None if output_dir is None else str(output_dir),
        overwrite=bool(values.get("overwrite") or False),
        assets=assets,
        sources=sources,
    )


def quiet_model_loading() -> None:
    """No progress bars from diffusers / transformers / the hub while models load.

    In a notebook they are tqdm *widgets*: dead "model not found" widgets in an executed
    notebook, or bars dropped into whatever cell is active when a background run loads.
    """
    import logging
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    for name in ("diffusers", "transformers", "timm", "huggingface_hub", "accelerate", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import diffusers.utils.logging as diffusers_logging
        import transformers.utils.logging as transformers_logging

        diffusers_logging.disable_progress_bar()
        transformers_logging.disable_progress_bar()
    except ImportError:
        pass
    try:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    except ImportError:
        pass


# ----------------------------------------------------------------------------- recording and figures
class RunRecorder:
    """A SISO callback that keeps what the notebook shows: history, first/current/best image."""

    def __init__(self):
        self.lock = threading.Lock()
        self.history: list[dict] = []
        self.max_steps = 0
        self.first_image = None  # [1,3,H,W] CPU tensors
        self.current_image = None
        self.best_image = None
        self.best_step: int | None = None
        self.best_loss: float | None = None
        self.last_event = None

    def __call__(self, event) -> None:
        with self.lock:
            self.history.append({"step": event.step, **event.losses})
            self.max_steps = event.max_steps
            if self.first_image is None:
                self.first_image = event.image
            self.current_image = event.image
            if event.is_best:
                self.best_image = event.image
            self.best_step, self.best_loss = event.best_step, event.best_loss
            self.last_event = event

    def snapshot(self) -> dict:
        with self.lock:
            return {
                "history": list(self.history),
                "first": self.first_image,
                "current": self.current_image,
                "best": self.best_image,
                "best_step": self.best_step,
                "max_steps": self.max_steps,
            }


def figure_png(figure, dpi: int = 80) -> bytes:
    """A matplotlib Figure (built without pyplot) as PNG bytes."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def show_figure(figure, dpi: int = 100) -> None:
    """Display a matplotlib Figure inline as a PNG (works without pyplot, in any kernel)."""
    from IPython.display import Image, display

    display(Image(data=figure_png(figure, dpi=dpi), format="png"))


def pil_png(image, max_side: int | None = None) -> bytes:
    if max_side and max(image.size) > max_side:
        image = image.copy()
        image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def integer_iterations(*axes) -> None:
    """Whole-number ticks on the iteration axis."""
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _show_image(ax, image, title: str) -> None:
    from .images import tensor_to_pil

    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    if image is None:
        ax.text(0.5, 0.5, "-", ha="center", va="center", transform=ax.transAxes)
        return
    pil = image if hasattr(image, "size") and not hasattr(image, "dim") else tensor_to_pil(image)
    ax.imshow(pil, interpolation="nearest" if max(pil.size) < 256 else "antialiased")


def dashboard_figure(snapshot: dict, subject_image=None, title: str | None = None, last_label: str = "current"):
    """Loss curves (total; DINO and IR; best marked) over subject / first / current / best images."""
    from matplotlib.figure import Figure

    from .plots import draw_losses

    figure = Figure(figsize=(10, 6.4), dpi=100)
    grid = figure.add_gridspec(2, 4, height_ratios=(1.0, 1.05))
    ax_total = figure.add_subplot(grid[0, 0:2])
    ax_terms = figure.add_subplot(grid[0, 2:4])
    draw_losses(ax_total, ax_terms, snapshot["history"], snapshot["best_step"])
    integer_iterations(ax_total, ax_terms)
    history = snapshot["history"]
    n = len(history)
    best = snapshot["best_step"]
    panels = [
        (subject_image, "subject photo"),
        (snapshot["first"], "iteration 1 (LoRA = 0)"),
        (snapshot["current"], f"{last_label}: iteration {n}" if n else last_label),
        (snapshot["best"], ("best" if last_label == "last" else "best so far")
         + (f": iteration {best}" if best is not None else "")),
    ]
    for column, (image, label) in enumerate(panels):
        _show_image(figure.add_subplot(grid[1, column]), image, label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


def step_line(event) -> str:
    terms = ", ".join(f"{k} {v:+.4f}" for k, v in event.losses.items() if k != "total")
    best = f"best {event.best_loss:+.4f} @ {event.best_step}"
    return (
        f"iteration {event.step:>3}/{event.max_steps}  loss {event.losses['total']:+.4f}"
        f" ({terms})  {best}  patience {event.patience_count}  {event.step_seconds:.2f} s"
        + (f"  -> stop: {event.stop_reason}" if event.stop_reason else "")
    )


class LiveFigure:
    """A callback that redraws one inline dashboard figure every `every_seconds` (display_id updates)."""

    def __init__(self, recorder: RunRecorder, subject_image, title: str | None = None, every_seconds: float = 2.0):
        self.recorder, self.subject_image, self.title = recorder, subject_image, title
        self.every_seconds = every_seconds
        self.handle = None
        self.last = 0.0

    def _image(self, last_label: str = "current"):
        from IPython.display import Image

        figure = dashboard_figure(self.recorder.snapshot(), self.subject_image, self.title, last_label)
        return Image(data=figure_png(figure), format="png")

    def __call__(self, event) -> None:
        now = time.monotonic()
        if now - self.last < self.every_seconds and event.stop_reason is None:
            return
        self.update()

    def update(self, last_label: str = "current") -> None:
        from IPython.display import display

        self.last = time.monotonic()
        if self.handle is None:
            self.handle = display(self._image(last_label), display_id=True)
        else:
            self.handle.update(self._image(last_label))


# ----------------------------------------------------------------------------- one run
@dataclass
class NotebookRun:
    """One run's inputs and what it produced (also the panel's result)."""

    config: SISOConfig
    subject_image_path: str
    output_dir: str | None = None
    recorder: RunRecorder = field(default_factory=RunRecorder)
    outcome: Any = None  # runner.RunOutcome
    error: str | None = None
    traceback: str | None = None
    wall_seconds: float | None = None

    @property
    def finished(self) -> bool:
        return self.outcome is not None


def run_output_dir(setup_output_dir: str | None, runs_root: str | Path, subject_image_path: str) -> str:
    """The folder a run writes into: the one asked for, or a fresh one under runs_root."""
    if setup_output_dir:
        return str(setup_output_dir)
    from .runner import fresh_run_dir

    return str(fresh_run_dir(runs_root, label=Path(subject_image_path).stem))


def execute_run(
    run: NotebookRun,
    overwrite: bool = False,
    callbacks: tuple | list = (),
    optimizer_hook: Callable | None = None,
) -> NotebookRun:
    """run_siso with the recorder first among the callbacks; fills run.outcome and wall time."""
    from .runner import run_siso

    started = time.perf_counter()
    try:
        run.outcome = run_siso(
            run.config,
            run.subject_image_path,
            output_dir=run.output_dir,
            callbacks=[run.recorder, *callbacks],
            overwrite=overwrite,
            optimizer_hook=optimizer_hook,
            extra_record={"driver": "notebook"},
        )
    finally:
        run.wall_seconds = time.perf_counter() - started
    return run


def _subject_pil(path: str):
    from .images import load_subject_image

    return load_subject_image(path).image


def run_headless(setup: NotebookSetup, live_every_seconds: float = 2.0, print_steps: bool = True) -> NotebookRun:
    """One SISO run without widgets: progress lines, a live inline figure, artefacts on disk."""
    from IPython.display import display, Markdown

    quiet_model_loading()
    subject = _subject_pil(setup.subject_image_path)  # fails early, with a clear message, on a bad photo
    output_dir = run_output_dir(setup.output_dir, setup.runs_root, setup.subject_image_path)
    run = NotebookRun(setup.config, setup.subject_image_path, output_dir)
    display(Markdown(f"Running SISO, writing to `{output_dir}`"))
    live = LiveFigure(run.recorder, subject, title=f"SISO: {setup.config.prompt[:60]}", every_seconds=live_every_seconds)
    callbacks = [live]
    if print_steps:
        callbacks.insert(0, lambda event: print(step_line(event), flush=True))
    execute_run(run, overwrite=setup.overwrite, callbacks=callbacks)
    live.update(last_label="last")
    return run


# ----------------------------------------------------------------------------- results
def summary_markdown(run: NotebookRun) -> str:
    outcome = run.outcome
    result, artifacts = outcome.result, outcome.artifacts
    reason = outcome.optimizer.describe_stop(result.stop_reason)
    best = result.describe_best()
    losses = ", ".join(f"{k} {v:+.4f}" for k, v in result.best_losses.items())
    lines = [
        f"**Stopped:** {reason}. **Best:** {best} ({losses}). "
        f"**Time:** {result.elapsed_seconds:.1f} s optimising, {run.wall_seconds or 0:.1f} s with loading.",
    ]
    if not outcome.optimizer.uses_ir:
        lines.append("**Note:** optimised with DINO features only (no `ir_features_path`); the paper uses DINO + IR.")
    if result.error:
        lines.append(f"**Error:** {result.error}")
    if result.best_step == 1:
        lines.append("**Warning:** the best iteration is the first one, whose LoRA is still zero (the base model).")
    lines.append("")
    lines.append("| file | path |\n| --- | --- |")
    for label, path in artifacts.labelled():
        lines.append(f"| {label} | `{path}` |")
    return "\n".join(lines)


def show_results(run: NotebookRun | None) -> None:
    """The final report of a run: loss curves and images, the stop reason, the files written."""
    from IPython.display import Image, Markdown, display

    if run is None or not run.finished:
        message = run.error if run is not None and run.error else "No finished run yet: press **Run** in the panel above, then run this cell again."
        display(Markdown(message))
        return
    subject = _subject_pil(run.subject_image_path)
    figure = dashboard_figure(run.recorder.snapshot(), subject, title=f"SISO: {run.config.prompt[:60]}", last_label="last")
    display(Image(data=figure_png(figure), format="png"))
    display(Markdown(summary_markdown(run)))


# ----------------------------------------------------------------------------- papermill
def execute_generate_notebook(
    output_notebook: str | Path,
    parameters: dict[str, Any],
    notebook: str | Path = GENERATE_NOTEBOOK,
    kernel_name: str | None = None,
    log_output: bool = False,
    execution_timeout: int | None = None,
) -> None:
    """Run 01_generate_lora.ipynb headless with papermill (interactive=False unless given)."""
    import papermill

    parameters = {"interactive": False, **parameters}
    papermill.execute_notebook(
        str(notebook),
        str(output_notebook),
        parameters=parameters,
        kernel_name=kernel_name,
        progress_bar=False,
        log_output=log_output,
        cwd=str(Path(notebook).resolve().parent),
        execution_timeout=execution_timeout,
    )


def demo_main(argv: list[str] | None = None) -> int:
    """`make demo`: run 01_generate_lora.ipynb headless on the offline default and say where things went."""
    parser = argparse.ArgumentParser(
        prog="python -m siso_lib.notebook_run",
        description="Execute notebooks/01_generate_lora.ipynb headless (papermill) on the tiny offline models.",
    )
    parser.add_argument("--subject_image_path", default=str(DEFAULT_SUBJECT))
    parser.add_argument("--assets_dir", default=str(DEFAULT_ASSETS_DIR))
    parser.add_argument("--output_dir", default=None, help="default: a fresh outputs/runs/<time>-demo folder")
    parser.add_argument("--models", default="offline", choices=MODELS)
    parser.add_argument("-p", "--parameter", action="append", default=[], metavar="NAME=VALUE",
                        help="any other notebook parameter, e.g. -p num_train_epochs=10 (repeatable)")
    args = parser.parse_args(argv)
    from .runner import fresh_run_dir

    output_dir = Path(args.output_dir) if args.output_dir else fresh_run_dir(DEFAULT_RUNS_ROOT, "demo")
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters: dict[str, Any] = {
        "models": args.models,
        "subject_image_path": str(Path(args.subject_image_path).resolve()),
        "assets_dir": str(Path(args.assets_dir).resolve()),
        "output_dir": str(output_dir.resolve()),
        "overwrite": True,
    }
    for item in args.parameter:
        name, _, value = item.partition("=")
        if name not in PARAMETER_NAMES or not _:
            parser.error(f"-p {item!r}: give NAME=VALUE with a notebook parameter name ({', '.join(PARAMETER_NAMES)})")
        parameters[name] = parse_value(value)
    executed = output_dir / GENERATE_NOTEBOOK.name
    if args.models != "hub":
        print("siso demo: tiny random-weight models: this proves the pipeline works, not the picture quality", file=sys.stderr)
    print(f"siso demo: executing {GENERATE_NOTEBOOK.relative_to(REPO_ROOT)} headless with papermill ...", file=sys.stderr)
    started = time.perf_counter()
    try:
        execute_generate_notebook(executed, parameters)
    except Exception as error:  # papermill's execution error names the failing cell
        print(f"siso demo: the notebook failed: {str(error).strip().splitlines()[-1] if str(error).strip() else error}", file=sys.stderr)
        print(f"siso demo: executed notebook (with the error): {executed}", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - started
    print(f"siso demo: done in {seconds:.0f} s", file=sys.stderr)
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
            print(f"siso demo: {label:22s} {path}", file=sys.stderr)
    print("siso demo: open the executed notebook in JupyterLab to read the report", file=sys.stderr)
    return 0


def parse_value(text: str) -> Any:
    """'3' -> 3, '2e-4' -> 0.0002, 'true' -> True, 'none' -> None, '[1, 2]' -> [1, 2], else the text."""
    import json

    stripped = text.strip()
    lowered = stripped.lower()
    if lowered in ("none", "null"):
        return None
    if lowered in ("true", "false"):
        return lowered == "true"
    for convert in (int, float):
        try:
            return convert(stripped)
        except ValueError:
            pass
    if stripped[:1] in "[{\"":
        try:
            return json.loads(stripped)
        except ValueError:
            pass
    return text


def now_iso() -> str:
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


if __name__ == "__main__":
    raise SystemExit(demo_main())
