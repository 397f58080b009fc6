"""The interactive SISO panel (ipywidgets) of `notebooks/01_generate_lora.ipynb`.

    panel = SISOPanel.from_setup(prepare_run(globals()))
    panel                       # shows it; press Run, watch, press Stop whenever you like

The model family control (auto, sdxl, flux, sana) switches the base model and every knob that
still shows the old family's recipe value (learning rate, inference steps, text-encoder LoRA,
patience, ...) to the new family's value, exactly what a headless run with that `model_family`
gets; knobs the user changed keep their values. Offline, the family's tiny model is written on
first use.

Run starts the optimiser in a background thread, so the kernel stays free (other cells run,
Stop is heard). Every iteration updates the progress bar and status line; the loss curves and
the current / best images are redrawn at most every `refresh_seconds` (and always on a new
best and at the end). Stop calls `SISOOptimizer.request_stop()`: the run ends after the current
iteration and the best LoRA so far is written, as after a normal finish.

Everything is plain Python on top of ipywidgets, so it is tested without a browser:
`panel.set_values(num_train_epochs=5)`, `panel.run_button.click()`, `panel.wait()`.
"""

from __future__ import annotations

import html
import re
import threading
import unicodedata
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import ipywidgets as widgets

from ..config import MODES, PRECISIONS, QUANTIZE, SISOConfig
from ..cli.common import quiet_libraries
from ..io.locations import runs_root as default_runs_root
from ..io.locations import shipped
from .figures import RunRecorder, figure_png, integer_iterations, pil_png
from .headless import NotebookRun, execute_run, new_run
from .setup import FAMILY_CHOICES, FAMILY_NAMES, NotebookSetup, coerce_knob, coerce_parameter

EXAMPLES_DIR = shipped("data")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
WIDE = {"description_width": "150px"}


# The choices of the panel's number knobs. Every number knob is a Dropdown or SelectionSlider:
# the browser only ever sends back the index of a choice, so the value a knob holds is exactly
# the number it shows (a FloatLogSlider that shows "5.0e-3" may hold 0.0050119), which is
# exactly what a headless run given the same text gets. A value outside a list (from the
# parameters cell or set_values) is added to it under its own exact label.
LEARNING_RATES = tuple(float(f"{mantissa}e{exponent}") for exponent in range(-6, -1) for mantissa in (1, 2, 3, 5)) + (0.1,)
LOSS_WEIGHTS = tuple(round(0.05 * k, 2) for k in range(41))  # 0, 0.05, ..., 2
THRESHOLD_PERCENTAGES = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0)
RANKS = (1, 2, 4, 8, 16, 32, 64)
RESOLUTIONS = (64, 128, 256, 512, 768, 1024)


def number_label(value: float | int) -> str:
    """The shortest text that reads back as exactly `value`: 0.005 -> "0.005", 2e-05 -> "2e-5"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    text = f"{value:g}"
    if float(text) != value:
        text = repr(float(value))
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}e{int(exponent)}" if e else text


def exact_choices(values, current) -> list[tuple[str, Any]]:
    """(label, value) pairs, sorted, always holding `current`; float(label) == value for each."""
    return [(number_label(value), value) for value in sorted(set(values) | {current})]


def _device_options(current: str) -> list[str]:
    options = ["auto", "cpu"]
    try:
        import torch

        options += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
            options.append("mps")
        if hasattr(torch, "xpu") and torch.xpu.is_available():
            options.append("xpu")
    except Exception:  # noqa: BLE001 - the panel must show even where torch cannot probe devices
        pass
    return options if current in options else options + [current]


def upload_file_name(name: str) -> str:
    """A safe file name for an uploaded photo: no folders, no leading dot, the stem in any script
    ("猫.jpg" stays "猫.jpg"; "my cat (1).png" -> "my-cat-1.png"), the extension kept."""
    base = unicodedata.normalize("NFC", str(name)).replace("\\", "/").rsplit("/", 1)[-1]
    stem, dot, suffix = base.rpartition(".")
    if not dot or not re.fullmatch(r"\w{1,10}", suffix):
        stem, suffix = base, ""
    stem = re.sub(r"[^\w.-]+", "-", stem).strip("-.") or "upload"
    while len(stem.encode("utf-8")) > 150:  # file systems allow 255 bytes; non-Latin letters take 2-4 each
        stem = stem[:-1]
    return f"{stem}.{suffix}" if suffix else stem


def _upload_entries(value) -> list[tuple[str, bytes]]:
    """(name, bytes) pairs from a FileUpload value (ipywidgets 8: tuple of dicts; 7: dict by name)."""
    if isinstance(value, dict):
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value or ()]


def _placeholder(text: str = "waiting for\nthe first iteration") -> bytes:
    """A light grey square with a caption, shown before an image exists."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (160, 160), (238, 238, 238))
    ImageDraw.Draw(image).multiline_text((80, 80), text, fill=(130, 130, 130), anchor="mm", align="center")
    return pil_png(image)


class SISOPanel:
    """Pick a photo, set the knobs, Run / Stop, and watch the loss curves and images live."""

    def __init__(
        self,
        config: SISOConfig,
        subject_image_path: str,
        output_dir: str | None = None,
        runs_root: str | Path | None = None,
        overwrite: bool = False,
        examples_dir: str | Path | None = EXAMPLES_DIR,
        upload_dir: str | Path | None = None,
        refresh_seconds: float = 0.5,
        family_config: Callable[[str], SISOConfig] | None = None,
    ):
        self.base_config = config
        # model_family -> the config the panel starts from for that family (NotebookSetup.config_for_family)
        self._family_config = family_config or (lambda family: self.base_config.replace(model_family=family))
        self.output_dir = output_dir
        self.runs_root = Path(runs_root or default_runs_root())
        self.overwrite = overwrite
        self.upload_dir = Path(upload_dir) if upload_dir else self.runs_root.parent / "uploads"
        self.refresh_seconds = refresh_seconds
        self.run: NotebookRun | None = None  # the latest run (also while it is going)
        self.runs: list[NotebookRun] = []
        self.optimizer = None
        self._thread: threading.Thread | None = None
        self._stop_requested = False
        self._last_render = 0.0
        self._subject_pil = None
        self._subject_checked: str | None = None  # the photo the preview shows and the next run uses
        self._subject_error: str | None = None
        self._quiet_path = False  # set while the panel itself writes the path box
        self._build(config, subject_image_path, examples_dir)

    @classmethod
    def from_setup(cls, setup: NotebookSetup, **kwargs) -> "SISOPanel":
        options = dict(output_dir=setup.output_dir, runs_root=setup.runs_root, overwrite=setup.overwrite,
                       family_config=setup.config_for_family)
        options.update(kwargs)
        return cls(setup.config, setup.subject_image_path, **options)

    # ------------------------------------------------------------------ layout
    def _build(self, c: SISOConfig, subject_image_path: str, examples_dir) -> None:
        W = widgets
        examples = []
        if examples_dir and Path(examples_dir).is_dir():
            examples = sorted(str(p) for p in Path(examples_dir).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        self.examples = W.Dropdown(options=[("(choose an example photo)", "")] + [(Path(p).name, p) for p in examples],
                                   value="", description="example photos", style=WIDE, layout=W.Layout(width="420px"))
        self.subject_path = W.Text(value=str(subject_image_path), description="subject image path", style=WIDE,
                                   layout=W.Layout(width="95%"), continuous_update=False)  # checked on Enter / leaving the box
        self.upload = W.FileUpload(accept="image/*", multiple=False, description="upload a photo",
                                   layout=W.Layout(width="220px", margin="2px 0 2px 154px"))
        self.model_family = W.Dropdown(options=list(FAMILY_CHOICES), value=c.model_family, description="model family",
                                       style=WIDE)
        self.base_model_info = W.HTML()
        self.prompt = W.Text(value=c.prompt, description="prompt", style=WIDE, layout=W.Layout(width="95%"),
                             placeholder="a simple prompt naming the subject's class, e.g. 'a photo of a cat'")

        self.num_train_epochs = W.IntSlider(value=c.num_train_epochs, min=1, max=max(200, c.num_train_epochs),
                                            description="max iterations", style=WIDE)
        self.learning_rate = W.SelectionSlider(options=exact_choices(LEARNING_RATES, c.learning_rate),
                                               value=c.learning_rate, description="learning rate", style=WIDE)
        self.rank = W.Dropdown(options=exact_choices(RANKS, c.rank), value=c.rank, description="LoRA rank", style=WIDE)
        self.num_inference_steps = W.IntSlider(value=c.num_inference_steps, min=1, max=max(50, c.num_inference_steps),
                                               description="inference steps", style=WIDE)
        self.resolution = W.Dropdown(options=exact_choices(RESOLUTIONS, c.resolution), value=c.resolution,
                                     description="resolution (px)", style=WIDE)
        self.seed = W.IntText(value=c.seed, description="seed", style=WIDE)
        self.dino_features_weight = W.SelectionSlider(options=exact_choices(LOSS_WEIGHTS, c.dino_features_weight),
                                                      value=c.dino_features_weight, description="DINO weight", style=WIDE)
        self.ir_features_weight = W.SelectionSlider(options=exact_choices(LOSS_WEIGHTS, c.ir_features_weight),
                                                    value=c.ir_features_weight, description="IR weight", style=WIDE)
        self.early_stopping_threshold_percentage = W.SelectionSlider(
            options=exact_choices(THRESHOLD_PERCENTAGES, c.early_stopping_threshold_percentage),
            value=c.early_stopping_threshold_percentage, description="improvement (%)", style=WIDE)
        self.early_stopping_max_count = W.IntSlider(value=c.early_stopping_max_count, min=1,
                                                    max=max(50, c.early_stopping_max_count),
                                                    description="patience (its)", style=WIDE)
        self.train_text_encoder = W.Checkbox(value=c.train_text_encoder, description="LoRA on the text encoders too",
                                             indent=False)
        self.device = W.Dropdown(options=_device_options(c.device), value=c.device, description="device", style=WIDE)
        self.precision = W.Dropdown(options=list(PRECISIONS), value=c.precision, description="precision", style=WIDE)
        self.mode = W.Dropdown(options=list(MODES), value=c.mode, description="mode", style=WIDE,
                               tooltip="auto: the fastest mode predicted to fit the GPU's free memory (docs/memory.md)")
        self.quantize = W.Dropdown(options=list(QUANTIZE), value=c.quantize, description="frozen weights", style=WIDE,
                                   tooltip="int8 / fp8 frozen denoiser weights (the LoRA stays fp32); auto: only if nothing else fits")
        self.ir_features_path = W.Text(value=c.ir_features_path or "", description="IR checkpoint", style=WIDE,
                                       placeholder="ir_features.pth (empty: DINO only)", layout=W.Layout(width="95%"))

        self.run_button = W.Button(description="Run", button_style="success", icon="play", tooltip="start a SISO run")
        self.stop_button = W.Button(description="Stop", button_style="danger", icon="stop", disabled=True,
                                    tooltip="end after this iteration and keep the best LoRA so far")
        self.progress = W.IntProgress(value=0, min=0, max=c.num_train_epochs, description="0 / "
                                      f"{c.num_train_epochs}", style={"description_width": "70px"},
                                      layout=W.Layout(width="340px"))
        self.status = W.HTML(value="Ready: press <b>Run</b>.")
        self.loss_plot = W.Image(format="png", layout=W.Layout(width="720px"))
        side = W.Layout(width="200px", height="200px", object_fit="contain")
        self.subject_view = W.Image(format="png", layout=side)
        self.current_view = W.Image(value=_placeholder(), format="png", layout=side)
        self.best_view = W.Image(value=_placeholder(), format="png", layout=side)
        self.current_caption = W.HTML("<b>current</b>")
        self.best_caption = W.HTML("<b>best so far</b>")
        self.result_info = W.HTML()

        self.examples.observe(self._on_example, names="value")
        self.subject_path.observe(self._on_subject_path, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.num_train_epochs.observe(self._on_steps, names="value")
        self.model_family.observe(self._on_family, names="value")
        self.run_button.on_click(lambda _button: self.start())
        self.stop_button.on_click(lambda _button: self.stop())

        def box(title, *children):
            return W.VBox([W.HTML(f"<b>{title}</b>"), *children])

        model_box = box("Model", W.HBox([self.model_family, self.base_model_info], layout=W.Layout(align_items="center")))
        subject_box = box("Subject", self.examples, self.subject_path, self.upload, self.prompt)
        knobs_left = box("Optimisation", self.num_train_epochs, self.learning_rate, self.rank, self.resolution,
                         self.num_inference_steps, self.seed)
        knobs_right = box("Loss and early stopping", self.dino_features_weight, self.ir_features_weight,
                          self.early_stopping_threshold_percentage, self.early_stopping_max_count, self.train_text_encoder)
        advanced = W.Accordion(children=[W.VBox([self.device, self.precision, self.mode, self.quantize, self.ir_features_path])])
        advanced.set_title(0, "Device, precision, memory, IR checkpoint")
        advanced.selected_index = None
        controls = W.VBox([model_box, subject_box, W.HBox([knobs_left, knobs_right]), advanced])
        buttons = W.HBox([self.run_button, self.stop_button, self.progress], layout=W.Layout(align_items="center"))

        def column(caption, image):
            return W.VBox([caption, image], layout=W.Layout(align_items="center", margin="0 8px 0 0"))

        images = W.HBox([
            column(W.HTML("<b>subject photo</b>"), self.subject_view),
            column(self.current_caption, self.current_view),
            column(self.best_caption, self.best_view),
        ])
        self.widget = W.VBox([controls, buttons, self.status, self.loss_plot, images, self.result_info],
                             layout=W.Layout(width="100%"))
        self.widget.add_class("siso-panel")
        self._show_family(c)
        self._on_subject_path({"new": self.subject_path.value})
        self._render_plot(RunRecorder().snapshot())

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    # ------------------------------------------------------------------ widgets <-> config
    KNOBS = (  # model_family first: the family's recipe is the starting point of the other knobs
        "model_family", "prompt", "num_train_epochs", "learning_rate", "rank", "resolution", "num_inference_steps", "seed",
        "dino_features_weight",
        "ir_features_weight", "early_stopping_threshold_percentage", "early_stopping_max_count", "train_text_encoder",
        "device", "precision", "mode", "quantize", "ir_features_path",
    )

    def config(self) -> SISOConfig:
        """The SISOConfig the widgets describe (the notebook's config with the panel's knobs).

        Each knob's value goes through the same conversion as a notebook parameter (coerce_knob),
        so the panel and a headless run given the same shown values make the same config; an empty
        IR checkpoint box means no IR checkpoint (DINO only), as ir_features_path="" does.
        """
        return self.base_config.replace(**{name: self._coerce_knob(name, getattr(self, name).value) for name in self.KNOBS})

    @staticmethod
    def _coerce_knob(name: str, value: Any) -> Any:
        """A knob's value with its config type (a subclass with other knobs converts those too)."""
        return coerce_knob(name, value)

    def set_values(self, **values: Any) -> None:
        """Set knobs by their SISOConfig names (and `subject_image_path`), as a user would;
        `model_family` is set first, so that the other values given apply to the new family."""
        for name in sorted(values, key=lambda key: key != "model_family"):
            value = values[name]
            if name == "subject_image_path":
                self.subject_path.value = str(value)
            elif name in self.KNOBS:
                self._set_widget(name, value)
            else:
                raise ValueError(f"the panel has no knob {name!r}; knobs: subject_image_path, {', '.join(self.KNOBS)}")

    def _set_widget(self, name: str, value: Any) -> None:
        """Show `value` in knob `name`'s widget (a number outside a list of choices is added to it)."""
        widget = getattr(self, name)
        if isinstance(widget, widgets.Text):
            widget.value = "" if value is None else str(value)
            return
        value = self._coerce_knob(name, value)
        if isinstance(widget, (widgets.Dropdown, widgets.SelectionSlider)):
            pairs = [option if isinstance(option, tuple) else (str(option), option) for option in widget.options]
            if value not in [option for _label, option in pairs]:
                numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for _l, v in pairs)
                if numeric:
                    widget.options = exact_choices([option for _label, option in pairs], value)
                else:
                    widget.options = [*pairs, (str(value), value)]
        if isinstance(widget, widgets.IntSlider) and value > widget.max:
            widget.max = value
        widget.value = value

    # ------------------------------------------------------------------ events
    def _on_family(self, change) -> None:
        """Another model family: its base model, and its recipe in every knob the user did not change."""
        family = change["new"]
        old = self.base_config
        if not self.running:
            self._set_status(f"Preparing the {html.escape(str(family))} settings ...")
        try:
            new = self._family_config(family)
        except ValueError as error:  # e.g. a base model folder of another family: Run refuses it with this line
            self.base_config = old.replace(model_family=family)
            self._show_family(self.base_config)
            self._set_status(f"Model family {html.escape(str(family))}: {html.escape(str(error))}", "error")
            return
        for name in self.KNOBS:
            if name == "model_family":
                continue
            shown = getattr(self, name).value
            shown = None if name == "ir_features_path" and shown == "" else shown
            if coerce_knob(name, shown) == getattr(old, name) and getattr(new, name) != getattr(old, name):
                self._set_widget(name, getattr(new, name))
        self.base_config = new
        self._show_family(new)
        if not self.running:
            self._set_status(f"Model family <b>{html.escape(str(new.family))}</b>: "
                             f"<code>{html.escape(str(new.pretrained_model_name_or_path))}</code>. Press <b>Run</b>.")

    def _show_family(self, config: SISOConfig) -> None:
        try:
            family = config.family
        except ValueError:
            family = None
        name = FAMILY_NAMES.get(family, family or "unknown family")
        self.base_model_info.value = (f"<span style='margin-left:8px'>{html.escape(str(name))}: "
                                      f"<code>{html.escape(str(config.pretrained_model_name_or_path))}</code></span>")
        self.train_text_encoder.disabled = family == "sana"  # the authors train Sana's transformer only

    def _on_example(self, change) -> None:
        if change["new"]:
            self._select_subject(change["new"], origin=f"example {Path(change['new']).name!r}")

    def _on_subject_path(self, change) -> None:
        if not self._quiet_path:
            self._select_subject(coerce_parameter("subject_image_path", str(change["new"])) or "")

    def _select_subject(self, path: str, origin: str | None = None) -> bool:
        """Check the photo at `path` and make it the panel's subject: preview, check and the next run
        all follow it. A photo that fails the check leaves no subject (Run is refused) and says why."""
        from ..errors import SISOInputError
        from ..io.images import load_subject_image

        self._quiet_path = True
        try:
            try:
                self._subject_pil = load_subject_image(path).image
                self._subject_checked = path
            except SISOInputError as error:
                self._subject_pil, self._subject_checked, self._subject_error = None, None, str(error)
                self.subject_view.value = _placeholder("no photo")
                what = f"{html.escape(origin)}: " if origin else ""
                self._set_status(f"Subject photo: {what}{html.escape(str(error))}", "error")
                if origin:  # a refused upload is nobody's subject: the path box must not show an older photo
                    self.subject_path.value = ""
                return False
            if origin:
                self.subject_path.value = path
        finally:
            self._quiet_path = False
        self.subject_view.value = pil_png(self._subject_pil, max_side=256)
        if not self.running:
            self._set_status(f"Subject: <code>{html.escape(path)}</code>. Press <b>Run</b>.")
        return True

    def _store_upload(self, name: str, content: bytes) -> tuple[Path, bool]:
        """Save an uploaded photo under its own name (stem in any script, extension kept); a different
        photo under a name already used (phones call every photo image.jpg) gets image-2.jpg, ...
        Returns the path and whether this call wrote it."""
        self.upload_dir.mkdir(parents=True, exist_ok=True)
        file_name = upload_file_name(name)
        suffix = Path(file_name).suffix
        stem = file_name[: len(file_name) - len(suffix)]
        number = 1
        while True:
            target = self.upload_dir / (file_name if number == 1 else f"{stem}-{number}{suffix}")
            try:
                with open(target, "xb") as handle:  # never replaces a file an earlier run may have used
                    handle.write(content)
                return target, True
            except FileExistsError:
                if target.read_bytes() == content:
                    return target, False
                number += 1

    def _on_upload(self, change) -> None:
        entries = _upload_entries(change["new"])
        if not entries:
            return
        name, content = entries[-1]
        target, written = self._store_upload(name, content)
        if not self._select_subject(str(target), origin=f"upload {name!r}") and written:
            target.unlink(missing_ok=True)  # not a usable photo: keep nothing of it

    def _on_steps(self, change) -> None:
        if not self.running:
            self.progress.max = change["new"]
            self.progress.description = f"0 / {change['new']}"

    # ------------------------------------------------------------------ run control
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> NotebookRun | None:
        """Start a run in a background thread (what the Run button does); returns it."""
        if self.running:
            return self.run
        try:
            config = self.config()
            config.validate()
        except ValueError as error:
            self._set_status(f"Cannot run: {html.escape(str(error))}", "error")
            return None
        subject = self._subject_checked
        if subject is None:
            self._set_status("Cannot run: choose a readable subject photo first.", "error")
            return None
        if not self._select_subject(subject):  # checked again: the run gets the photo the preview shows
            self._set_status(f"Cannot run: {html.escape(self._subject_error or '')}", "error")
            return None
        try:
            run = new_run(config, subject, self.output_dir, self.runs_root)
        except Exception as error:  # noqa: BLE001 - shown to the user, not raised into the widget callback
            self._set_status(f"Cannot run: {html.escape(str(error))}", "error")
            return None
        self.run, self.optimizer, self._stop_requested = run, None, False
        self.runs.append(run)
        self.progress.max, self.progress.value = config.num_train_epochs, 0
        self.progress.bar_style = "info"
        self.progress.description = f"0 / {config.num_train_epochs}"
        self.current_view.value = self.best_view.value = _placeholder()
        self.result_info.value = ""
        self._render_plot(run.recorder.snapshot())
        self.run_button.disabled, self.stop_button.disabled = True, False
        quiet_libraries()
        self._set_status(f"Loading models ({html.escape(config.pretrained_model_name_or_path)}; the first use of a hub "
                         "model downloads it) ...")
        self._thread = threading.Thread(target=self._work, args=(run,), name="siso-panel-run", daemon=True)
        self._thread.start()
        return run

    def stop(self) -> None:
        """End the run after the current iteration; the best LoRA so far is saved (the Stop button)."""
        self._stop_requested = True
        if self.optimizer is not None:
            self.optimizer.request_stop()
        if self.running:
            self._set_status("Stopping after this iteration; the best LoRA so far will be saved ...")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the current run has ended; True if it has."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    @property
    def outcome(self):
        return None if self.run is None else self.run.outcome

    def _hook(self, optimizer) -> None:
        self.optimizer = optimizer
        if self._stop_requested:
            optimizer.request_stop()
        self._set_status("Optimising ...")

    def _execute(self, run: NotebookRun) -> None:
        """The run itself, in the background thread (a subclass runs another task here)."""
        execute_run(run, overwrite=self.overwrite, callbacks=[self._on_step], optimizer_hook=self._hook)

    def _work(self, run: NotebookRun) -> None:
        from ..errors import SISOError

        try:
            self._execute(run)
        except SISOError as error:
            run.error = str(error)
        except Exception as error:  # noqa: BLE001 - a background thread must report, not vanish
            run.error = f"{type(error).__name__}: {error}"
            run.traceback = traceback.format_exc()
        finally:
            try:
                self._finish(run)
            finally:
                self.run_button.disabled, self.stop_button.disabled = False, True

    def _on_step(self, event) -> None:
        done = event.step
        self.progress.value = min(done, self.progress.max)
        self.progress.description = f"{done} / {event.max_steps}"
        terms = ", ".join(f"{k} {v:+.4f}" for k, v in event.losses.items() if k != "total")
        self._set_status(
            f"Iteration {done}/{event.max_steps}: loss <b>{event.losses['total']:+.4f}</b> ({terms}); "
            f"best {event.best_loss:+.4f} at iteration {event.best_step}; patience {event.patience_count}/"
            f"{self.run.config.early_stopping_max_count}; {event.step_seconds:.2f} s/it"
        )
        now = time.monotonic()
        if event.is_best or event.stop_reason is not None or now - self._last_render >= self.refresh_seconds:
            self._render(self.run)

    # ------------------------------------------------------------------ drawing
    def _render_plot(self, snapshot: dict) -> None:
        from matplotlib.figure import Figure

        from ..io.plots import draw_losses

        figure = Figure(figsize=(9, 3.2), dpi=80)
        ax_total, ax_terms = figure.subplots(1, 2)
        draw_losses(ax_total, ax_terms, snapshot["history"], snapshot["best_step"])
        integer_iterations(ax_total, ax_terms)
        if not snapshot["history"]:
            for ax in (ax_total, ax_terms):
                ax.set_xticks([])
                ax.set_yticks([])
                ax.text(0.5, 0.5, "the curves appear here\nwhile SISO runs", ha="center", va="center",
                        transform=ax.transAxes, color="gray")
        figure.tight_layout()
        self.loss_plot.value = figure_png(figure)

    def _render(self, run: NotebookRun) -> None:
        from ..io.images import tensor_to_pil

        self._last_render = time.monotonic()
        snapshot = run.recorder.snapshot()
        self._render_plot(snapshot)
        if snapshot["current"] is not None:
            self.current_view.value = pil_png(tensor_to_pil(snapshot["current"]))
            self.current_caption.value = f"<b>current: iteration {len(snapshot['history'])}</b>"
        if snapshot["best"] is not None:
            self.best_view.value = pil_png(tensor_to_pil(snapshot["best"]))
            self.best_caption.value = f"<b>best so far: iteration {snapshot['best_step']}</b>"

    def _finish(self, run: NotebookRun) -> None:
        if run.outcome is None:
            self.progress.bar_style = "danger"
            self._set_status(f"Failed: {html.escape(str(run.error))}", "error")
            if run.traceback:
                self.result_info.value = f"<details><summary>traceback</summary><pre>{html.escape(run.traceback)}</pre></details>"
            return
        self._render(run)
        if run.recorder.best_step is not None:
            self.best_caption.value = f"<b>best: iteration {run.recorder.best_step}</b>"
        result, artifacts = run.outcome.result, run.outcome.artifacts
        reason = run.outcome.optimizer.describe_stop(result.stop_reason, result)
        best = result.describe_best()
        self.progress.bar_style = {"stopped": "warning"}.get(result.stop_reason, "success" if result.completed else "danger")
        kind = "ok" if result.completed else "error"
        self._set_status(f"Finished: {reason}; best {best}; {result.elapsed_seconds:.1f} s.", kind)
        files = "".join(
            f"<li>{label}: <code>{html.escape(path)}</code></li>"
            for label, path in artifacts.labelled()
        )
        self.result_info.value = f"<ul>{files}</ul>" if files else "<i>no LoRA was written (no iteration finished)</i>"

    def _set_status(self, text: str, kind: str = "info") -> None:
        colour = {"info": "inherit", "ok": "#1b7a1b", "error": "#b00020"}[kind]
        self.status.value = f"<span style='color:{colour}'>{text}</span>"
