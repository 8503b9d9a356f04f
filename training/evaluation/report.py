"""Report files of a metrics dict: metrics.json, metrics.md, one bar chart per metric; and compare tables."""
from __future__ import annotations

import json
from pathlib import Path

from schemas.errors import UserError
from training.evaluation.metrics import METRIC_ORDER, SET_COUNTS

HEADLINE = ("official_acc@0.5", "strict_acc@0.5", "official_miou", "format_rate", "image_acc", "mc_acc")


def _cell(key: str, value) -> str:
    if value is None:
        return "-"
    return str(value) if key in ("n", *SET_COUNTS) else f"{100 * value:.1f}"


def provenance_line(metrics: dict) -> str:
    """Where the numbers came from: official scorer and version, bench file, prompt template."""
    o = metrics.get("official_scorer") or {}
    f = metrics.get("bench_file") or {}
    pr = metrics.get("prompt") or {}
    file = (f"`{f.get('name')}` ({f.get('variant')}, {f.get('box_frame')} boxes, sha256 {str(f.get('sha256'))[:12]})"
            if f else "a split with no recorded bench file")
    prompt = (f"`{pr['template']}`" + (f" (sha256 {pr['sha256']})" if pr.get("sha256") else "")
              if pr.get("template") else "not recorded")
    return (f"official: scorer `{o.get('scorer', '?')}` v{o.get('version', '?')}, Migician y-rescale "
            f"{'on' if o.get('y_rescale') else 'off'}; bench file {file}; prompt {prompt}; "
            f"strict figure v{metrics.get('strict_version', '?')}")


def outcomes_markdown(outcomes: dict) -> list[str]:
    """The strict parse outcomes as a table: task types as rows, outcomes as columns (ok first)."""
    if not outcomes:
        return []
    names = sorted({k for c in outcomes.values() for k in c}, key=lambda k: (not k.startswith("ok"), k))
    lines = ["", "Strict parse outcomes (grounding rows):", "",
             "| task | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for task, c in outcomes.items():
        lines.append(f"| {task} | " + " | ".join(str(c.get(k, 0)) for k in names) + " |")
    return lines


def metrics_markdown(metrics: dict) -> str:
    """The metrics as one Markdown table (task types, then macro and overall rows, values in %),
    then the strict parse outcomes beside them."""
    rows = {**metrics["by_task"], "macro": metrics["macro"], "overall": metrics["overall"]}
    keys = ["n"] + [k for k in (*METRIC_ORDER, *SET_COUNTS) if any(k in m for m in rows.values())]
    lines = [f"# {metrics['model']} on {metrics['bench']}", "",
             f"Profile `{metrics['profile']}`; predictions `{metrics.get('predictions')}`; values in %. "
             "official: the official script's parser on the whole response, image ignored; "
             "strict: the profile's single-box parse, right image required where the question does not fix it.",
             "", provenance_line(metrics) + ".", "",
             "| task | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for task, m in rows.items():
        lines.append(f"| {task} | " + " | ".join(_cell(k, m.get(k)) for k in keys) + " |")
    lines += outcomes_markdown(metrics.get("outcomes") or {})
    c = metrics["counts"]
    lines += ["", f"{c['predicted']} of {c['tasks']} tasks predicted; {c['missing']} missing (scored as empty), "
                  f"{c['unknown']} unknown id(s) ignored."]
    return "\n".join(lines) + "\n"


def _chart(path: Path, metric: str, tasks: list[str], values: list[float], title: str) -> None:
    from builders.publish.plots import figure, save_png

    fig = figure((max(4.0, 0.7 * len(tasks) + 1.5), 3.2), dpi=100)
    ax = fig.add_subplot()
    ax.bar(range(len(tasks)), [100 * v for v in values], color="#4c72b0")
    ax.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel(f"{metric} (%)", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.subplots_adjust(left=0.16, right=0.97, bottom=0.3)
    save_png(fig, path)


def write_report(metrics: dict, out_dir: str | Path) -> list[Path]:
    """metrics.json, metrics.md and one bar chart per metric across task types (+ macro)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "metrics.json", out / "metrics.md"]
    written[0].write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    written[1].write_text(metrics_markdown(metrics))
    rows = {**metrics["by_task"], "macro": metrics["macro"]}
    for metric in METRIC_ORDER:
        tasks = [t for t, m in rows.items() if m.get(metric) is not None]
        if tasks:
            path = out / f"{metric.replace('@', '_at_')}.png"
            _chart(path, metric, tasks, [rows[t][metric] for t in tasks], f"{metrics['model']}: {metric}")
            written.append(path)
    return written


def load_report(folder: str | Path) -> dict:
    path = Path(folder) / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
    except OSError:
        raise UserError(f"{folder}: no metrics.json (write one with `polyground eval ... --output {folder}`)") from None
    except ValueError:
        raise UserError(f"{path}: not valid JSON") from None
    if not isinstance(metrics, dict) or "by_task" not in metrics:
        raise UserError(f"{path}: not a polyground metrics file")
    return metrics


def compare_table(reports: list[tuple[str, dict]], metric_names=None) -> str:
    """Markdown: per metric, one table with task types as rows and models (labels) as columns."""
    labels = [label for label, _ in reports]
    blocks = []
    for metric in metric_names or HEADLINE:
        tasks = sorted({t for _, m in reports for t, v in m["by_task"].items() if metric in v})
        if not tasks:
            continue
        lines = [f"## {metric} (%)", "", "| task | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
        for task in tasks + ["macro"]:
            cells = [_cell(metric, (m["macro"] if task == "macro" else m["by_task"].get(task, {})).get(metric))
                     for _, m in reports]
            lines.append(f"| {task} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    if not blocks:
        raise UserError(f"none of the reports has the metric(s) {', '.join(metric_names or HEADLINE)}")
    benches = sorted({m.get("bench", "?") for _, m in reports})
    head = f"# {len(reports)} models on {', '.join(benches)}"
    sources = "\n".join(f"- {label}: {provenance_line(m)}" for label, m in reports)
    return "\n\n".join([head, sources] + blocks) + "\n"
