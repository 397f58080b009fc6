"""What the notebooks show while a run goes and after it: the recorder and the dashboard figure.

`RunRecorder` is a SISO callback that keeps the loss history and the first, current and best
images; `dashboard_figure` draws them (loss curves over subject / first / current / best), and
`LiveFigure` redraws one inline copy every few seconds. Figures are built without pyplot, so
they work in any kernel and in background threads.
"""

from __future__ import annotations

import io
import threading
import time

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
    from ..io.images import tensor_to_pil

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

    from ..io.plots import draw_losses

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
