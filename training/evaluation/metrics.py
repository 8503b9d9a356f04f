"""The metrics of a PREDICTIONS table: per task type, macro and overall (see the package docstring)."""
from __future__ import annotations

METRIC_ORDER = ("official_acc@0.3", "official_acc@0.5", "official_acc@0.7", "official_miou",
                "strict_acc@0.3", "strict_acc@0.5", "strict_acc@0.7", "strict_miou",
                "format_rate", "image_acc", "mc_acc", "mean_reward",
                "set_miou", "set_precision@0.5", "set_recall@0.5", "set_f1@0.5", "none_acc")
SET_COUNTS = ("set_rows", "wrong_images")  # counts, not fractions: in the tables, never in a chart


def _rename(summary: dict, prefix: str) -> dict:
    """official_metrics keys (acc@t, mean_iou) -> ours (<prefix>_acc@t, <prefix>_miou)."""
    return {f"{prefix}_miou" if k == "mean_iou" else f"{prefix}_{k}": v for k, v in summary.items() if k != "n"}


def _iou_metrics(df, column: str, prefix: str) -> dict[str, dict]:
    """Per task type (plus "macro"/"overall") threshold metrics of one IoU column, by the official formula."""
    import polars as pl

    from schemas.official import official_metrics

    kept = df.filter(pl.col(column).is_not_null())
    ious = {t: g.get_column(column).to_list() for (t,), g in kept.group_by("task_type", maintain_order=True)}
    return {task: _rename(summary, prefix) for task, summary in official_metrics(ious).items()}


def _rate_metrics(df) -> dict[str, dict]:
    """format_rate, image_acc, mc_acc and mean_reward per task type (polars), plus "overall" (pooled)."""
    import polars as pl

    # `reward`: the GRPO reward (default weights) each prediction would have earned; null
    # for rows that cannot be verified (multiple choice), as training.rewards.combined_score.
    exprs = [pl.len().alias("n"), pl.col("format_ok").cast(pl.Float64).mean().alias("format_rate"),
             pl.col("image_correct").cast(pl.Float64).mean().alias("image_acc"),
             pl.col("correct").cast(pl.Float64).mean().alias("mc_acc"),
             pl.col("reward").cast(pl.Float64).mean().alias("mean_reward")]
    by_task = {r.pop("task_type"): r for r in df.group_by("task_type", maintain_order=True).agg(exprs).to_dicts()}
    by_task["overall"] = df.select(exprs).to_dicts()[0]
    return by_task


def _set_metrics(df) -> dict[str, dict]:
    """set_miou, set P/R/F1@0.5, none_acc, wrong_images, set_rows per task type with set rows (+ "overall")."""
    import polars as pl

    if "set_iou" not in df.columns:
        return {}
    kept = df.filter(pl.col("set_iou").is_not_null())
    if not kept.height:
        return {}
    exprs = [pl.len().alias("set_rows"), pl.col("set_iou").cast(pl.Float64).mean().alias("set_miou"),
             *(pl.col(f"set_{k}").cast(pl.Float64).mean().alias(f"set_{k}@0.5") for k in ("precision", "recall", "f1")),
             pl.col("none_correct").cast(pl.Float64).mean().alias("none_acc"),
             pl.col("wrong_images").sum().alias("wrong_images")]
    by_task = {r.pop("task_type"): r for r in kept.group_by("task_type", maintain_order=True).agg(exprs).to_dicts()}
    by_task["overall"] = kept.select(exprs).to_dicts()[0]
    return by_task


def compute_metrics(pred) -> dict:
    """{"by_task", "macro", "overall"} from a PREDICTIONS table (see the module docstring)."""
    import polars as pl

    cols = ["task_type", "format_ok", "image_correct", "iou", "official_iou", "correct", "outcome", "reward"]
    cols += [c for c in ("set_iou", "set_precision", "set_recall", "set_f1", "wrong_images", "none_correct")
             if c in pred.schema.names]
    df = pl.from_arrow(pred.select(cols)).with_columns(pl.col("task_type").fill_null("unknown"))
    merged: dict[str, dict] = {}
    for part in (_rate_metrics(df), _iou_metrics(df, "official_iou", "official"), _iou_metrics(df, "iou", "strict"),
                 _set_metrics(df)):
        for task, values in part.items():
            merged.setdefault(task, {}).update({k: v for k, v in values.items() if v is not None})
    overall = merged.pop("overall", {})
    macro = merged.pop("macro", {})
    for key in ("format_rate", "image_acc", "mc_acc", "mean_reward",  # official_metrics gave the IoU ones
                "set_miou", "set_precision@0.5", "set_recall@0.5", "set_f1@0.5", "none_acc"):
        values = [m[key] for m in merged.values() if m.get(key) is not None]
        if values:
            macro[key] = sum(values) / len(values)
    def ordered(m: dict) -> dict:
        return {k: m[k] for k in ("n", *METRIC_ORDER, *SET_COUNTS) if k in m}

    return {"by_task": {t: ordered(m) for t, m in sorted(merged.items())}, "macro": ordered(macro),
            "overall": ordered(overall), "outcomes": outcome_counts(df)}


def outcome_counts(df) -> dict[str, dict[str, int]]:
    """{task type: {strict parse outcome: rows}} over the grounding rows, plus "overall"."""
    import polars as pl

    kept = df.filter(pl.col("outcome").is_not_null())
    out: dict[str, dict[str, int]] = {}
    for r in kept.group_by("task_type", "outcome").len().sort("task_type", "outcome").to_dicts():
        out.setdefault(r["task_type"], {})[r["outcome"]] = r["len"]
    total: dict[str, int] = {}
    for counts in out.values():
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    if out:
        out["overall"] = dict(sorted(total.items()))
    return out
