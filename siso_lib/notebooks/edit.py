"""What `notebooks/04_edit_image.ipynb` does (SISO editing), as plain, testable Python.

The notebook's parameters cell holds the scene photo, the subject photo, the mask and the main
knobs of `SISOEditConfig`; `EDIT_PARAMETERS` declares each with its type (a test keeps the cell
and this table equal). A knob left at `None` takes the library default (`SISOEditConfig()`, the
authors' editing command) or, with `models="offline"`, what the tiny random-weight models need
(`siso_lib.offline.OFFLINE_OVERRIDES`). `prepare_edit(globals())` turns the cells into one
checked `EditSetup`.

The mask says where the subject goes (white) and what of the scene to keep (black). It is one of

* a PNG of the scene's size (`mask_path`);
* a rectangle (`mask_box`: left, top, right, bottom as fractions of the scene photo; the panel's
  two range sliders). It is written as a scene-sized PNG before the run (`write_box_mask`);
  without `mask_box` and `mask_path`, the example scene's cup is the rectangle;
* found automatically (`automatic_mask=True`): Grounding-DINO's best box for `input_class`, then
  SAM's mask in it (transformers' models from the hub; offline, tiny random-weight ones that prove
  the plumbing and find an arbitrary region).

Headless (`run_edit_headless`): one text line per iteration and a live figure (losses with the
background term; the scene with its mask, the subject, the first, current and best edit); then
`show_edit_results` shows the before/after strip, how much of the background changed, and the
files. The widget panel is `siso_lib.notebooks.edit_panel.EditPanel`.
"""

from __future__ import annotations

import dataclasses
import html
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ..config import SISOEditConfig
from ..errors import SISOInputError
from ..cli.common import quiet_libraries
from ..io.locations import example_photo, notebook_path, test_assets_dir
from ..offline import OFFLINE_OVERRIDES
from .figures import LiveFigure, RunRecorder, _show_image, figure_png, integer_iterations, step_line
from .headless import NotebookRun, discard_if_empty, run_output_dir, summary_markdown
from .papermill import execute_generate_notebook
from .setup import NotebookParameterError, NotebookSetup, read_parameters, resolve_models

EDIT_NOTEBOOK = notebook_path("04_edit_image.ipynb")
DEFAULT_SUBJECT = example_photo("cat.png")
DEFAULT_SCENE = example_photo("coffee.png")
DEFAULT_SCENE_CLASS = "cup"  # the object of the example scene (its inversion prompt: "a photo of a cup")
DEFAULT_MASK_BOX = (0.28, 0.03, 0.70, 0.78)  # the example scene's cup: left, top, right, bottom (fractions)
BOX_MASK_NAME = "mask_input.png"  # the rectangle as a scene-sized PNG, in the run folder (headless)
PREVIEW_SIZE = 256  # the mask preview shows the square the edit uses, at this size

# the SISOEditConfig fields the notebook sets (None in the cell: the library default)
EDIT_KNOBS = (
    "prompt", "input_class", "pretrained_model_name_or_path", "dino_model_name", "ir_features_path", "resolution",
    "seed", "num_train_epochs", "learning_rate", "rank", "train_text_encoder", "dino_features_weight",
    "ir_features_weight", "bg_mse_loss_weight", "inversion_max_step", "early_stopping_threshold_percentage",
    "early_stopping_max_count", "device", "precision", "mode", "quantize",
)
_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(SISOEditConfig)}
# the parameters cell of 04_edit_image.ipynb and the type each value is read as (a test keeps them equal)
EDIT_PARAMETERS: dict[str, str] = {
    "models": "str",
    "interactive": "bool | None",
    "input_image_path": "str | None",
    "subject_image_path": "str | None",
    "mask_path": "str | None",
    "mask_box": "list[float] | None",
    "automatic_mask": "bool",
    "output_dir": "str | None",
    "overwrite": "bool",
    "assets_dir": "str | None",
    **{name: _FIELD_TYPES[name] if "None" in _FIELD_TYPES[name] else f"{_FIELD_TYPES[name]} | None" for name in EDIT_KNOBS},
}
# the cell's values of the parameters that are not None there (what a namespace without them gets)
CELL_VALUES = {"models": "auto", "interactive": None, "automatic_mask": False, "overwrite": False}


def widget_frontend() -> bool:
    """True in a kernel that a Jupyter server (JupyterLab, Notebook: they set JPY_SESSION_NAME) or Colab
    started, where the panel can show; False under papermill or nbclient: `interactive=None` runs headless there."""
    import os

    from .setup import in_colab

    return in_colab() or bool(os.environ.get("JPY_SESSION_NAME"))


def coerce_edit_knob(name: str, value: Any) -> Any:
    """A knob of EDIT_KNOBS with the type SISOEditConfig gives it ("0.5" -> 0.5); None stays None."""
    if name not in EDIT_KNOBS:
        raise NotebookParameterError(f"{name!r} is no editing knob; knobs: {', '.join(EDIT_KNOBS)}")
    if value is None:
        return None
    try:
        return getattr(SISOEditConfig(**{name: value}), name)
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None


def check_box(box: Sequence[float] | None, name: str = "mask_box") -> tuple[float, float, float, float] | None:
    """(left, top, right, bottom) fractions of the scene, 0 <= left < right <= 1 and 0 <= top < bottom <= 1."""
    if box is None:
        return None
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise NotebookParameterError(f"{name} must be four numbers [left, top, right, bottom], got {box!r}") from None
    if len(values) != 4:
        raise NotebookParameterError(f"{name} must be four numbers [left, top, right, bottom] (fractions of the scene), got {len(values)}")
    left, top, right, bottom = values
    if not (0.0 <= left < right <= 1.0 and 0.0 <= top < bottom <= 1.0):
        raise NotebookParameterError(
            f"{name} {list(values)} is not a rectangle inside the scene: need 0 <= left < right <= 1 and 0 <= top < bottom <= 1"
        )
    return values


def box_mask_array(size: tuple[int, int], box: Sequence[float]):
    """uint8 [H, W] of a scene of `size` (width, height): 255 inside the rectangle `box`, 0 elsewhere."""
    import numpy as np

    width, height = size
    left, top, right, bottom = check_box(box)
    array = np.zeros((height, width), np.uint8)
    array[round(top * height):round(bottom * height), round(left * width):round(right * width)] = 255
    return array


def load_scene_image(path: str | Path):
    """The scene photo as the edit loads it (orientation, colour profile, size checks; SISOInputError)."""
    from ..io.images import load_subject_image

    return load_subject_image(path, "scene photo", "input_image_path", scene=True).image


def load_subject_photo(path: str | Path):
    """The subject photo as a run loads it (SISOInputError worded for the subject)."""
    from ..io.images import load_subject_image

    return load_subject_image(path).image


def write_box_mask(scene_path: str | Path, box: Sequence[float], path: str | Path) -> Path:
    """The rectangle as a black/white PNG of the scene photo's size at `path` (written atomically)."""
    from PIL import Image

    from ..io.atomic import save_image

    scene = load_scene_image(scene_path)
    path = Path(path)
    save_image(path, Image.fromarray(box_mask_array(scene.size, box), mode="L"))
    return path


def mask_preview(scene, mask: str | Path | Sequence[float] | None, size: int = PREVIEW_SIZE):
    """(the square the edit uses with the mask tinted, a note): `mask` is a PNG path, a box, or None
    (automatic: found at run time). A mask that leaves nothing (or everything) in the square says so,
    and the note carries the mask's warnings (part of it outside the square, grey pixels)."""
    from ..editing.inputs import load_mask, overlay, resize_and_center_crop, scene_mask

    square = resize_and_center_crop(scene.convert("RGB"), size)
    if mask is None:
        return square, "the mask is found when the run starts (Grounding-DINO + SAM)"
    try:
        if isinstance(mask, (str, Path)):
            region = load_mask(mask, scene.size, size)
        else:
            region = scene_mask(box_mask_array(scene.size, mask) > 127, size, f"the rectangle {list(mask)}")
    except SISOInputError as error:
        return square, str(error)
    note = f"the subject goes into {region.info['covered_fraction']:.0%} of the picture (tinted)"
    return overlay(square, region.square), "; ".join([note, *region.warnings])


# ----------------------------------------------------------------------------- parameters
@dataclass
class EditSetup(NotebookSetup):
    """NotebookSetup of an edit: the scene photo and the mask besides the subject and the knobs."""

    input_image_path: str = str(DEFAULT_SCENE)
    mask_box: tuple[float, float, float, float] | None = None  # with config.mask_path None and no automatic mask
    automatic_mask: bool = False

    @property
    def mask_mode(self) -> str:
        """"file" (mask_path), "auto" (Grounding-DINO + SAM) or "box" (the rectangle)."""
        return "file" if self.config.mask_path else "auto" if self.automatic_mask else "box"

    def describe(self) -> list[tuple[str, Any, str]]:
        return [(name, getattr(self.config, name), self.sources.get(name, "default")) for name in EDIT_KNOBS]

    def describe_mask(self) -> str:
        if self.mask_mode == "file":
            return f"the PNG {self.config.mask_path}"
        if self.mask_mode == "auto":
            return f"found automatically: Grounding-DINO + SAM for {self.config.input_class!r}"
        return f"the rectangle {list(self.mask_box)} (left, top, right, bottom as fractions of the scene)"

    def to_html(self) -> str:
        lines = (f"<p><b>scene:</b> <code>{html.escape(self.input_image_path)}</code> (object: "
                 f"{html.escape(repr(self.config.input_class))}, inversion prompt "
                 f"<i>{html.escape(self.config.scene_prompt)}</i>)<br><b>mask:</b> {html.escape(self.describe_mask())}</p>")
        return lines + super().to_html()


def edit_base_config(models: str, assets_dir: str | None = None) -> tuple[SISOEditConfig, dict | None]:
    """(SISOEditConfig before the user's knobs, the offline assets): the authors' editing defaults on the
    hub models, or the tiny offline SDXL, DINO and IR with OFFLINE_OVERRIDES (and the tiny Grounding-DINO
    and SAM for an automatic mask: random weights, so what they find is arbitrary)."""
    if models != "offline":
        return SISOEditConfig(), None
    from ..offline import ensure_test_assets

    quiet_libraries()
    assets = ensure_test_assets(assets_dir or test_assets_dir())
    base = SISOEditConfig(pretrained_model_name_or_path=assets["sdxl"], dino_model_name=assets["dino"],
                          ir_features_path=assets["ir"], **OFFLINE_OVERRIDES,
                          detector_model=assets["grounding_dino"], segmenter_model=assets["sam"])
    return base, assets


def prepare_edit(namespace: Mapping[str, Any], **changes: Any) -> EditSetup:
    """The parameters found in `namespace` (e.g. `globals()`, with `changes` on top) as one checked EditSetup.

    Each value gets its type, a name papermill injected that the cell does not define fails with
    the valid names, and every impossible combination is one line (NotebookParameterError).
    """
    values = read_parameters({**CELL_VALUES, **namespace, **changes}, EDIT_PARAMETERS)
    models = resolve_models(values["models"])
    knobs = {name: values[name] for name in EDIT_KNOBS if values[name] is not None}
    scene = str(Path(values["input_image_path"] or DEFAULT_SCENE).expanduser().absolute())
    sources = {}
    if "input_class" not in knobs and Path(scene) == DEFAULT_SCENE:
        knobs["input_class"] = DEFAULT_SCENE_CLASS
        sources["input_class"] = "example scene"
    mask_path, box, automatic = values["mask_path"], check_box(values["mask_box"]), bool(values["automatic_mask"])
    if mask_path and (box is not None or automatic):
        raise NotebookParameterError("give one mask: mask_path, or mask_box, or automatic_mask=True (not several)")
    if automatic and box is not None:
        raise NotebookParameterError("give one mask: mask_box or automatic_mask=True, not both")
    if automatic and not (knobs.get("input_class") or "").strip():
        raise NotebookParameterError("automatic_mask needs input_class: the class of the scene's object to find (e.g. 'dog')")
    if not mask_path and not automatic and box is None:
        box = DEFAULT_MASK_BOX
    try:
        base, assets = edit_base_config(models, values["assets_dir"])
        config = base.replace(input_image_path=scene, mask_path=str(Path(mask_path).expanduser().absolute()) if mask_path else None,
                              **knobs)
        # a rectangle becomes a PNG when the run starts: validate as if it were one already
        config.replace(mask_path=config.mask_path or BOX_MASK_NAME).validate()
    except ValueError as error:
        raise NotebookParameterError(str(error)) from None
    if models == "offline":  # the tiny models on the CPU: one torch thread (offline.single_thread_env decides)
        from ..offline import use_single_thread

        use_single_thread(models, config.device)
    hub = SISOEditConfig()
    for name in EDIT_KNOBS:
        if name in sources:
            continue
        if name in knobs:
            sources[name] = "set"
        elif getattr(base, name) != getattr(hub, name):
            sources[name] = "offline default"
        else:
            sources[name] = "default"
    return EditSetup(
        config=config,
        subject_image_path=str(Path(values["subject_image_path"] or DEFAULT_SUBJECT).expanduser().absolute()),
        models=models,
        output_dir=values["output_dir"],
        overwrite=bool(values["overwrite"]),
        assets=assets,
        sources=sources,
        interactive=widget_frontend() if values["interactive"] is None else values["interactive"],
        knobs=knobs,
        assets_dir=values["assets_dir"],
        input_image_path=scene,
        mask_box=box if not mask_path and not automatic else None,
        automatic_mask=automatic,
    )


# ----------------------------------------------------------------------------- figures
def inputs_figure(setup: EditSetup):
    """The scene photo, the square the edit works on with the mask tinted, and the subject photo."""
    from matplotlib.figure import Figure

    scene, subject = load_scene_image(setup.input_image_path), load_subject_photo(setup.subject_image_path)
    mask = setup.config.mask_path or (None if setup.mask_mode == "auto" else setup.mask_box)
    preview, note = mask_preview(scene, mask)
    figure = Figure(figsize=(10, 4.0), dpi=100)
    axes = figure.subplots(1, 3)
    for ax, image, label in ((axes[0], scene, f"scene {scene.width} x {scene.height}"), (axes[1], preview, "the edit's square + mask"),
                             (axes[2], subject, "subject photo")):
        _show_image(ax, image, label)
    figure.text(0.5, 0.02, note, ha="center", fontsize=9)
    figure.tight_layout(rect=(0, 0.05, 1, 0.96))
    return figure


def edit_dashboard_figure(snapshot: dict, scene_with_mask=None, subject_image=None, title: str | None = None,
                          last_label: str = "current"):
    """Loss curves (total; DINO, IR and background) over: scene with mask, subject, first, current, best edit."""
    from matplotlib.figure import Figure

    from ..io.plots import draw_losses

    figure = Figure(figsize=(12, 6.2), dpi=100)
    grid = figure.add_gridspec(2, 5, height_ratios=(1.0, 1.0))
    ax_total, ax_terms = figure.add_subplot(grid[0, 0:2]), figure.add_subplot(grid[0, 2:5])
    draw_losses(ax_total, ax_terms, snapshot["history"], snapshot["best_step"])
    ax_terms.set_ylabel("-cos (DINO, IR); MSE (background)")
    integer_iterations(ax_total, ax_terms)
    count, best = len(snapshot["history"]), snapshot["best_step"]
    panels = [
        (scene_with_mask, "before: scene, mask tinted"),
        (subject_image, "subject photo"),
        (snapshot["first"], "iteration 1 (LoRA = 0)"),
        (snapshot["current"], f"{last_label}: iteration {count}" if count else last_label),
        (snapshot["best"], ("after (best)" if last_label == "last" else "best so far") + (f": iteration {best}" if best else "")),
    ]
    for column, (image, label) in enumerate(panels):
        _show_image(figure.add_subplot(grid[1, column]), image, label)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure


class EditLiveFigure(LiveFigure):
    """LiveFigure with the edit's dashboard (the scene and its mask besides the subject)."""

    def __init__(self, recorder: RunRecorder, scene_with_mask, subject_image, title: str | None = None, every_seconds: float = 2.0):
        super().__init__(recorder, subject_image, title, every_seconds)
        self.scene_with_mask = scene_with_mask

    def _image(self, last_label: str = "current"):
        from IPython.display import Image

        figure = edit_dashboard_figure(self.recorder.snapshot(), self.scene_with_mask, self.subject_image, self.title, last_label)
        return Image(data=figure_png(figure), format="png")


# ----------------------------------------------------------------------------- one run
@dataclass
class EditRun(NotebookRun):
    """One edit: NotebookRun (config, subject, folder, recorder, outcome = editing.runner.EditOutcome)
    with the scene's rectangle, written into the run folder when the run starts."""

    mask_box: tuple[float, float, float, float] | None = None


def new_edit_run(setup: EditSetup, runs_root: str | Path | None = None) -> EditRun:
    """An EditRun writing into setup.output_dir, or into a fresh `<time>-edit-<subject>` folder."""
    subject = Path(setup.subject_image_path).stem
    output_dir = run_output_dir(setup.output_dir, runs_root or setup.runs_root, f"edit-{subject}")
    box = setup.mask_box if setup.mask_mode == "box" else None
    return EditRun(setup.config, setup.subject_image_path, output_dir, made_output_dir=not setup.output_dir, mask_box=box)


def stop_when(requested: Callable[[], bool]) -> Callable:
    """A callback that ends the run after the iteration in which `requested()` became true (the best LoRA is kept)."""
    def callback(event) -> None:
        if requested():
            event.request_stop()

    return callback


def execute_edit(run: EditRun, overwrite: bool = False, callbacks: tuple | list = ()) -> EditRun:
    """run_edit with the recorder first among the callbacks; fills run.outcome and the wall time.

    A rectangle is written first as the scene-sized PNG `mask_input.png` in the run folder (the
    run's mask_path). A run that fails before it wrote its result leaves no folder made for it.
    """
    from ..editing.runner import run_edit

    started = time.perf_counter()
    written = None
    try:
        if run.config.mask_path is None and run.mask_box is not None:
            written = write_box_mask(run.config.input_image_path, run.mask_box, Path(run.output_dir) / BOX_MASK_NAME)
            run.config = run.config.replace(mask_path=str(written))
        run.outcome = run_edit(run.config, run.subject_image_path, output_dir=run.output_dir,
                               callbacks=[run.recorder, *callbacks], overwrite=overwrite)
    except BaseException:
        if written is not None and run.outcome is None:
            written.unlink(missing_ok=True)
        if run.made_output_dir:
            discard_if_empty(run.output_dir)
        raise
    finally:
        run.wall_seconds = time.perf_counter() - started
    return run


def run_edit_headless(setup: EditSetup, live_every_seconds: float = 2.0, print_steps: bool = True) -> EditRun:
    """One edit without widgets: progress lines, a live inline figure, the run folder on disk."""
    from IPython.display import Markdown, display

    quiet_libraries()
    scene = load_scene_image(setup.input_image_path)  # both photos fail early, with one line
    subject = load_subject_photo(setup.subject_image_path)
    mask = setup.config.mask_path or (None if setup.mask_mode == "auto" else setup.mask_box)
    preview, _ = mask_preview(scene, mask)
    run = new_edit_run(setup)
    display(Markdown(f"Editing `{Path(setup.input_image_path).name}` with the subject of `{Path(setup.subject_image_path).name}`, "
                     f"writing to `{run.output_dir}`"))
    live = EditLiveFigure(run.recorder, preview, subject, title=f"SISO edit: {setup.config.prompt[:60]}", every_seconds=live_every_seconds)
    callbacks = [live]
    if print_steps:
        callbacks.insert(0, lambda event: print(step_line(event), flush=True))
    execute_edit(run, overwrite=setup.overwrite, callbacks=callbacks)
    live.update(last_label="last")
    return run


# ----------------------------------------------------------------------------- results
def background_change(run_dir: str | Path) -> dict[str, float]:
    """Mean absolute change of the edited picture from the scene (0..1 per channel), outside the mask
    (what the background term keeps) and inside it (where the subject goes), from the run's files."""
    import numpy as np
    from PIL import Image

    run_dir = Path(run_dir)
    square = run_dir / "result_square.png"  # the edit's square (result.png is the photo at its own size)
    with Image.open(run_dir / "scene.png") as scene, Image.open(square if square.is_file() else run_dir / "result.png") as result, \
            Image.open(run_dir / "mask.png") as mask:
        before = np.asarray(scene.convert("RGB"), np.float32) / 255.0
        after = np.asarray(result.convert("RGB").resize(scene.size), np.float32) / 255.0
        region = np.asarray(mask.convert("L")) > 127
    change = np.abs(after - before).mean(axis=2)
    return {"outside": float(change[~region].mean()), "inside": float(change[region].mean()) if region.any() else 0.0}


def edit_summary_markdown(run: EditRun) -> str:
    """generation's summary (stop reason, best iteration, files) with the edit's own files and its background change."""
    outcome = run.outcome
    lines = [summary_markdown(run)]
    for label, path in (("edited square", outcome.result_square), ("scene (the edit's square)", outcome.scene_image),
                        ("mask (white = subject)", outcome.mask_image), ("before / after strip", outcome.before_after)):
        if path:
            lines.append(f"| {label} | `{path}` |")
    result = outcome.result
    if result.best_image is not None:
        change = background_change(run.output_dir)
        lines.append("")
        lines.append(f"**Change from the scene** (mean absolute difference, 0-1 per channel): outside the mask "
                     f"{change['outside']:.4f}, inside {change['inside']:.4f}.")
        terms = {row["step"]: row.get("background") for row in result.history}
        if terms.get(1) is not None and terms.get(result.best_step) is not None:
            lines.append(f"The background term (MSE outside the mask, weight {run.config.bg_mse_loss_weight:g}) went from "
                         f"{terms[1]:.4f} at iteration 1 to {terms[result.best_step]:.4f} at the best iteration.")
    return "\n".join(lines)


def show_edit_results(run: EditRun | None) -> None:
    """The final report: the before/after strip, the loss curves and images, the stop reason, the files."""
    from IPython.display import Image, Markdown, display

    if run is None or not run.finished:
        message = run.error if run is not None and run.error else "No finished edit yet: press **Run** in the panel above, then run this cell again."
        display(Markdown(message))
        return
    outcome = run.outcome
    if outcome.before_after:
        display(Markdown("**scene | mask | subject | edited** (the best iteration):"))
        display(Image(filename=outcome.before_after))
    scene = load_scene_image(outcome.scene_image)  # the edit's square, with its mask.png
    preview, _ = mask_preview(scene, outcome.mask_image, size=scene.width)
    subject = load_subject_photo(run.subject_image_path)
    figure = edit_dashboard_figure(run.recorder.snapshot(), preview, subject, title=f"SISO edit: {run.config.prompt[:60]}",
                                   last_label="last")
    display(Image(data=figure_png(figure), format="png"))
    display(Markdown(edit_summary_markdown(run)))


def execute_edit_notebook(output_notebook: str | Path, parameters: dict[str, Any], **kwargs) -> None:
    """Run 04_edit_image.ipynb headless with papermill (interactive=False unless given)."""
    execute_generate_notebook(output_notebook, parameters, notebook=EDIT_NOTEBOOK, **kwargs)
