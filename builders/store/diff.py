"""`data diff A B`: what changed between two versions, computed with polars.

Row counts, counts per task type and per drop reason, rows added / removed /
changed by id (a row "changed" when any column both versions share differs),
and the manifest fields that differ. For CoT versions it adds the numbers one
compares when a new teacher comes out: keep rate per task type, mean IoU of
kept rows, and the generation usage (tokens, cost) side by side.
"""
from __future__ import annotations

import json

import polars as pl

# Manifest keys that always differ or are shown elsewhere in the diff.
SKIP_KEYS = {"id", "created", "seal", "files", "counts", "summary", "schema"}
EXAMPLES = 5  # ids listed per added / removed / changed group


def _pair(a: dict, b: dict) -> dict:
    return {k: [a.get(k, 0), b.get(k, 0)] for k in sorted(set(a) | set(b))}


def _flatten(d, prefix: str = "") -> dict:
    if not isinstance(d, dict):
        return {prefix: d}
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def manifest_changes(ma: dict, mb: dict) -> dict:
    fa = _flatten({k: v for k, v in ma.items() if k not in SKIP_KEYS})
    fb = _flatten({k: v for k, v in mb.items() if k not in SKIP_KEYS})
    return {k: [fa.get(k), fb.get(k)] for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)}


def row_changes(ta, tb) -> dict:
    """Ids added, removed and changed, judged on the columns both share."""
    da, db = pl.from_arrow(ta), pl.from_arrow(tb)
    common = [c for c in da.columns if c in db.columns and da.schema[c] == db.schema[c]]
    ha = da.select(pl.col("id"), pl.Series("h", da.select(common).hash_rows(seed=0)))
    hb = db.select(pl.col("id"), pl.Series("h", db.select(common).hash_rows(seed=0)))
    joined = ha.join(hb, on="id", how="full", suffix="_b", coalesce=True)
    added = joined.filter(pl.col("h").is_null())["id"].sort()
    removed = joined.filter(pl.col("h_b").is_null())["id"].sort()
    changed = joined.filter(pl.col("h").is_not_null() & pl.col("h_b").is_not_null()
                            & (pl.col("h") != pl.col("h_b")))["id"].sort()
    return {name: {"n": len(s), "examples": s.head(EXAMPLES).to_list()}
            for name, s in (("added", added), ("removed", removed), ("changed", changed))}


def cot_numbers(version) -> dict:
    """Keep rate per task type, mean IoU of kept rows, and usage of one CoT version."""
    kept = pl.from_arrow(version.table().select(["task_type", "iou"]))
    rejects = pl.from_arrow(version.rejects().select(["record"]))
    dropped = rejects.select(pl.col("record").str.json_path_match("$.task_type").fill_null("?").alias("task_type"))
    k = dict(kept.group_by("task_type").len().iter_rows())
    d = dict(dropped.group_by("task_type").len().iter_rows())
    keep_rate = {t: round(k.get(t, 0) / (k.get(t, 0) + d.get(t, 0)), 4) for t in sorted(set(k) | set(d))}
    iou = kept["iou"].mean() if kept.height else None
    usage = {key: v for key, v in _flatten(version.manifest.get("usage") or {}).items()
             if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"keep_rate": keep_rate, "mean_iou": None if iou is None else round(float(iou), 4), "usage": usage}


def diff_versions(a, b) -> dict:
    """The whole comparison as plain JSON-able data (A first, B second in every pair)."""
    ca, cb = a.manifest["counts"], b.manifest["counts"]
    out = {
        "a": a.ref, "b": b.ref, "kinds": [a.kind, b.kind],
        "rows": [ca["rows"], cb["rows"]],
        "by_task_type": _pair(ca.get("by_task_type", {}), cb.get("by_task_type", {})),
        "dropped_by_reason": _pair(ca.get("dropped_by_reason", {}), cb.get("dropped_by_reason", {})),
        "row_changes": row_changes(a.table(), b.table()),
        "manifest": manifest_changes(a.manifest, b.manifest),
    }
    if a.kind == b.kind == "cot":
        na, nb = cot_numbers(a), cot_numbers(b)
        out["cot"] = {
            "keep_rate": {t: [na["keep_rate"].get(t), nb["keep_rate"].get(t)]
                          for t in sorted(set(na["keep_rate"]) | set(nb["keep_rate"]))},
            "mean_iou": [na["mean_iou"], nb["mean_iou"]],
            "usage": {u: [na["usage"].get(u), nb["usage"].get(u)] for u in sorted(set(na["usage"]) | set(nb["usage"]))},
        }
    return out


def _table(title: str, pairs: dict, a: str, b: str) -> list[str]:
    if not pairs:
        return []
    width = max(len(k) for k in pairs) + 2
    lines = [f"\n{title}", f"  {'':<{width}}{a:>16}  {b:>16}"]
    for key, (va, vb) in pairs.items():
        mark = "" if va == vb else "  *"
        lines.append(f"  {key:<{width}}{_fmt(va):>16}  {_fmt(vb):>16}{mark}")
    return lines


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    text = v if isinstance(v, str) else json.dumps(v)
    return text if len(text) <= 16 else text[:13] + "..."


def format_diff(d: dict) -> str:
    """The human report: side-by-side tables, `*` marking what differs."""
    a, b = d["a"], d["b"]
    lines = [f"A = {a} ({d['kinds'][0]})", f"B = {b} ({d['kinds'][1]})"]
    lines += _table("rows", {"rows": d["rows"]}, "A", "B")
    lines += _table("rows per task type", d["by_task_type"], "A", "B")
    lines += _table("dropped per reason", d["dropped_by_reason"], "A", "B")
    if "cot" in d:
        lines += _table("keep rate per task type", d["cot"]["keep_rate"], "A", "B")
        lines += _table("mean IoU of kept rows", {"mean_iou": d["cot"]["mean_iou"]}, "A", "B")
        lines += _table("generation usage", d["cot"]["usage"], "A", "B")
    lines.append("\nrows by id (B against A)")
    for name, c in d["row_changes"].items():
        more = f" (e.g. {', '.join(c['examples'])})" if c["examples"] else ""
        lines.append(f"  {name:<8} {c['n']}{more}")
    lines.append("\nmanifest differences" + ("" if d["manifest"] else ": none"))
    for key, (va, vb) in d["manifest"].items():
        lines.append(f"  {key}: {json.dumps(va, default=str)} -> {json.dumps(vb, default=str)}")
    return "\n".join(lines)
