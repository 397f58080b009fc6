"""What `notebooks/03_sweep_report.ipynb` shows, from a sweep folder (no torch needed).

    report = load_sweep("outputs/sweeps/lr-rank")
    report.table_html()            # runs sorted by final similarity (lowest best loss first)
    loss_overlay_figure(report)    # every run's loss curves on shared axes
    steps_figure(report)           # iterations run and best iteration per run, by stop reason
    best_images_figure(report)     # the best image of every run, side by side
    report.family_summary_html()   # per model family: runs, completed, best loss, iterations, time
    report.ranking_html("dino")    # with `siso-sweep --eval` scores: runs by a score, highest first
    scores_figure(report, "dino")  # each score against each swept parameter (LoRA and base model)

Runs are labelled by their swept values, and by their model family whenever the sweep holds more
than one (results.csv's `model_family` column); the loss curves of each family share a line style.
The scores are results.csv's eval_* columns (siso_lib/sweeps/local.py): `eval_dino` ... the LoRA's means,
`eval_delta_dino` ... LoRA minus the base model on the same seeds; higher is better for every one.
"""

from __future__ import annotations

import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SISOInputError
from ..io.locations import output_root, sweeps_root
# the parameters cell of 03_sweep_report.ipynb and the type each value is read as (a test keeps them equal)
REPORT_PARAMETERS = {"sweep_dir": "str | None", "rank_by": "str"}
FAMILY_COLUMN = "model_family"
LINE_STYLES = ("-", "--", ":", "-.")
TABLE_COLUMNS = ("steps_run", "best_step", "stop_reason", "best_total", "best_dino", "best_ir", "wall_seconds")
# siso-sweep --eval's columns (sweep.EVAL_METRICS; sweep.py is not imported here: it loads papermill's helpers)
SCORES = {"dino": "DINO", "clip_i": "CLIP-I", "clip_t": "CLIP-T", "ir": "IR", "seed_diversity": "seed diversity (ours)",
          "paper_diversity_mse": "paper's diversity (MSE to photo)"}
RANK_CHOICES = (*SCORES, *(f"delta_{name}" for name in SCORES))


def score_column(rank_by: str) -> str:
    """The results.csv column of a score name: "dino" -> "eval_dino", "delta_ir" -> "eval_delta_ir"
    ("eval_dino" is taken as it is); SISOInputError for a name that is no score."""
    name = str(rank_by).strip().lower().removeprefix("eval_")
    if name not in RANK_CHOICES:
        raise SISOInputError(f"rank_by {rank_by!r} is not a score: use one of {', '.join(RANK_CHOICES)} "
                             "(delta_*: the LoRA minus the base model)")
    return f"eval_{name}"


def _score_label(column: str) -> str:
    name = column.removeprefix("eval_")
    return f"{SCORES[name.removeprefix('delta_')]}{' LoRA - base' if name.startswith('delta_') else ''}"


def latest_sweep(root: str | Path | None = None) -> Path:
    """The sweep folder under `root` (default outputs/sweeps) whose results.csv changed last."""
    root = root or sweeps_root()
    candidates = sorted(Path(root).glob("*/results.csv"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise FileNotFoundError(f"no sweep with a results.csv under {str(root)!r}: run siso-sweep first")
    return candidates[-1].parent


def _find(path: str | None) -> Path | None:
    """A file named in a table: as written, or relative to the folder holding outputs/ (paths are
    recorded absolute; an older table may hold paths relative to where the sweep ran)."""
    if not path:
        return None
    for candidate in (Path(path), output_root().parent / path):
        if candidate.is_file():
            return candidate
    return None


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@dataclass
class SweepReport:
    directory: Path
    rows: list[dict[str, str]]
    swept: list[str]  # swept parameter columns
    fixed: dict[str, Any] = field(default_factory=dict)
    histories: dict[str, list[dict]] = field(default_factory=dict)  # run -> run.json history
    subjects: dict[str, str] = field(default_factory=dict)  # run -> the subject photo its run.json names

    @property
    def completed(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r.get("status") == "completed"]

    @property
    def not_completed(self) -> list[dict[str, str]]:
        return [r for r in self.rows if r.get("status") != "completed"]

    @property
    def families(self) -> list[str]:
        """The model families the runs used (results.csv's model_family column), in first-seen order."""
        return list(dict.fromkeys(r[FAMILY_COLUMN] for r in self.rows if r.get(FAMILY_COLUMN)))

    @property
    def label_keys(self) -> list[str]:
        """What tells the runs apart: the swept parameters, and the family when runs differ in it."""
        extra = [FAMILY_COLUMN] if len(self.families) > 1 and FAMILY_COLUMN not in self.swept else []
        return extra + self.swept

    def by_family(self) -> dict[str, list[dict[str, str]]]:
        """The runs of each model family, each list in sorted_rows() order."""
        groups: dict[str, list[dict[str, str]]] = {family: [] for family in self.families}
        for row in self.sorted_rows():
            groups.setdefault(row.get(FAMILY_COLUMN) or "?", []).append(row)
        return groups

    def family_summary_html(self) -> str:
        """One line per model family: runs, completed, best final loss, median iterations, mean wall time."""
        head = ("model_family", "runs", "completed", "best_total", "best run", "median steps_run", "mean wall_seconds")
        lines = ["<table><thead><tr>" + "".join(f"<th style='text-align:left'>{h}</th>" for h in head) + "</tr></thead><tbody>"]
        for family, rows in self.by_family().items():
            done = [r for r in rows if r.get("status") == "completed"]
            totals = [(_number(r.get("best_total")), r) for r in done if _number(r.get("best_total")) is not None]
            best = min(totals, key=lambda pair: pair[0]) if totals else None
            steps = sorted(n for n in (_number(r.get("steps_run")) for r in done) if n is not None)
            walls = [n for n in (_number(r.get("wall_seconds")) for r in done) if n is not None]
            cells = [
                family, len(rows), len(done), f"{best[0]:+.4f}" if best else "", self.label(best[1]) if best else "",
                f"{steps[len(steps) // 2]:g}" if steps else "", f"{sum(walls) / len(walls):.1f}" if walls else "",
            ]
            lines.append("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        lines.append("</tbody></table>")
        return "\n".join(lines)

    def sorted_rows(self) -> list[dict[str, str]]:
        """Completed runs by best total loss (= highest similarity first), then the others."""
        done = sorted(self.completed, key=lambda r: (_number(r.get("best_total")) is None, _number(r.get("best_total")) or 0.0))
        return done + self.not_completed

    def label(self, row: dict[str, str]) -> str:
        parts = []
        for key in self.label_keys:
            value = row.get(key, "")
            if key == "subject_image_path":
                value = Path(value).stem
            parts.append(f"{'subject' if key == 'subject_image_path' else key}={value}")
        return ", ".join(parts) or row["run"]

    def table_html(self) -> str:
        shown = ([FAMILY_COLUMN] if self.families and FAMILY_COLUMN not in self.swept else []) + self.swept
        head = ["#", *shown, "status", *TABLE_COLUMNS]
        lines = ["<table><thead><tr>" + "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
        for rank, row in enumerate(self.sorted_rows(), 1):
            cells = [str(rank) if row.get("status") == "completed" else ""]
            for key in shown:
                value = row.get(key, "")
                cells.append(Path(value).name if key == "subject_image_path" else value)
            cells.append(row.get("status", ""))
            for column in TABLE_COLUMNS:
                value = row.get(column, "")
                number = _number(value)
                if column.startswith("best_") and column != "best_step" and number is not None:
                    value = f"{number:+.4f}"
                elif column == "wall_seconds" and number is not None:
                    value = f"{number:.1f}"
                cells.append(value)
            lines.append("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        lines.append("</tbody></table>")
        failures = [r for r in self.rows if r.get("status") == "failed"]
        if failures:
            lines.append("<p><b>Failed runs</b></p><ul>")
            lines += [f"<li><code>{html.escape(r['run'])}</code>: {html.escape(r.get('error', ''))}</li>" for r in failures]
            lines.append("</ul>")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.table_html()

    @property
    def has_scores(self) -> bool:
        """Whether some run has a score (results.csv of `siso-sweep --eval`, or --collect after siso-eval)."""
        return any(_number(row.get(f"eval_{name}")) is not None for row in self.rows for name in SCORES)

    def ranked_rows(self, rank_by: str = "dino") -> list[dict[str, str]]:
        """Scored runs by `rank_by` (a score_column name), highest first; then the runs without that score."""
        column = score_column(rank_by)
        scored = [r for r in self.rows if r.get("status") == "completed" and _number(r.get(column)) is not None]
        scored.sort(key=lambda r: -_number(r[column]))
        return scored + [r for r in self.rows if r not in scored]

    def ranking_html(self, rank_by: str = "dino") -> str:
        """The runs ranked by a score: each score of the LoRA with its difference to the base model
        (same seeds) in brackets; the final loss for reference; runs whose evaluation failed below."""
        column = score_column(rank_by)
        shown = ([FAMILY_COLUMN] if self.families and FAMILY_COLUMN not in self.swept else []) + self.swept
        scores = [name for name in SCORES if any(_number(r.get(f"eval_{name}")) is not None for r in self.rows)]
        ranked = column.removeprefix("eval_").removeprefix("delta_")
        head = ["#", *shown, "status"]
        head += [f"{SCORES[n]} (LoRA - base)" + (" ▼" if n == ranked else "") for n in scores] + ["best_total"]
        lines = ["<table><thead><tr>" + "".join(f"<th style='text-align:left'>{html.escape(h)}</th>" for h in head) + "</tr></thead><tbody>"]
        if not any(_number(r.get(column)) is not None for r in self.rows):
            lines.insert(0, f"<p><b>No run has a {html.escape(column)} score</b> (e.g. IR without an IR checkpoint): "
                            "the runs are not ranked; choose another rank_by.</p>")
        rank = 0
        for row in self.ranked_rows(rank_by):
            scored = _number(row.get(column)) is not None and row.get("status") == "completed"
            rank += scored
            cells = [str(rank) if scored else ""]
            cells += [Path(row.get(k, "")).name if k == "subject_image_path" else row.get(k, "") for k in shown]
            cells.append(row.get("status", ""))
            for name in scores:
                value, delta = _number(row.get(f"eval_{name}")), _number(row.get(f"eval_delta_{name}"))
                cells.append("" if value is None else f"{value:.3f}" + ("" if delta is None else f" ({delta:+.3f})"))
            total = _number(row.get("best_total"))
            cells.append("" if total is None else f"{total:+.4f}")
            lines.append("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        lines.append("</tbody></table>")
        failures = [r for r in self.rows if r.get("eval_error")]
        if failures:
            lines.append("<p><b>Evaluations that failed</b> (the runs completed; run the sweep again with --eval)</p><ul>")
            lines += [f"<li><code>{html.escape(r['run'])}</code>: {html.escape(r['eval_error'])}</li>" for r in failures]
            lines.append("</ul>")
        return "\n".join(lines)


def load_sweep(directory: str | Path | None = None) -> SweepReport:
    """Read results.csv (and each completed run's run.json history) of a sweep folder."""
    directory = Path(directory) if directory else latest_sweep()
    if not directory.is_dir() and (sweeps_root() / directory).is_dir():
        directory = sweeps_root() / directory  # a sweep's name, as the parameter's comment says
    results = directory / "results.csv"
    if not results.is_file():
        raise SISOInputError(f"{str(results)!r} does not exist: give a sweep's name or folder, and run siso-sweep (or siso-sweep --collect) first")
    with open(results, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    spec = {}
    if (directory / "sweep.json").is_file():
        spec = json.loads((directory / "sweep.json").read_text())
    swept = list(spec.get("grid", {})) or []
    histories, subjects = {}, {}
    for row in rows:
        run_json = row.get("run_json") or str(directory / row["run"] / "run.json")
        if row.get("status") == "completed" and Path(run_json).is_file():
            record = json.loads(Path(run_json).read_text())
            histories[row["run"]] = record.get("history", [])
            subjects[row["run"]] = (record.get("subject_image") or {}).get("path") or ""
    return SweepReport(directory, rows, swept, spec.get("fixed", {}), histories, subjects)


def _colours(count: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if count <= 10 else "viridis"]
    return [cmap(i if count <= 10 else i / max(count - 1, 1)) for i in range(count)]


def loss_overlay_figure(report: SweepReport):
    """Total, DINO and IR loss per iteration for every completed run (best iteration starred)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in report.sorted_rows() if r["run"] in report.histories]
    terms = [t for t in ("total", "dino", "ir") if any(t in h for r in rows for h in report.histories[r["run"]])] or ["total"]
    figure = Figure(figsize=(4.2 * len(terms), 3.8), dpi=100, layout="constrained")
    axes = figure.subplots(1, len(terms), squeeze=False)[0]
    styles = {family: LINE_STYLES[i % len(LINE_STYLES)] for i, family in enumerate(report.families)}
    for colour, row in zip(_colours(len(rows)), rows):
        history = report.histories[row["run"]]
        style = styles.get(row.get(FAMILY_COLUMN), "-")
        best = _number(row.get("best_step"))
        for ax, term in zip(axes, terms):
            points = [(h["step"], h[term]) for h in history if term in h]
            if not points:
                continue
            ax.plot([p[0] for p in points], [p[1] for p in points], color=colour, linestyle=style, label=report.label(row),
                    linewidth=1.3)
            if best is not None:
                ys = [p[1] for p in points if p[0] == int(best)]
                if ys:
                    ax.plot([best], ys, marker="*", color=colour, markersize=10, linestyle="none")
    for ax, term in zip(axes, terms):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title({"total": "total loss", "dino": "DINO term", "ir": "IR term"}[term])
        ax.set_xlabel("SISO iteration")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("-cos similarity (weighted)")
    if rows:
        axes[-1].legend(fontsize=7, loc="best")
    return figure


def steps_figure(report: SweepReport):
    """Iterations run (bars, coloured by stop reason) and the best iteration (dots) per run."""
    from matplotlib.figure import Figure

    rows = [r for r in report.sorted_rows() if _number(r.get("steps_run")) is not None]
    figure = Figure(figsize=(max(5.0, 0.7 * len(rows) + 2.5), 3.8), dpi=100, layout="constrained")
    ax = figure.subplots()
    reasons = sorted({r.get("stop_reason") or "?" for r in rows})
    palette = dict(zip(reasons, _colours(len(reasons))))
    seen = set()
    for x, row in enumerate(rows):
        reason = row.get("stop_reason") or "?"
        ax.bar(x, _number(row["steps_run"]), color=palette[reason], alpha=0.75, label=None if reason in seen else f"stopped: {reason}")
        seen.add(reason)
        best = _number(row.get("best_step"))
        if best is not None:
            ax.plot([x], [best], marker="o", color="black", linestyle="none",
                    label="best iteration" if x == 0 else None)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([report.label(r) for r in rows], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("iterations")
    ax.set_title("steps to stop")
    ax.grid(axis="y", alpha=0.3)
    if rows:
        ax.set_ylim(0, 1.3 * max(_number(r["steps_run"]) or 1 for r in rows))  # room for the legend
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    return figure


def best_images_figure(report: SweepReport, max_images: int = 24, subject: bool = True):
    """The best image of each completed run (best first), with its label; subject photos first."""
    from matplotlib.figure import Figure
    from PIL import Image

    rows = [r for r in report.sorted_rows() if r.get("result_image") and Path(r["result_image"]).is_file()][:max_images]
    subjects = sorted({path for path in report.subjects.values() if path}) if subject else []
    subjects = [found for found in map(_find, subjects) if found is not None]
    panels = [(Image.open(s).convert("RGB"), f"subject: {Path(s).name}") for s in subjects]
    panels += [(Image.open(r["result_image"]).convert("RGB"), f"{report.label(r)}\nbest {(_number(r.get('best_total')) or 0):+.3f}") for r in rows]
    columns = min(max(len(panels), 1), 6)
    lines = max(1, math.ceil(len(panels) / columns))
    figure = Figure(figsize=(2.4 * columns, 2.8 * lines), dpi=100, layout="constrained")
    axes = figure.subplots(lines, columns, squeeze=False)
    for index, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if index < len(panels):
            image, title = panels[index]
            ax.imshow(image, interpolation="nearest" if max(image.size) < 256 else "antialiased")
            ax.set_title(title, fontsize=7)
    return figure


def _axis_values(rows: list[dict[str, str]], key: str):
    """(x of each row, tick positions, tick labels, log scale?) for a swept parameter: numbers as
    they are (log scale when they span a factor of 10 or more), anything else as categories."""
    values = [row.get(key, "") for row in rows]
    numbers = [_number(v) for v in values]
    if values and all(n is not None for n in numbers):
        log = min(numbers) > 0 and max(numbers) >= 10 * min(numbers)
        return numbers, None, None, log
    names = list(dict.fromkeys(values))
    shown = [Path(v).stem if key == "subject_image_path" else v for v in names]
    return [names.index(v) for v in values], list(range(len(names))), shown, False


def scores_figure(report: SweepReport, rank_by: str = "dino"):
    """Each score (columns; `rank_by`'s first) against each swept parameter (rows): filled dots the
    LoRA, hollow grey dots the base model on the same seeds (LoRA minus delta); runs that share
    the other swept values (and model family) are joined by a line."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import ScalarFormatter

    column = score_column(rank_by)
    ranked = column.removeprefix("eval_").removeprefix("delta_")
    ranking_note = "  (ranking: LoRA - base)" if column.startswith("eval_delta_") else "  (ranking)"
    rows = [r for r in report.completed if any(_number(r.get(f"eval_{n}")) is not None for n in SCORES)]
    scores = [n for n in SCORES if any(_number(r.get(f"eval_{n}")) is not None for r in rows)] or [ranked]
    scores.sort(key=lambda n: n != ranked)
    parameters = report.swept or ["run"]
    figure = Figure(figsize=(3.1 * len(scores), 2.8 * len(parameters) + 0.3), dpi=100, layout="constrained")
    axes = figure.subplots(len(parameters), len(scores), squeeze=False)
    for line, key in enumerate(parameters):
        xs, ticks, labels, log = _axis_values(rows, key)
        if ticks is None and 0 < len(set(xs)) <= 8:  # numbers: a tick at each value swept
            ticks = sorted(set(xs))
            labels = [f"{x:g}" for x in ticks]
        others = [k for k in report.label_keys if k != key]
        series: dict[tuple, list[int]] = {}
        for index, row in enumerate(rows):
            series.setdefault(tuple(row.get(k, "") for k in others), []).append(index)
        colours = _colours(len(series))
        for column, name in enumerate(scores):
            ax = axes[line][column]
            base_labelled = False
            for colour, (values, members) in zip(colours, series.items()):
                points = sorted((xs[i], _number(rows[i].get(f"eval_{name}")), _number(rows[i].get(f"eval_delta_{name}"))) for i in members)
                points = [p for p in points if p[1] is not None]
                if not points:
                    continue
                label = ", ".join(f"{k}={Path(v).stem if k == 'subject_image_path' else v}" for k, v in zip(others, values)) or "LoRA"
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, linewidth=1.2, label=label)
                bases = [(p[0], p[1] - p[2]) for p in points if p[2] is not None]
                if bases:
                    ax.plot([b[0] for b in bases], [b[1] for b in bases], marker="o", markerfacecolor="none", color="grey",
                            linestyle="none", label=None if base_labelled else "base model (same seeds)")
                    base_labelled = True
            if log:
                ax.set_xscale("log")
                ax.minorticks_off()
            if ticks is not None:
                ax.set_xticks(ticks)
                ax.set_xticklabels(labels, rotation=20 if len(ticks) > 3 else 0, ha="right" if len(ticks) > 3 else "center", fontsize=7)
            formatter = ScalarFormatter(useOffset=False)
            ax.yaxis.set_major_formatter(formatter)
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(SCORES[name] + (ranking_note if name == ranked else ""), fontsize=9)
            ax.set_xlabel(key, fontsize=8)
            ax.grid(alpha=0.3)
    if rows:
        axes[0][-1].legend(fontsize=7, loc="best")
    return figure
