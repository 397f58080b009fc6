"""What `notebooks/01_generate_lora.ipynb` does, as plain, testable Python.

The notebook's `parameters` cell (papermill) holds every SISO knob set to `None`, which means
"the library's default": `SISOConfig()` for the real models, `offline_config()` for the tiny
offline ones, each with the recipe of the model family (`model_family`: "auto", the default,
reads it from the base model; "sdxl", "flux" or "sana" picks that family's hub model, or with
`models="offline"` its tiny model). `prepare_run(globals())` turns those cells into one checked
`NotebookSetup`, so the numbers live only in `siso_lib/config.py` and `siso_lib/offline.py`.

Headless mode (`run_headless`) runs SISO without widgets: one text line per iteration, a live
figure (loss curves, subject, current and best image) updated every few seconds, and the same
figure at the end, so an executed notebook is a readable report. The interactive panel
(`siso_lib.notebook_ui.SISOPanel`) uses the same recorder and figures.

`python -m siso_lib.notebook_run` (what `make demo` calls) executes the notebook headless with
papermill on the offline default and prints where everything went (`-p model_family=flux` or
`sana` runs that family's tiny model).
"""

from __future__ import annotations

import ast
import dataclasses
import datetime as _dt
import difflib
import html
import io
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .config import FAMILY_RECIPES, MODEL_FAMILIES, MODEL_FAMILY_CHOICES, RECIPE_FIELDS, SISOConfig
from .config import coerce_value  # SISOConfig's own text -> type rule, for the notebook's options
from .errors import SISOInputError
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
FAMILY_CHOICES = MODEL_FAMILY_CHOICES  # the values of the model_family knob
# knobs the parameters cell sets to SISOConfig's own default instead of None, so that papermill
# reads their type ("auto" is a str); at that value they count as a default, not as set
CELL_DEFAULTS = {"model_family": SISOConfig.__dataclass_fields__["model_family"].default}
FAMILY_NAMES = {"sdxl": "SDXL-Turbo", "flux": "FLUX.1-schnell", "sana": "Sana"}
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
# papermill writes the parameters it injects as one cell that starts with this comment
INJECTED_CELL_HEADER = "# Parameters"


class NotebookParameterError(SISOInputError):
    """A notebook parameter with an unknown name or a value of the wrong type (one line, no traceback)."""

    def _render_traceback_(self) -> list[str]:  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def assigned_names(source: str) -> list[str]:
    """The names a cell assigns at its top level, in order: the parameters of a `parameters` cell,
    or what papermill injected (its injected cell is one `name = value` line per parameter)."""
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        else:
            continue
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Name) and leaf.id not in names:
                    names.append(leaf.id)
    return names


def notebook_parameter_names(notebook: str | Path) -> list[str]:
    """The names the notebook's cell tagged `parameters` defines (read as JSON: no papermill, no kernel)."""
    path = Path(notebook)
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise NotebookParameterError(f"cannot read notebook {str(path)!r} ({error}): give a .ipynb file") from None
    for cell in cells:
        if cell.get("cell_type") == "code" and "parameters" in (cell.get("metadata") or {}).get("tags", []):
            source = cell.get("source", "")
            return assigned_names("".join(source) if isinstance(source, list) else source)
    raise NotebookParameterError(f"notebook {str(path)!r} has no cell tagged 'parameters': tag one (papermill needs it)")


def injected_parameter_names(namespace: Mapping[str, Any]) -> list[str]:
    """The names papermill injected into this kernel: from the latest executed cell that starts with
    papermill's "# Parameters" header (IPython keeps every executed cell's source in `In`)."""
    history = namespace.get("In") or namespace.get("_ih") or []
    for source in reversed(list(history)):
        if isinstance(source, str) and source.lstrip().startswith(INJECTED_CELL_HEADER):
            try:
                return assigned_names(source)
            except SyntaxError:
                return []
    return []


def check_parameter_names(names, valid, where: str = "notebook parameter") -> None:
    """NotebookParameterError naming the first unknown name, a close valid one, and every valid name."""
    valid = list(valid)
    unknown = [name for name in names if name not in valid]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    more = f" (and {', '.join(repr(n) for n in unknown[1:])})" if unknown[1:] else ""
    raise NotebookParameterError(f"unknown {where} {name!r}{hint}{more}; valid names: {', '.join(valid)}")


# the notebook's own options and the types they are read as (SISOConfig's rule, see coerce_knob)
OPTION_TYPES = {
    "models": "str", "interactive": "bool", "overwrite": "bool",
    "subject_image_path": "str | None", "output_dir": "str | None", "assets_dir": "str | None",
}


def coerce_knob(name: str, value: Any) -> Any:
    """A SISO knob with the type SISOConfig declares. papermill, sweep files and widgets may hand
    in text ("1e-4" -> 1e-4, "false" -> False, "8" -> 8); SISOConfig does the converting, so every
    caller follows one rule. None stays None (in the notebook: the library default)."""
    check_parameter_names([name], SISO_KNOBS, "SISO knob")
    if value is None:
        return None
    try:
        value = getattr(SISOConfig(**{name: value}), name)
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None
    if name == "model_family" and value not in FAMILY_CHOICES:
        raise NotebookParameterError(f"model_family {value!r} is unknown: use {', '.join(FAMILY_CHOICES)}")
    return value


def coerce_parameter(name: str, value: Any) -> Any:
    """Any parameter of 01_generate_lora.ipynb with its type (NotebookParameterError if it cannot be)."""
    check_parameter_names([name], PARAMETER_NAMES)
    if name in SISO_KNOBS:
        return coerce_knob(name, value)
    if value is None:
        return None
    try:
        value = coerce_value(name, OPTION_TYPES[name], value)
        if name == "models":
            value = value.strip().lower()
            if value not in MODELS:
                raise ValueError(f"models={value!r} is unknown: use 'hub' (the family's model + DINOv2), 'offline' (tiny test models) or 'auto'")
        return value
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None


def coerce_typed(name: str, annotation: str, value: Any) -> Any:
    """`value` as `annotation` ("int | None", "str", "list[float]", ...): SISOConfig's rule for single
    values; a list also takes text ("1,2" or "[1, 2]"; for "list[str]" a plain text is one item)
    or a single value."""
    kind = annotation.replace(" ", "")
    base = kind.removesuffix("|None")
    try:
        if value is None:
            if base != kind:
                return None
            raise ValueError(f"{name} needs a value (None is not allowed here)")
        if base.startswith("list[") and base.endswith("]"):
            item = base[len("list["):-1]
            if isinstance(value, str):
                text = value.strip()
                if text.startswith("["):
                    try:
                        value = ast.literal_eval(text)
                    except (ValueError, SyntaxError):
                        raise ValueError(f"{name}={value!r} is not a list: write e.g. [1, 2]") from None
                else:
                    value = [value] if item == "str" else [part for part in text.split(",") if part.strip()]
            elif not isinstance(value, (list, tuple)):
                value = [value]
            return [coerce_value(f"{name}[{index}]", item, element) for index, element in enumerate(value)]
        return coerce_value(name, annotation, value)
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None


def read_parameters(namespace: Mapping[str, Any], types: Mapping[str, str]) -> dict[str, Any]:
    """The parameters of a notebook whose parameters cell defines `types`' names, each with its type;
    a name papermill injected that is not one of them fails with the list of valid names."""
    check_parameter_names(injected_parameter_names(namespace), list(types))
    return {name: coerce_typed(name, annotation, namespace.get(name)) for name, annotation in types.items()}


def coerce_parameters(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter with its type; unknown names are refused with the list of valid ones."""
    check_parameter_names(list(values), PARAMETER_NAMES)
    return {name: coerce_parameter(name, value) for name, value in values.items()}


def resolve_models(models: str | None) -> str:
    """'auto' -> 'hub' where an accelerator (CUDA/XPU/MPS) is present, else 'offline'."""
    models = coerce_parameter("models", models) or "auto"
    if models != "auto":
        return models
    from .devices import pick_device

    return "hub" if pick_device("auto").type != "cpu" else "offline"


def offline_family(model_family: str, base_model: str | None = None) -> str:
    """The family whose tiny model an offline run uses: the one named; with "auto" the family of
    `base_model` (a folder the user gave) or, without one, that of the default base model (sdxl)."""
    if model_family != "auto":
        return model_family
    if base_model:
        from .model_paths import detect_family

        try:
            found = detect_family(base_model)
        except SISOInputError:
            found = None
        if found:
            return found
    return SISOConfig().family


def resolve_config(models: str, knobs: Mapping[str, Any], assets_dir: str | None = None):
    """(config, base, assets) for `models` ("hub" or "offline") and the knobs the user set.

    `base` is the config before the user's knobs: `SISOConfig()` (hub) or `offline_config()` with
    the family's tiny model (offline), each filled with the recipe of the family `knobs` names
    ("auto": read from the base model). `config` is `base` with the knobs, validated
    (NotebookParameterError, one line, if impossible).
    """
    knobs = dict(knobs)
    family = knobs.get("model_family") or "auto"
    assets = None
    try:
        if models == "offline":
            from .offline import ensure_test_assets, offline_config

            tiny = offline_family(family, knobs.get("pretrained_model_name_or_path"))
            quiet_model_loading()  # writing a tiny model the first time shows no progress bars (widgets in a notebook)
            assets = ensure_test_assets(assets_dir or DEFAULT_ASSETS_DIR, families=(tiny,))
            base = offline_config(assets, model_family=tiny).replace(model_family=family)
        else:
            base = SISOConfig(model_family=family)
        config = base.replace(**knobs)
        config.validate()
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None
    return config, base, assets


def _short(number: float) -> str:
    """2e-4 -> "2e-4", 0.01 -> "0.01", 4.5 -> "4.5"."""
    mantissa, e, exponent = f"{number:g}".partition("e")
    return f"{mantissa}e{int(exponent)}" if e else mantissa


def family_recipe_markdown() -> str:
    """The per-family recipe (config.FAMILY_RECIPES) as a Markdown table; 01's explanation cell holds
    exactly this text (a test keeps them equal)."""
    rows = [
        ("base model (`models=\"hub\"`)", lambda r: f"`{r['pretrained_model_name_or_path']}`"),
        ("`num_inference_steps` (`num_grad_steps`: the last k with gradients, 0 = all)",
         lambda r: f"{r['num_inference_steps']} ({r['num_grad_steps']})"),
        ("`guidance_scale`", lambda r: _short(r["guidance_scale"])),
        ("`learning_rate` / `adam_weight_decay`", lambda r: f"{_short(r['learning_rate'])} / {_short(r['adam_weight_decay'])}"),
        ("`train_text_encoder`", lambda r: "no" if not r["train_text_encoder"] else
         ("yes" if r["text_encoder_lr"] is None else f"yes, lr {_short(r['text_encoder_lr'])}")),
        ("`early_stopping_max_count`", lambda r: str(r["early_stopping_max_count"])),
    ]
    head = "| | " + " | ".join(f"`{f}` ({FAMILY_NAMES[f]})" for f in MODEL_FAMILIES) + " |"
    lines = [head, "|---" * (len(MODEL_FAMILIES) + 1) + "|"]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(FAMILY_RECIPES[f]) for f in MODEL_FAMILIES) + " |")
    return "\n".join(lines)


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
    sources: dict[str, str] = field(default_factory=dict)  # knob -> "default" | "<family> recipe" | "offline default" | "set"
    interactive: bool = True  # the widget panel (True) or a headless run (False)
    knobs: dict[str, Any] = field(default_factory=dict)  # the SISO knobs the parameters set (not None)
    assets_dir: str | None = None

    @property
    def family(self) -> str:
        return self.config.family

    def config_for_family(self, model_family: str) -> SISOConfig:
        """The config of this setup with another `model_family` (what a headless run with that
        model_family and the same parameters gets): the family's recipe, and offline its tiny model."""
        knobs = {**self.knobs, "model_family": coerce_knob("model_family", model_family)}
        return resolve_config(self.models, knobs, self.assets_dir)[0]

    def describe(self) -> list[tuple[str, Any, str]]:
        return [(name, getattr(self.config, name), self.sources.get(name, "default")) for name in SISO_KNOBS]

    def to_html(self) -> str:
        family, base = self.family, self.config.pretrained_model_name_or_path
        models = {
            "hub": f"real models from the model hub ({FAMILY_NAMES.get(family, family)} <code>{html.escape(str(base))}</code>, "
                   "DINOv2; IR from ir_features_path)",
            "offline": f"<b>tiny random-weight offline models</b> ({html.escape(str(family))}): they prove the pipeline "
                       "works; they do not draw the subject",
        }[self.models]
        strong = ("set", "offline default")
        rows = "".join(
            f"<tr><td style='text-align:left'><code>{html.escape(name)}</code></td>"
            f"<td style='text-align:left'>{'<b>' if source in strong else ''}{html.escape(repr(value))}"
            f"{'</b>' if source in strong else ''}</td><td style='text-align:left'>{source}</td></tr>"
            for name, value, source in self.describe()
        )
        output = self.output_dir or f"a fresh folder under {self.runs_root}"
        return (
            f"<p><b>models:</b> {models}<br><b>model family:</b> {html.escape(str(family))} (its recipe fills the "
            f"settings marked '{html.escape(str(family))} recipe')<br><b>subject:</b> "
            f"<code>{html.escape(self.subject_image_path)}</code><br><b>output:</b> <code>{html.escape(output)}</code></p>"
            "<table><thead><tr><th style='text-align:left'>setting</th><th style='text-align:left'>value</th>"
            f"<th style='text-align:left'>from</th></tr></thead><tbody>{rows}</tbody></table>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()


def prepare_run(namespace: Mapping[str, Any], **changes: Any) -> NotebookSetup:
    """Resolve the notebook parameters found in `namespace` (e.g. `globals()`) into a NotebookSetup.

    Every value gets its type (papermill's `-p interactive false` passes the text "false"; it is
    False here), a knob left at None takes the library default (the model family's recipe where
    the families differ), `changes` override the namespace, and a name papermill injected that the
    parameters cell does not define (`-p learnig_rate 1e-4`) is refused with the list of valid
    names: NotebookParameterError, one line, the run fails.
    """
    check_parameter_names(injected_parameter_names(namespace), PARAMETER_NAMES)
    raw = {name: namespace[name] for name in PARAMETER_NAMES if name in namespace}
    raw.update(changes)
    values = coerce_parameters(raw)
    models = resolve_models(values.get("models"))
    knobs = {name: values[name] for name in SISO_KNOBS if raw.get(name) is not None}  # "" for ir_features_path: none
    assets_dir = values.get("assets_dir")
    config, base, assets = resolve_config(models, knobs, assets_dir)
    family = config.family
    hub = SISOConfig(model_family=family)  # what the real models of this family would use
    sources = {}
    for name in SISO_KNOBS:
        if name in knobs and not (name in CELL_DEFAULTS and knobs[name] == CELL_DEFAULTS[name]):
            sources[name] = "set"
        elif name != "model_family" and getattr(base, name) != getattr(hub, name):
            sources[name] = "offline default"
        elif name in RECIPE_FIELDS:
            sources[name] = f"{family} recipe"
        else:
            sources[name] = "default"
    interactive = values.get("interactive")
    return NotebookSetup(
        config=config,
        subject_image_path=values.get("subject_image_path") or str(DEFAULT_SUBJECT),
        models=models,
        output_dir=values.get("output_dir"),
        overwrite=bool(values.get("overwrite")),
        assets=assets,
        sources=sources,
        interactive=True if interactive is None else interactive,
        knobs=knobs,
        assets_dir=assets_dir,
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
    made_output_dir: bool = False  # output_dir is a fresh folder made for this run (removed again if it stays empty)

    @property
    def finished(self) -> bool:
        return self.outcome is not None


def run_output_dir(setup_output_dir: str | None, runs_root: str | Path, subject_image_path: str) -> str:
    """The folder a run writes into: the one asked for, or a fresh one under runs_root."""
    if setup_output_dir:
        return str(setup_output_dir)
    from .runner import fresh_run_dir

    return str(fresh_run_dir(runs_root, label=Path(subject_image_path).stem))


def new_run(config: SISOConfig, subject_image_path: str, setup_output_dir: str | None, runs_root: str | Path) -> NotebookRun:
    """A NotebookRun writing into setup_output_dir, or into a fresh folder under runs_root."""
    output_dir = run_output_dir(setup_output_dir, runs_root, subject_image_path)
    return NotebookRun(config, subject_image_path, output_dir, made_output_dir=not setup_output_dir)


def discard_if_empty(folder: str | Path | None) -> None:
    """Remove a run folder that holds nothing (a run that failed before writing is no result)."""
    try:
        Path(folder).rmdir()  # only succeeds on an empty folder
    except (OSError, TypeError):
        pass


def execute_run(
    run: NotebookRun,
    overwrite: bool = False,
    callbacks: tuple | list = (),
    optimizer_hook: Callable | None = None,
) -> NotebookRun:
    """run_siso with the recorder first among the callbacks; fills run.outcome and wall time.

    A run that fails before writing anything (bad input, a model that does not load) leaves no
    empty folder behind: the fresh folder made for it is removed again.
    """
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
    except BaseException:
        if run.made_output_dir:
            discard_if_empty(run.output_dir)
        raise
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
    run = new_run(setup.config, setup.subject_image_path, setup.output_dir, setup.runs_root)
    display(Markdown(f"Running SISO, writing to `{run.output_dir}`"))
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
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM ended the work; the process exits with 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name


class KernelWatch:
    """Knows the kernel papermill starts for one notebook, so that a signal handler can end it.

    papermill (nbclient) still owns the kernel and shuts it down as usual; this only gives it a
    kernel-manager class that reports itself here, and quiets the kernel's own start-up log.
    """

    def __init__(self):
        self.manager = None

    def manager_class(self):
        from jupyter_client.manager import AsyncKernelManager

        watch = self

        class WatchedKernelManager(AsyncKernelManager):
            async def start_kernel(self, **kwargs):
                watch.manager = self
                if self.ipykernel:  # no "running over TCP without encryption" warning per run
                    kwargs["extra_arguments"] = [*(kwargs.get("extra_arguments") or []), "--IPKernelApp.log_level=ERROR"]
                return await super().start_kernel(**kwargs)

        return WatchedKernelManager

    def kill(self) -> bool:
        """Kill the kernel and its process group at once; True if one was running."""
        process = getattr(getattr(self.manager, "provisioner", None), "process", None)
        if process is None or process.poll() is not None:
            return False
        try:
            if os.getpgid(process.pid) == process.pid:  # its own group (jupyter_client starts a new session)
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()
        except (ProcessLookupError, PermissionError):
            return False
        return True


def silence_notebook_machinery() -> None:
    """No log lines or warnings from papermill, nbclient, jupyter_client and asyncio any more
    (a deliberately killed kernel makes them print tracebacks and "kernel died")."""
    import logging
    import warnings

    for name in ("papermill", "nbclient", "jupyter_client", "traitlets", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    warnings.simplefilter("ignore")


class SignalGuard:
    """SIGINT and SIGTERM for a process that executes notebooks (`siso-sweep`, `make demo`).

    The first signal kills the kernel that is running (papermill then returns with a dead-kernel
    error, which the caller reads as "interrupted" because `signum` is set) or, when no kernel
    runs, raises `Interrupted` at once. Either way the machinery's own error output is silenced,
    so the caller can report the interruption in one line. Later signals are ignored while the
    caller records what happened.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.signum: int | None = None
        self.watch: KernelWatch | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> "SignalGuard":
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:  # also replaces SIG_IGN: shells start background jobs with SIGINT ignored
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def reinstall(self) -> None:
        """Take SIGINT and SIGTERM back after a library replaced the handlers (ray.init sets its own
        SIGTERM handler); leaving the guard still restores the handlers found on entering it."""
        if self._previous and threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            return
        self.signum = signum
        silence_notebook_machinery()
        if self.watch is not None and self.watch.kill():
            return
        raise Interrupted(signum)

    def raise_if_interrupted(self) -> None:
        if self.signum is not None:
            raise Interrupted(self.signum)


def execute_generate_notebook(
    output_notebook: str | Path,
    parameters: dict[str, Any],
    notebook: str | Path = GENERATE_NOTEBOOK,
    kernel_name: str | None = None,
    log_output: bool = False,
    execution_timeout: int | None = None,
    guard: SignalGuard | None = None,
) -> None:
    """Run 01_generate_lora.ipynb headless with papermill (interactive=False unless given).

    With a `guard`, a SIGINT/SIGTERM kills the kernel; this then raises `Interrupted`.
    """
    import papermill

    parameters = {"interactive": False, **parameters}
    watch = KernelWatch()
    if guard is not None:
        guard.raise_if_interrupted()
        guard.watch = watch
    try:
        papermill.execute_notebook(
            str(notebook),
            str(output_notebook),
            parameters=parameters,
            kernel_name=kernel_name,
            progress_bar=False,
            log_output=log_output,
            cwd=str(Path(notebook).resolve().parent),
            execution_timeout=execution_timeout,
            kernel_manager_class=watch.manager_class(),  # passed on to nbclient
        )
    except Exception:
        if guard is not None:
            guard.raise_if_interrupted()
        raise
    finally:
        if guard is not None:
            guard.watch = None


# the notebook errors that mean "bad input" (the message names the fix; no result is possible)
INPUT_ERRORS = ("SISOInputError", "NotebookParameterError")


def describe_error(error: BaseException) -> str:
    """One line: the notebook's exception (papermill), or what stopped the kernel."""
    ename, evalue = getattr(error, "ename", None), getattr(error, "evalue", None)
    if ename:
        where = getattr(error, "exec_count", None)
        return f"{ename}: {evalue}" + (f" (notebook cell [{where}])" if where else "")
    name = type(error).__name__
    if name == "DeadKernelError":
        return "DeadKernelError: the notebook's kernel died (out of memory?)"
    text = str(error).strip().splitlines()
    return f"{name}: {text[-1] if text else ''}".strip()


def demo_main(argv: list[str] | None = None) -> int:
    """`make demo`: run 01_generate_lora.ipynb headless on the offline default and say where things went.

    Exit codes: 0 done; 1 the notebook failed (its executed copy is kept as the log); 2 bad input
    (nothing is left behind); 130 / 143 interrupted by SIGINT / SIGTERM.
    """
    from .errors import OneLineArgumentParser

    parser = OneLineArgumentParser(
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
    parameters: dict[str, Any] = {
        "models": args.models,
        "subject_image_path": str(Path(args.subject_image_path).resolve()),
        "assets_dir": str(Path(args.assets_dir).resolve()),
        "overwrite": True,
    }
    for item in args.parameter:
        name, equals, value = item.partition("=")
        if not equals:
            parser.error(f"-p {item!r}: give NAME=VALUE, e.g. -p num_train_epochs=10")
        try:
            coerce_parameter(name.strip(), parse_value(value))
        except NotebookParameterError as error:
            parser.error(f"-p {item!r}: {error}")
        parameters[name.strip()] = parse_value(value)
    from .runner import fresh_run_dir

    output_dir = Path(args.output_dir) if args.output_dir else fresh_run_dir(DEFAULT_RUNS_ROOT, "demo")
    output_dir.mkdir(parents=True, exist_ok=True)
    parameters["output_dir"] = str(output_dir.resolve())
    executed = output_dir / GENERATE_NOTEBOOK.name
    if args.models != "hub":
        print("siso demo: tiny random-weight models: this proves the pipeline works, not the picture quality", file=sys.stderr)
    print(f"siso demo: executing {GENERATE_NOTEBOOK.relative_to(REPO_ROOT)} headless with papermill ...", file=sys.stderr)
    started = time.perf_counter()
    try:
        with SignalGuard() as guard:
            execute_generate_notebook(executed, parameters, guard=guard)
    except Interrupted as interruption:
        print(f"siso demo: interrupted ({interruption.signal_name}); the executed notebook so far: {executed}", file=sys.stderr)
        return interruption.exit_code
    except Exception as error:  # papermill's execution error names the failing cell
        if getattr(error, "ename", None) in INPUT_ERRORS:
            print(f"siso demo: {getattr(error, 'evalue', error)}", file=sys.stderr)
            if not args.output_dir:  # bad input is no result: leave no folder behind
                executed.unlink(missing_ok=True)
                discard_if_empty(output_dir)
            return 2
        print(f"siso demo: the notebook failed: {describe_error(error)}", file=sys.stderr)
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
    print(f"siso demo: score the LoRA (DINO, CLIP-I, CLIP-T, IR, diversity): siso-eval {output_dir}", file=sys.stderr)
    tell_where_the_commands_are("siso demo")
    return 0


def tell_where_the_commands_are(prefix: str) -> None:
    """`make demo` installs into .venv without activating it: say how to reach its commands."""
    import shutil

    bin_dir = Path(sys.executable).parent
    if not (bin_dir / "siso-sweep").exists():
        return
    found = shutil.which("siso-sweep")
    if found and Path(found).resolve().parent == bin_dir.resolve():
        return
    shown = os.path.relpath(bin_dir) if not os.path.relpath(bin_dir).startswith("..") else str(bin_dir)
    print(f"{prefix}: siso-generate, siso-eval, siso-sweep, papermill and jupyter are in {shown}/, not on PATH: "
          f"run `. {shown}/activate` first (or call {shown}/siso-sweep ...)", file=sys.stderr)


def parse_value(text: str) -> Any:
    """'3' -> 3, '2e-4' -> 0.0002, 'true' -> True, 'none' -> None, '[1, 2]' -> [1, 2], else the text."""
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
