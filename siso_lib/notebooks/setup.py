"""The parameters of `notebooks/01_generate_lora.ipynb`, read into one checked `NotebookSetup`.

The notebook's `parameters` cell (papermill) holds every SISO knob set to `None`, which means
"the library's default": `SISOConfig()` for the real models, `offline_config()` for the tiny
offline ones, each with the recipe of the model family (`model_family`: "auto", the default,
reads it from the base model; "sdxl", "flux" or "sana" picks that family's hub model, or with
`models="offline"` its tiny model). `prepare_run(globals())` turns those cells into one checked
`NotebookSetup`, so the numbers live only in `siso_lib/config.py` and `siso_lib/offline.py`.

The run itself is `headless.run_headless` (no widgets) or `panel.SISOPanel` (ipywidgets);
`papermill.execute_generate_notebook` executes the notebook headless (siso-demo --notebook,
siso-sweep).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import html
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..config import FAMILY_RECIPES, MODEL_FAMILIES, MODEL_FAMILY_CHOICES, RECIPE_FIELDS, SISOConfig
from ..config import coerce_value  # SISOConfig's own text -> type rule, for the notebook's options
from ..errors import SISOInputError
from ..io.locations import example_photo, notebook_path, runs_root, test_assets_dir
from ..cli.common import quiet_libraries

PAPER_URL = "https://arxiv.org/abs/2503.16025"
# The repository the Colab badges and the Colab install cell point at (one place; tests check the
# notebooks use it). Colab users can point the install cell elsewhere with SISO_REPO_URL.
GITHUB_REPO = "siso-lab/siso-lab"
GITHUB_BRANCH = "main"
GENERATE_NOTEBOOK = notebook_path("01_generate_lora.ipynb")

MODELS = ("auto", "hub", "offline")
FAMILY_CHOICES = MODEL_FAMILY_CHOICES  # the values of the model_family knob
# knobs the parameters cell sets to SISOConfig's own default instead of None, so that papermill
# reads their type ("auto" is a str); at that value they count as a default, not as set
CELL_DEFAULTS = {"model_family": SISOConfig.__dataclass_fields__["model_family"].default}
FAMILY_NAMES = {"sdxl": "SDXL-Turbo", "flux": "FLUX.1-schnell", "sana": "Sana", "flux2_klein": "FLUX.2 klein"}
# every SISOConfig field is a notebook parameter, except the free-form `extra` dict
SISO_KNOBS = tuple(f.name for f in dataclasses.fields(SISOConfig) if f.name != "extra")
# the notebook's own parameters, besides the SISO knobs
NOTEBOOK_OPTIONS = ("models", "interactive", "subject_image_path", "output_dir", "overwrite", "assets_dir", "progress_file")
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
    "subject_image_path": "str | None", "output_dir": "str | None", "assets_dir": "str | None", "progress_file": "str | None",
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
    from ..devices import pick_device

    return "hub" if pick_device("auto").type != "cpu" else "offline"


def offline_family(model_family: str, base_model: str | None = None) -> str:
    """The family whose tiny model an offline run uses: the one named; with "auto" the family of
    `base_model` (a folder the user gave) or, without one, that of the default base model (sdxl)."""
    if model_family != "auto":
        return model_family
    if base_model:
        from ..io.model_paths import detect_family

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
            from ..offline import ensure_test_assets, offline_config

            tiny = offline_family(family, knobs.get("pretrained_model_name_or_path"))
            quiet_libraries()  # writing a tiny model the first time shows no progress bars (widgets in a notebook)
            assets = ensure_test_assets(assets_dir or test_assets_dir(), families=(tiny,))
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
    runs_root: str = field(default_factory=lambda: str(runs_root()))
    assets: dict[str, str] | None = None
    sources: dict[str, str] = field(default_factory=dict)  # knob -> "default" | "<family> recipe" | "offline default" | "set"
    interactive: bool = True  # the widget panel (True) or a headless run (False)
    knobs: dict[str, Any] = field(default_factory=dict)  # the SISO knobs the parameters set (not None)
    assets_dir: str | None = None
    progress_file: str | None = None  # also append each iteration's progress record here (io/progress.py)

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
    if models == "offline":  # the tiny models on the CPU: one torch thread (offline.single_thread_env decides)
        from ..offline import use_single_thread

        use_single_thread(models, config.device)
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
        subject_image_path=values.get("subject_image_path") or str(example_photo("cat.png")),
        models=models,
        output_dir=values.get("output_dir"),
        overwrite=bool(values.get("overwrite")),
        assets=assets,
        sources=sources,
        interactive=True if interactive is None else interactive,
        knobs=knobs,
        assets_dir=assets_dir,
        progress_file=values.get("progress_file"),
    )
