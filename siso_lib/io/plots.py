"""Loss-curve figures (matplotlib), shared by the run artefacts and the notebooks.

Two panels: the total loss (what is optimised) and its DINO / IR terms, each against the
SISO iteration (numbered from 1), with the best iteration marked. Figures are built without pyplot, so
they are safe in threads and headless runs.
"""

from __future__ import annotations

from typing import Sequence

from matplotlib.figure import Figure

TERMS = {"dino": ("DINO", "tab:blue"), "ir": ("IR", "tab:orange"), "background": ("background MSE (editing)", "tab:red")}


def draw_losses(ax_total, ax_terms, history: Sequence[dict], best_step: int | None = None) -> None:
    """Plot history rows ({"step", "total", "dino"?, "ir"?}) on two axes."""
    for ax in (ax_total, ax_terms):
        ax.clear()
        ax.grid(alpha=0.3)
        ax.set_xlabel("SISO iteration")
    iterations = [row["step"] for row in history]
    ax_total.plot(iterations, [row["total"] for row in history], color="black", marker=".", label="total")
    ax_total.set_ylabel("loss (weighted sum of -cos)")
    ax_total.set_title("total loss")
    for term, (label, colour) in TERMS.items():
        rows = [row for row in history if term in row]
        if rows:
            ax_terms.plot([r["step"] for r in rows], [r[term] for r in rows], color=colour, marker=".", label=label)
    editing = any("background" in row for row in history)
    ax_terms.set_ylabel("-cos to the subject; background: MSE" if editing else "-cos(features(image), features(subject))")
    ax_terms.set_title("similarity terms")
    best = next((row for row in history if row["step"] == best_step), None) if best_step is not None else None
    if best is not None:
        for ax in (ax_total, ax_terms):
            ax.axvline(best_step, color="tab:green", linestyle="--", linewidth=1)
        ax_total.plot([best_step], [best["total"]], marker="*", markersize=13, color="tab:green",
                      linestyle="none", label=f"best (iteration {best_step})")
    if history:
        ax_total.legend(loc="best", fontsize=8)
        ax_terms.legend(loc="best", fontsize=8)


def loss_figure(history: Sequence[dict], best_step: int | None = None, title: str | None = None) -> Figure:
    figure = Figure(figsize=(10, 3.8), dpi=100)
    ax_total, ax_terms = figure.subplots(1, 2)
    draw_losses(ax_total, ax_terms, history, best_step)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return figure
