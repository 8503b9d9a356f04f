"""PNG plots for the data cards, plus the per-task statistics they show.

`write_plots(table, kind, folder)` writes `folder/plots/*.png` and returns
`(caption, relative path)` pairs for the card. Which plots a kind gets:

    every kind with task_type   task_mix.png    rows per task type
    rows with a target box      box_sizes.png   sqrt(box area / image area), 0-1
    cot                         iou.png         verifier IoU of each trajectory
    rl-pool                     pass_rate.png   pass rate over the k samples
    predictions                 metrics.png     format, image acc., Acc@0.5, mean IoU per task

matplotlib is driven through `Figure` + the Agg canvas (no pyplot): no global
state, no display, and it is imported only here, on first use. PNG metadata is
emptied so the same data gives the same bytes. `figure()` and `save_png()` are
that set-up for every plot of the project (eval's charts too).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.errors import printable

PLOT_DIR = "plots"
ACC_IOU = 0.5  # Acc@0.5: the usual grounding threshold (MIG-Bench reports it)
_SIZE = (4.8, 2.8)
_DPI = 80  # small files; a card plot is read at a glance, not zoomed


def value_counts(table: pa.Table, column: str) -> dict[str, int]:
    """Counts of each non-null value of a column, sorted by value."""
    if column not in table.schema.names or table.num_rows == 0:
        return {}
    vc = pc.value_counts(table.column(column).combine_chunks()).to_pylist()
    return dict(sorted((d["values"], d["counts"]) for d in vc if d["values"] is not None))


def floats(table: pa.Table, column: str) -> np.ndarray:
    """The non-null values of a numeric column as float64."""
    if column not in table.schema.names:
        return np.zeros(0)
    col = table.column(column).combine_chunks()
    return col.filter(col.is_valid()).to_numpy(zero_copy_only=False).astype(np.float64)


def box_sides(table: pa.Table) -> np.ndarray:
    """sqrt(box area) of every target box, as a fraction of its image (0-1)."""
    if "target_box" not in table.schema.names:
        return np.zeros(0)
    col = table.column("target_box").combine_chunks()
    col = col.filter(col.is_valid())
    flat = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.float64)
    if flat.size == 0 or flat.size % 4:
        return np.zeros(0)
    b = flat.reshape(-1, 4)
    area = np.clip(b[:, 2] - b[:, 0], 0, 1) * np.clip(b[:, 3] - b[:, 1], 0, 1)
    return np.sqrt(area)


def _mean(values: list) -> float | None:
    kept = [float(v) for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def prediction_metrics(table: pa.Table) -> dict[str, dict]:
    """Per task type (and `all`): n, format rate, image accuracy, Acc@0.5,
    mean IoU (strict and official) and multiple-choice accuracy; None where no
    row of that task could be scored that way."""
    names = table.schema.names
    cols = [c for c in ("task_type", "format_ok", "image_correct", "iou", "official_iou", "correct") if c in names]
    groups: dict[str, list[dict]] = {}
    for r in table.select(cols).to_pylist():
        groups.setdefault(r.get("task_type") or "unknown", []).append(r)
    if groups:
        groups["all"] = [r for rs in groups.values() for r in rs]
    out = {}
    for task, rs in groups.items():
        ious = [r.get("iou") for r in rs]
        out[task] = {
            "n": len(rs),
            "format_rate": _mean([r.get("format_ok") for r in rs]),
            "image_accuracy": _mean([r.get("image_correct") for r in rs]),
            "acc_at_0.5": _mean([None if v is None else v >= ACC_IOU for v in ious]),
            "mean_iou": _mean(ious),
            "official_mean_iou": _mean([r.get("official_iou") for r in rs]),
            "choice_accuracy": _mean([r.get("correct") for r in rs]),
        }
    return out


def figure(size: tuple[float, float] = _SIZE, dpi: int = _DPI):
    """A matplotlib Figure on the Agg canvas (no pyplot, no display)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def save_png(fig, path: Path) -> None:
    """The figure as a PNG without metadata: the same data gives the same bytes."""
    fig.savefig(path, format="png", metadata={"Software": None})


def _figure():
    fig = figure()
    fig.subplots_adjust(left=0.3, right=0.96, top=0.88, bottom=0.18)  # tight_layout costs ~50 ms a plot
    return fig, fig.add_subplot()


def _save(fig, folder: Path, name: str) -> str:
    (folder / PLOT_DIR).mkdir(parents=True, exist_ok=True)
    save_png(fig, folder / PLOT_DIR / name)
    return f"{PLOT_DIR}/{name}"


def _label(text) -> str:
    """A row value as a tick label: control characters escaped (matplotlib would warn with
    them raw, on the terminal) and `$` taken literally (not as mathtext, which can fail)."""
    return printable(text, keep_newlines=False).replace("$", r"\$")


def _bars(folder: Path, name: str, counts: dict[str, int], title: str) -> str:
    fig, ax = _figure()
    keys = list(counts)[::-1]  # first label on top
    ax.barh(range(len(keys)), [counts[k] for k in keys], color="#4c72b0")
    ax.set_yticks(range(len(keys)), [_label(k) for k in keys])  # positions: equal labels stay two bars
    ax.set_title(title, fontsize=10)
    ax.tick_params(labelsize=8)
    return _save(fig, folder, name)


def _hist(folder: Path, name: str, values: np.ndarray, title: str, xlabel: str) -> str:
    fig, ax = _figure()
    fig.subplots_adjust(left=0.14)
    ax.hist(values, bins=20, range=(0.0, 1.0), color="#55a868", edgecolor="white")
    ax.set_title(f"{title} (n={values.size}, mean={values.mean():.3f})", fontsize=10)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.tick_params(labelsize=8)
    return _save(fig, folder, name)


def _metrics_plot(folder: Path, metrics: dict[str, dict]) -> str:
    fig, ax = _figure()
    fig.set_size_inches(6.4, 2.8)  # room for the legend beside the bars
    fig.subplots_adjust(left=0.1, right=0.74)
    keys = ["format_rate", "image_accuracy", "acc_at_0.5", "mean_iou"]
    tasks = list(metrics)
    width = 0.8 / len(keys)
    x = np.arange(len(tasks))
    for i, key in enumerate(keys):
        ax.bar(x + i * width, [metrics[t][key] or 0.0 for t in tasks], width, label=key)
    ax.set_xticks(x + 0.4 - width / 2, [_label(t) for t in tasks], fontsize=7, rotation=20)
    ax.set_ylim(0, 1)
    ax.set_title("metrics per task type", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, folder, "metrics.png")


def write_plots(table: pa.Table, kind: str, folder: Path) -> list[tuple[str, str]]:
    """Write this kind's plots under `folder/plots/`; skip any with no data."""
    folder = Path(folder)
    plots = []
    mix = value_counts(table, "task_type")
    if mix:
        plots.append(("Task mix: rows per task type", _bars(folder, "task_mix.png", mix, "rows per task type")))
    sides = box_sides(table)
    if sides.size:
        plots.append(("Target box sizes: sqrt(box area / image area)",
                      _hist(folder, "box_sizes.png", sides, "target box size", "sqrt(area fraction)")))
    if kind == "cot" and (iou := floats(table, "iou")).size:
        plots.append(("Verifier IoU of each trajectory", _hist(folder, "iou.png", iou, "IoU", "IoU with the target")))
    if kind == "rl-pool" and (rate := floats(table, "pass_rate")).size:
        plots.append(("Pass rate of each task over its k samples",
                      _hist(folder, "pass_rate.png", rate, "pass rate", "fraction of samples that passed")))
    if kind == "predictions" and table.num_rows:
        plots.append(("Metrics per task type", _metrics_plot(folder, prediction_metrics(table))))
    return plots
