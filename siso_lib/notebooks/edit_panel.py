"""The interactive panel of `notebooks/04_edit_image.ipynb`: SISO editing with widgets.

    panel = EditPanel.from_setup(prepare_edit(globals()))
    panel                       # pick the scene, the subject and the mask; Run, watch, Stop

It is the generation panel (`notebook_ui.SISOPanel`: subject photo and upload, knobs, Run / Stop
in a background thread, progress, live loss curves and images, the files at the end) with the
edit's inputs added: the scene photo (example, path or upload), the scene's object class, the
mask and the two editing knobs (background weight, inversion strength).

The mask is a **rectangle** set with two range sliders over the scene (not a brush: the sliders
are what the panel offers for drawing), a **mask PNG** of the scene's size, or found
**automatically** (Grounding-DINO + SAM for the scene's object class; real models only). The
preview shows the square the edit works on, with the mask tinted. A rectangle is stored as a
scene-sized PNG under the uploads folder (`mask-<W>x<H>-<hash>.png`) when a run starts, so
run.json names a file that exists.

Stop ends the run after the current iteration (a callback asks the optimiser to stop), keeping
the best LoRA and image so far. Tested without a browser like the generation panel.
"""

from __future__ import annotations

import hashlib
import html
from pathlib import Path
from typing import Any

import ipywidgets as widgets

from ..config import SISOEditConfig
from ..errors import SISOInputError
from .edit import (
    DEFAULT_MASK_BOX,
    EditSetup,
    background_change,
    check_box,
    coerce_edit_knob,
    execute_edit,
    load_scene_image,
    mask_preview,
    stop_when,
    write_box_mask,
)
from .figures import pil_png
from .headless import NotebookRun
from .panel import WIDE, SISOPanel, _placeholder, _upload_entries, exact_choices

BACKGROUND_WEIGHTS = (0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0)
STRENGTHS = (0.25, 0.5, 0.75, 1.0)  # of the 4 ReNoise steps: 0.75 regenerates the last 3 (the authors')
MASK_SOURCES = (("rectangle", "box"), ("mask PNG", "file"), ("automatic", "auto"))  # automatic: finds the scene object


class EditPanel(SISOPanel):
    """Pick the scene, the subject and the mask, set the knobs, Run / Stop, watch the edit live."""

    KNOBS = (
        "prompt", "input_class", "num_train_epochs", "learning_rate", "rank", "resolution", "seed",
        "dino_features_weight", "ir_features_weight", "bg_mse_loss_weight", "inversion_max_step",
        "early_stopping_threshold_percentage", "early_stopping_max_count", "train_text_encoder",
        "device", "precision", "mode", "ir_features_path",
    )

    def __init__(self, config: SISOEditConfig, subject_image_path: str, input_image_path: str,
                 mask_box=None, automatic_mask: bool = False, **kwargs):
        self._scene_start = (str(input_image_path), config.mask_path, check_box(mask_box) or DEFAULT_MASK_BOX,
                             "file" if config.mask_path else "auto" if automatic_mask else "box")
        self._scene_pil = None
        self._scene_checked: str | None = None
        self._quiet_scene = False
        super().__init__(config.replace(mask_path=None), subject_image_path, **kwargs)

    @classmethod
    def from_setup(cls, setup: EditSetup, **kwargs) -> "EditPanel":
        options = dict(output_dir=setup.output_dir, runs_root=setup.runs_root, overwrite=setup.overwrite)
        options.update(kwargs)
        return cls(setup.config, setup.subject_image_path, setup.input_image_path, setup.mask_box, setup.automatic_mask,
                   **options)

    # ------------------------------------------------------------------ layout
    def _build(self, c: SISOEditConfig, subject_image_path: str, examples_dir) -> None:
        super()._build(c, subject_image_path, examples_dir)  # the generation panel's widgets (some stay hidden)
        W = widgets
        scene_path, mask_path, box, source = self._scene_start
        self.scene_examples = W.Dropdown(options=[("(choose an example scene)", "")] + list(self.examples.options)[1:], value="",
                                         description="example scenes", style=WIDE, layout=W.Layout(width="420px"))
        self.scene_path = W.Text(value=scene_path, description="scene image path", style=WIDE, layout=W.Layout(width="95%"),
                                 continuous_update=False)
        self.scene_upload = W.FileUpload(accept="image/*", multiple=False, description="upload a scene",
                                         layout=W.Layout(width="220px", margin="2px 0 2px 154px"))
        self.input_class = W.Text(value=c.input_class or "", description="scene object", style=WIDE,
                                  layout=W.Layout(width="95%"), placeholder="what the subject replaces, e.g. 'dog'")
        self.mask_source = W.ToggleButtons(options=list(MASK_SOURCES), value=source, description="mask", style=WIDE)
        self.mask_x = W.FloatRangeSlider(value=(box[0], box[2]), min=0.0, max=1.0, step=0.01, description="left - right",
                                         style=WIDE, continuous_update=False, readout_format=".2f")
        self.mask_y = W.FloatRangeSlider(value=(box[1], box[3]), min=0.0, max=1.0, step=0.01, description="top - bottom",
                                         style=WIDE, continuous_update=False, readout_format=".2f")
        self.mask_path = W.Text(value=mask_path or "", description="mask PNG", style=WIDE, layout=W.Layout(width="95%"),
                                placeholder="a PNG of the scene's size, white = where the subject goes", continuous_update=False)
        self.mask_note = W.HTML()
        self.inversion_max_step = W.SelectionSlider(options=exact_choices(STRENGTHS, c.inversion_max_step),
                                                    value=c.inversion_max_step, description="strength", style=WIDE)
        self.bg_mse_loss_weight = W.SelectionSlider(options=exact_choices(BACKGROUND_WEIGHTS, c.bg_mse_loss_weight),
                                                    value=c.bg_mse_loss_weight, description="background weight", style=WIDE)
        self.scene_view = W.Image(value=_placeholder("no scene"), format="png",
                                  layout=W.Layout(width="200px", height="200px", object_fit="contain"))
        self.mask_view = W.Image(value=_placeholder("no scene"), format="png",  # the same preview, beside the sliders
                                 layout=W.Layout(width="180px", height="180px", object_fit="contain"))

        self.scene_examples.observe(lambda change: change["new"] and self._select_scene(
            change["new"], origin=f"example {Path(change['new']).name!r}"), names="value")
        self.scene_path.observe(lambda change: self._quiet_scene or self._select_scene(str(change["new"]).strip()), names="value")
        self.scene_upload.observe(self._on_scene_upload, names="value")
        for control in (self.mask_source, self.mask_x, self.mask_y, self.mask_path):
            control.observe(lambda _change: self._show_mask(), names="value")

        def box(title, *children):
            return W.VBox([W.HTML(f"<b>{title}</b>"), *children])

        def column(caption, image):
            return W.VBox([caption, image], layout=W.Layout(align_items="center", margin="0 8px 0 0"))

        inputs = W.HBox([
            box("Scene: the photo to edit", self.scene_examples, self.scene_path, self.scene_upload, self.input_class),
            box("Subject: what goes into it", self.examples, self.subject_path, self.upload, self.prompt),
        ])
        mask = W.HBox([box("Mask: where the subject goes (tinted in the preview)", self.mask_source, self.mask_x, self.mask_y,
                           self.mask_path, self.mask_note), self.mask_view], layout=W.Layout(align_items="center"))
        knobs = W.HBox([
            box("Optimisation", self.num_train_epochs, self.learning_rate, self.rank, self.resolution, self.seed),
            box("Loss, inversion and early stopping", self.dino_features_weight, self.ir_features_weight, self.bg_mse_loss_weight,
                self.inversion_max_step, self.early_stopping_threshold_percentage, self.early_stopping_max_count,
                self.train_text_encoder),
        ])
        advanced = W.Accordion(children=[W.VBox([self.device, self.precision, self.mode, self.ir_features_path])])
        advanced.set_title(0, "Device, precision, IR checkpoint")
        advanced.selected_index = None
        buttons = W.HBox([self.run_button, self.stop_button, self.progress], layout=W.Layout(align_items="center"))
        self.current_caption.value, self.best_caption.value = "<b>current edit</b>", "<b>after: best edit so far</b>"
        images = W.HBox([
            column(W.HTML("<b>before: scene, mask tinted</b>"), self.scene_view),
            column(W.HTML("<b>subject photo</b>"), self.subject_view),
            column(self.current_caption, self.current_view),
            column(self.best_caption, self.best_view),
        ])
        self.widget = W.VBox([inputs, mask, knobs, advanced, buttons, self.status, self.loss_plot, images, self.result_info],
                             layout=W.Layout(width="100%"))
        self.widget.add_class("siso-panel")
        self.widget.add_class("siso-edit-panel")
        self._select_scene(scene_path)

    # ------------------------------------------------------------------ widgets <-> config
    @staticmethod
    def _coerce_knob(name: str, value: Any) -> Any:
        return coerce_edit_knob(name, value)

    @property
    def box(self) -> tuple[float, float, float, float]:
        """The rectangle the sliders show: (left, top, right, bottom) as fractions of the scene."""
        (left, right), (top, bottom) = self.mask_x.value, self.mask_y.value
        return (left, top, right, bottom)

    def _box_mask_file(self) -> Path:
        """The rectangle as a scene-sized PNG under the uploads folder (one file per size and rectangle)."""
        scene = load_scene_image(self._scene_checked)
        key = hashlib.sha256(repr((scene.size, self.box)).encode()).hexdigest()[:12]
        path = self.upload_dir / f"mask-{scene.width}x{scene.height}-{key}.png"
        if not path.is_file():
            write_box_mask(self._scene_checked, self.box, path)
        return path

    def config(self) -> SISOEditConfig:
        """The SISOEditConfig the widgets describe; a rectangle is written as its PNG here (see the module doc)."""
        config = super().config()
        source = self.mask_source.value
        if self._scene_checked is None:
            raise SISOInputError("choose a readable scene photo first")
        mask_path = None
        if source == "file":
            mask_path = self.mask_path.value.strip()
            if not mask_path:
                raise SISOInputError("the mask PNG box is empty: give a PNG of the scene's size, or choose the rectangle")
        elif source == "box":
            check_box(self.box, "the rectangle")
            mask_path = str(self._box_mask_file())
        return config.replace(input_image_path=self._scene_checked, mask_path=mask_path)

    def set_values(self, **values: Any) -> None:
        """As SISOPanel.set_values, plus input_image_path, mask_box, mask_path and automatic_mask."""
        if "input_image_path" in values:
            self.scene_path.value = str(values.pop("input_image_path"))
        if "mask_box" in values:
            left, top, right, bottom = check_box(values.pop("mask_box"))
            self.mask_x.value, self.mask_y.value = (left, right), (top, bottom)
            self.mask_source.value = "box"
        if "mask_path" in values:
            self.mask_path.value = str(values.pop("mask_path") or "")
            self.mask_source.value = "file"
        if values.pop("automatic_mask", False):
            self.mask_source.value = "auto"
        super().set_values(**values)

    # ------------------------------------------------------------------ scene and mask
    def _select_scene(self, path: str, origin: str | None = None) -> bool:
        """Check the scene photo and make it the panel's scene (preview and the next run follow it)."""
        try:
            self._scene_pil, self._scene_checked = load_scene_image(path), path
        except SISOInputError as error:
            self._scene_pil = self._scene_checked = None
            self.scene_view.value = self.mask_view.value = _placeholder("no scene")
            what = f"{html.escape(origin)}: " if origin else ""
            self._set_status(f"Scene photo: {what}{html.escape(str(error))}", "error")
            return False
        if origin:
            self._quiet_scene = True
            try:
                self.scene_path.value = path
            finally:
                self._quiet_scene = False
        self._show_mask()
        if not self.running:
            self._set_status(f"Scene: <code>{html.escape(path)}</code>. Press <b>Run</b>.")
        return True

    def _on_scene_upload(self, change) -> None:
        entries = _upload_entries(change["new"])
        if entries:
            name, content = entries[-1]
            target, written = self._store_upload(name, content)
            if not self._select_scene(str(target), origin=f"upload {name!r}") and written:
                target.unlink(missing_ok=True)

    def _show_mask(self) -> None:
        source = self.mask_source.value
        self.mask_x.disabled = self.mask_y.disabled = source != "box"
        self.mask_path.disabled = source != "file"
        if self._scene_pil is None:
            return
        if source == "file" and not self.mask_path.value.strip():
            preview, note = mask_preview(self._scene_pil, None)[0], "give the path of a PNG of the scene's size (white = subject)"
        else:
            mask = self.box if source == "box" else self.mask_path.value.strip() if source == "file" else None
            preview, note = mask_preview(self._scene_pil, mask)
        self.scene_view.value = self.mask_view.value = pil_png(preview)
        self.mask_note.value = f"<i>{html.escape(note)}</i>"

    # ------------------------------------------------------------------ run control
    def start(self) -> NotebookRun | None:
        if not self.running and self._scene_checked is None:
            self._set_status("Cannot run: choose a readable scene photo first.", "error")
            return None
        return super().start()

    def _execute(self, run: NotebookRun) -> None:
        execute_edit(run, overwrite=self.overwrite, callbacks=[self._on_step, stop_when(lambda: self._stop_requested)])

    def _finish(self, run: NotebookRun) -> None:
        super()._finish(run)
        outcome = run.outcome
        if outcome is None:
            return
        rows = [(label, path) for label, path in (("edited square", outcome.result_square), ("scene (the edit's square)", outcome.scene_image),
                                                  ("mask", outcome.mask_image), ("before / after strip", outcome.before_after)) if path]
        extra = "".join(f"<li>{label}: <code>{html.escape(path)}</code></li>" for label, path in rows)
        if outcome.result.best_image is not None:
            change = background_change(run.output_dir)
            extra += (f"<li>change from the scene (mean absolute, 0-1): outside the mask <b>{change['outside']:.4f}</b>, "
                      f"inside {change['inside']:.4f}</li>")
        self.result_info.value = self.result_info.value.replace("</ul>", extra + "</ul>") if "</ul>" in self.result_info.value \
            else f"<ul>{extra}</ul>"
