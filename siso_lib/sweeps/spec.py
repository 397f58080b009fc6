"""What a sweep is: a grid of notebook parameters, checked before anything runs.

A sweep runs `notebooks/01_generate_lora.ipynb` once per combination of the grid (see
docs/sweeps.md). `build_sweep` checks every name against the notebook's parameters cell and
every value against its type, with no model, kernel or torch loaded; `load_spec` reads a sweep
file (YAML or JSON) and `parse_grid_option` / `parse_set_option` the command line's
`--grid` / `--set`. Values from text keep their text until the parameter's type is applied.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SISOInputError, check_file
from ..io.locations import sweeps_root
from ..io.model_paths import absolute_if_local
from ..notebooks.setup import (
    GENERATE_NOTEBOOK,
    SISO_KNOBS,
    NotebookParameterError,
    check_parameter_names,
    coerce_parameter,
    notebook_parameter_names,
)

RECORD = "sweep_run.json"  # a run's record, beside its run.json
RESULTS = "results.csv"
SPEC = "sweep.json"
# set by the sweep for every run: not sweepable
RESERVED = ("output_dir", "interactive", "overwrite", "progress_file")
# parameters that say where a run goes, not what it computes: not part of a run's identity, so
# that processes on different devices share the runs of one sweep
PLACEMENT = ("device",)
# parameters whose relative paths are made absolute
PATH_PARAMETERS = ("subject_image_path", "assets_dir", "ir_features_path", "pretrained_model_name_or_path", "dino_model_name")
SHORT_NAMES = {"subject_image_path": "subject"}


class SweepError(SISOInputError):
    """A sweep that cannot start (bad spec); nothing was run."""


@dataclass
class SweepRun:
    name: str
    params: dict[str, Any]  # what the notebook gets (fixed + swept), before output_dir etc.
    swept: dict[str, Any]  # the swept part, for names and tables


@dataclass
class EvalOptions:
    """`--eval`: how each completed run is scored (siso-eval's settings; build with `eval_options`)."""

    seeds: int = 4  # seeds 0..N-1 per prompt (siso-eval --seeds)
    prompts: str | None = None  # a prompt file (siso-eval --prompts); None: the built-in prompts
    templates: list[str] | None = None  # the file's templates, read when the sweep is checked

    def to_dict(self) -> dict:
        return {"seeds": self.seeds, "prompts": self.prompts}


@dataclass
class Sweep:
    name: str
    grid: dict[str, list] = field(default_factory=dict)
    fixed: dict[str, Any] = field(default_factory=dict)
    notebook: Path = GENERATE_NOTEBOOK
    root: Path = field(default_factory=sweeps_root)
    evaluation: EvalOptions | None = None  # --eval: score each completed run

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.name

    def runs(self) -> list[SweepRun]:
        keys = list(self.grid)
        runs = []
        for combination in itertools.product(*(self.grid[k] for k in keys)):
            swept = dict(zip(keys, combination))
            params = {**self.fixed, **swept}
            runs.append(SweepRun(run_name(swept, params), params, swept))
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise SweepError("two runs of the grid have the same parameters: remove the repeated values")
        return runs

    def to_dict(self) -> dict:
        spec = {"name": self.name, "grid": self.grid, "fixed": self.fixed, "notebook": str(self.notebook)}
        return spec | ({"eval": self.evaluation.to_dict()} if self.evaluation else {})


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def run_name(swept: dict[str, Any], params: dict[str, Any]) -> str:
    """Readable name from the swept values + a hash of every parameter that changes the result."""
    parts = []
    for key, value in swept.items():
        shown = Path(str(value)).stem if key == "subject_image_path" else _format(value)
        parts.append(f"{SHORT_NAMES.get(key, key)}-{shown}")
    readable = re.sub(r"[^A-Za-z0-9_.+=-]+", "-", "__".join(parts)).strip("-")[:90] or "run"
    identity = {k: v for k, v in params.items() if k not in PLACEMENT}
    photo = identity.get("subject_image_path")
    if isinstance(photo, str) and Path(photo).is_file():
        # the photo is named by its content: another photo under the same name is another run
        from ..io.images import file_sha256

        identity["subject_image_path"] = "sha256:" + file_sha256(photo)
    digest = hashlib.sha1(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{readable}__{digest}"


def notebook_parameters(notebook: str | Path) -> list[str]:
    """The names the notebook's `parameters` cell defines (the notebook's own check reads them the same way)."""
    try:
        return notebook_parameter_names(notebook)
    except NotebookParameterError as error:
        raise SweepError(str(error)) from None


def typed(name: str, value: Any) -> Any:
    """`value` as notebook 01 reads parameter `name` (SweepError, one line, if it cannot be)."""
    try:
        return coerce_parameter(name, value)
    except NotebookParameterError as error:
        raise SweepError(str(error)) from None


def check_values(params: dict[str, Any]) -> None:
    """Check a run's parameters together, as the notebook will, so that a setting the notebook
    would refuse (an unknown precision, a resolution that is not a multiple of 8) stops the sweep
    before anything runs."""
    from ..config import SISOConfig

    try:
        SISOConfig().replace(**{name: params[name] for name in SISO_KNOBS if params.get(name) is not None}).validate()
    except ValueError as error:
        raise SweepError(str(error)) from None


def run_input_problem(run: SweepRun) -> str | None:
    """What the run's own input checks (preflight.check_inputs, as run_siso runs them in the notebook)
    would refuse, in one line; None when they pass. For --dry-run: nothing is written, no torch loaded.

    With `models="hub"` every model input is checked; otherwise only those the run's parameters name
    (the tiny offline models are written by the run itself, and "auto" is decided in the kernel)."""
    from ..config import SISOConfig
    from ..io.locations import example_photo
    from ..preflight import check_inputs

    params = absolute_paths(run.params)
    knobs = {name: params[name] for name in SISO_KNOBS if params.get(name) is not None}
    photo = params.get("subject_image_path") or str(example_photo("cat.png"))
    models = str(params.get("models") or "auto")
    try:
        config = SISOConfig(model_family=knobs.get("model_family", "auto")).replace(**knobs)
        check_inputs(config, photo, only=None if models == "hub" else frozenset(knobs))
    except SISOInputError as error:
        return str(error)
    return None


def build_sweep(
    name: str | None = None,
    grid: dict[str, list] | None = None,
    fixed: dict[str, Any] | None = None,
    subjects: list[str] | None = None,
    notebook: str | Path | None = None,
    root: str | Path | None = None,
    evaluation: EvalOptions | None = None,
) -> Sweep:
    """Check a sweep against the notebook's parameters cell and return it (SweepError if wrong)."""
    grid = {k: (list(v) if isinstance(v, (list, tuple)) else [v]) for k, v in (grid or {}).items()}
    fixed = dict(fixed or {})
    if subjects:
        grid["subject_image_path"] = list(subjects)
    notebook = Path(notebook) if notebook else GENERATE_NOTEBOOK
    check_file(notebook, "notebook", "give a notebook (.ipynb) with a parameters cell", error=SweepError)
    sweepable = [name for name in notebook_parameters(notebook) if name not in RESERVED]  # the names a typo is matched against
    for where, keys in (("grid", grid), ("fixed", fixed)):
        for key in keys:
            if key in RESERVED:
                raise SweepError(f"{key!r} cannot be set in a sweep: the sweep sets it for every run")
            try:
                check_parameter_names([key], sweepable, f"{where} parameter")
            except NotebookParameterError as error:
                raise SweepError(str(error)) from None
    for key, values in grid.items():
        if not values:
            raise SweepError(f"grid entry {key!r} has no values")
    # every value with the type the notebook reads it as: text from a command line or a sweep file
    # becomes a number only where the parameter is a number ("1984" stays a prompt)
    fixed = {key: typed(key, value) for key, value in fixed.items()}
    grid = {key: [typed(key, value) for value in values] for key, values in grid.items()}
    # local paths absolute (what the runs record and are identified by), subject photos checked now
    fixed = absolute_paths(fixed)
    grid = {key: [absolute_paths({key: value})[key] for value in values] for key, values in grid.items()}
    for photo in [fixed.get("subject_image_path"), *grid.get("subject_image_path", [])]:
        if isinstance(photo, str) and photo:
            check_file(photo, "subject photo", "give the path of a PNG/JPEG/WebP photo", "check the path (relative paths start "
                       "from the current folder, or a sweep file's folder)", error=SweepError)
    both = sorted(set(grid) & set(fixed))
    if both:
        raise SweepError(f"{', '.join(both)} is both swept and fixed: keep one")
    if not name:
        name = "+".join(SHORT_NAMES.get(k, k) for k in grid) or "sweep"
    if not re.fullmatch(r"[A-Za-z0-9_.+=-]{1,100}", name) or name in (".", ".."):
        raise SweepError(f"sweep name {name!r}: use letters, digits and _ . + = - only")
    sweep = Sweep(name=name, grid=grid, fixed=fixed, notebook=notebook, root=Path(root or sweeps_root()).absolute(),
                  evaluation=evaluation)
    for run in sweep.runs():
        check_values(run.params)
    return sweep


def read_as_text(text: str) -> Any:
    """YAML or JSON with every value kept as the text the user wrote (BaseLoader resolves no types):
    each value gets its parameter's type later (`typed`), so 1984 stays the prompt "1984" and 1e-4
    becomes a number. The one rule for sweep files and --grid NAME=[JSON list] alike."""
    import yaml

    return yaml.load(text, Loader=yaml.BaseLoader)


def load_spec(path: str | Path) -> dict[str, Any]:
    """A sweep file, YAML or JSON:

        name: lr-rank                  # optional: default the file's name
        fixed: {models: offline, num_train_epochs: 30}   # every run ("base" works too)
        grid: {learning_rate: [1e-4, 2e-4], rank: [4, 8]} # every combination
        subjects: [data/cat.png, data/coffee.png]        # shorthand for grid.subject_image_path
        notebook: notebooks/01_generate_lora.ipynb       # optional
        eval: true                     # optional: score each completed run (--eval), or with options:
        eval: {seeds: 2, prompts: eval_prompts.txt}      # --eval-seeds, --eval-prompts
    """
    import yaml

    path = Path(path)
    check_file(path, "sweep file", "give a YAML or JSON file (name, grid, fixed, subjects)", error=SweepError)
    try:
        data = read_as_text(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SweepError(f"cannot read sweep file {str(path)!r}: {error}") from error
    if not isinstance(data, dict):
        raise SweepError(f"sweep file {str(path)!r} must hold a mapping (name, grid, fixed, subjects)")
    allowed = {"name", "grid", "fixed", "base", "subjects", "notebook", "eval"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise SweepError(f"sweep file {str(path)!r}: unknown key(s) {', '.join(unknown)}; use {', '.join(sorted(allowed))}")
    for key in ("name", "notebook", "subjects", "grid", "fixed", "base", "eval"):
        if isinstance(data.get(key), str) and data[key].strip().lower() in ("", "null", "~"):
            data[key] = None  # YAML's null, as the file's text
    spec = {
        "name": data.get("name") or path.stem,
        "grid": data.get("grid") or {},
        "fixed": {**(data.get("base") or {}), **(data.get("fixed") or {})},
        "subjects": data.get("subjects"),
        "notebook": data.get("notebook"),
        "eval": _spec_eval(data.get("eval"), path),
    }
    spec["grid"] = {k: (vs if isinstance(vs, list) else [vs]) for k, vs in spec["grid"].items()}
    # a relative path in the file means a path next to the file (as in docker-compose or a Makefile)
    here = path.resolve().parent
    beside = lambda value: str(here / value) if isinstance(value, str) and value and not os.path.isabs(value) and (here / value).exists() else value  # noqa: E731
    if isinstance(spec["subjects"], list):
        spec["subjects"] = [beside(v) for v in spec["subjects"]]
    if spec["eval"] and spec["eval"].get("prompts"):
        spec["eval"]["prompts"] = beside(spec["eval"]["prompts"])
    for key in PATH_PARAMETERS:
        if key in spec["fixed"]:
            spec["fixed"][key] = beside(spec["fixed"][key])
        if key in spec["grid"]:
            spec["grid"][key] = [beside(v) for v in spec["grid"][key]]
    return spec


def _spec_eval(value: Any, path: Path) -> dict | None:
    """A sweep file's `eval`: true / false, or a mapping of its options ({} when on)."""
    if isinstance(value, str):  # the file's text (see load_spec)
        value = {"true": True, "false": False, "yes": True, "no": False, "": None}.get(value.strip().lower(), value)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, dict) and set(value) <= {"seeds", "prompts"}:
        return dict(value)
    raise SweepError(f"sweep file {str(path)!r}: eval must be true, false or a mapping such as {{seeds: 2, prompts: FILE}}, not {value!r}")


def eval_options(seeds: Any = None, prompts: str | None = None) -> EvalOptions:
    """--eval's settings, checked (a seed count of 1 or more; a readable prompt file); SweepError if not."""
    from ..errors import SISOInputError
    from ..evaluation.prompts import read_prompt_file

    if seeds is None:
        seeds = EvalOptions.seeds
    if isinstance(seeds, bool) or not isinstance(seeds, int) and not (isinstance(seeds, str) and seeds.strip().isdigit()):
        raise SweepError(f"eval seeds {seeds!r}: give a whole number of seeds per prompt, e.g. --eval-seeds 2")
    if int(seeds) < 1:
        raise SweepError(f"eval seeds {seeds}: give 1 or more seeds per prompt (seed diversity needs 2), e.g. --eval-seeds 2")
    templates = None
    if prompts:
        try:
            templates = read_prompt_file(prompts)
        except SISOInputError as error:
            raise SweepError(f"--eval-prompts: {error}") from None
        prompts = os.path.abspath(prompts)
    return EvalOptions(seeds=int(seeds), prompts=prompts or None, templates=templates)


def parse_grid_option(text: str) -> tuple[str, list]:
    """'rank=4,8' -> ('rank', ['4', '8']); 'prompt=["a, b", "c"]' (a JSON list) for values with commas.
    The values stay text; build_sweep gives each its parameter's type."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip():
        raise SweepError(f"--grid {text!r}: write NAME=V1,V2,... (or NAME=[JSON list])")
    values = values.strip()
    if values.startswith("["):
        import yaml

        try:
            parsed = read_as_text(values)  # as a sweep file's values: the text written ([1984] -> "1984")
        except yaml.YAMLError as error:
            problem = " ".join(str(getattr(error, "problem", None) or error).split())
            raise SweepError(f"--grid {text!r}: not a JSON list ({problem})") from error
        if not isinstance(parsed, list):
            raise SweepError(f"--grid {text!r}: not a JSON list: write NAME=[\"V1\", \"V2\"]")
        return key.strip(), parsed
    return key.strip(), [v.strip() for v in values.split(",") if v.strip()]


def parse_set_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise SweepError(f"--set {text!r}: write NAME=VALUE")
    return key.strip(), value.strip()


def absolute_paths(params: dict[str, Any]) -> dict[str, Any]:
    """Local paths absolute, as run.json records them (a Ray task runs elsewhere): the subject
    photo always, other paths when they exist (hub ids and timm names stay names)."""
    out = dict(params)
    for key in PATH_PARAMETERS:
        value = out.get(key)
        if isinstance(value, str) and value:
            out[key] = os.path.abspath(value) if key == "subject_image_path" else absolute_if_local(value)
    return out
