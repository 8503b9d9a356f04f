"""Data cards: the README.md (Hub YAML header + Markdown) of every version.

The store's writer calls `render_card(folder, manifest, table)` while a version
is being built, before `manifest.json` is written: it writes `README.md` and
its plots (`plots/*.png`) into the folder. The text comes from
`data_cards/<kind>.md`, a `string.Template` whose `$fields` are the fragments
built here (lineage, counts, usage, plots, ...); a template names only the
fields it shows. Everything is derived from the manifest and the table, so the
card of a version is reproducible; missing manifest keys render as "not
recorded" rather than failing a build.

The YAML header carries the Hub metadata (`configs` -> `data_files`), which is
what makes `datasets.load_dataset(folder_or_repo)` find the exported Parquet
shards (layout: `hub_data_files`).
"""
from __future__ import annotations

import json
from pathlib import Path
from string import Template

import pyarrow as pa

from builders.publish import plots

TEMPLATES = Path(__file__).resolve().parents[2] / "data_cards"
CARD = "README.md"
DATA_DIR = "data"  # the export writes data/<split>-NNNNN-of-NNNNN.parquet
SPLITS = {"bench": "test", "predictions": "test"}  # everything else is a train split
# Manifest keys rendered in their own section; any other key lands under "Other manifest fields".
SHOWN_KEYS = {"name", "id", "kind", "created", "code_version", "inputs", "config", "counts",
              "files", "schema", "seal", "usage", "contamination", "license"}
NOT_RECORDED = "_not recorded_"


def split_name(kind: str) -> str:
    return SPLITS.get(kind, "train")


def hub_data_files(kind: str) -> list[dict]:
    """The `data_files` entries of the card's default config."""
    split = split_name(kind)
    return [{"split": split, "path": f"{DATA_DIR}/{split}-*.parquet"}]


def size_category(n: int) -> str:
    """The Hub's size_categories bucket for n rows."""
    bounds = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
              (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")]
    return next((label for bound, label in bounds if n < bound), "100M<n<1B")


# Row values reach the card (task types, sources, generator names): in a text cell,
# HTML is entity-escaped and the Markdown that makes links, images or code is
# backslash-escaped, so `<script>` or `<img onerror=...>` render as text.
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\\": "\\\\", "`": "\\`", "[": "\\[",
                               "]": "\\]", "|": "\\|", "\n": " ", "\r": " "})


def _cell(value) -> str:
    """One Markdown table cell: JSON for structures (a code span, shown literally),
    text escaped (HTML, Markdown links and code, pipes, newlines)."""
    if value is None:
        return NOT_RECORDED
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        text = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if "`" not in text:  # a backtick would close the span: then it is escaped as text
            return f"`{text}`".replace("|", "\\|")
        value = text
    return str(value).translate(_TEXT_ESCAPES)


def md_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def flatten(d: dict, prefix: str = "", depth: int = 1) -> dict:
    """Nested dicts as dotted keys (`policy.identity`), `depth` levels deep; lists stay whole."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and depth > 0:
            out.update(flatten(v, key + ".", depth - 1))
        else:
            out[key] = v
    return out


def kv_table(d: dict, empty: str = NOT_RECORDED) -> str:
    flat = flatten(d)
    return md_table(["key", "value"], [[k, flat[k]] for k in sorted(flat)]) if flat else empty


def _distinct(table: pa.Table, column: str) -> list:
    return list(plots.value_counts(table, column))


def generators(table: pa.Table) -> dict:
    """Who or what produced the rows, read from the rows themselves (cot: teacher,
    template, sampling; rl-pool: policy and k; predictions: model and profile)."""
    cols = ["source", "generator_model", "generator_kind", "template_id", "sampling", "profile", "policy", "k", "model"]
    found = {}
    for col in cols:
        values = _distinct(table, col)
        if values:
            found[col] = values[0] if len(values) == 1 else values
    return found


def lineage(manifest: dict, table: pa.Table) -> str:
    ref = f"{manifest.get('name', '?')}@{manifest['id']}" if manifest.get("id") else manifest.get("name", "?")
    head = {"version": ref, "version id": manifest.get("id"), "kind": manifest.get("kind"),
            "created": manifest.get("created"), "code version": manifest.get("code_version"),
            **generators(table)}
    parts = [md_table(["field", "value"], [[k, v] for k, v in head.items()])]
    inputs = manifest.get("inputs") or []
    parts.append("**Inputs** (frozen versions this one was built from):\n\n" + (
        md_table(["input", "kind", "id"], [[i.get("ref"), i.get("kind"), i.get("id")] for i in inputs])
        if inputs else "none (built from a source)"))
    parts.append("**Build configuration** (hashed into the version id):\n\n" + kv_table(manifest.get("config") or {}))
    other = {k: v for k, v in manifest.items() if k not in SHOWN_KEYS}
    if other:
        parts.append("**Other manifest fields:**\n\n" + kv_table(other))
    return "\n\n".join(parts)


def counts(manifest: dict, table: pa.Table) -> str:
    c = manifest.get("counts") or {}
    by_task = c.get("by_task_type") or plots.value_counts(table, "task_type")
    dropped = c.get("dropped_by_reason") or {}
    kept = c.get("rows", table.num_rows)
    parts = [f"Kept **{kept}** rows; dropped **{sum(dropped.values())}**."]
    if by_task:
        parts.append(md_table(["task type", "rows"], [[k, v] for k, v in by_task.items()]))
    by_source = plots.value_counts(table, "source")
    if len(by_source) > 1:
        parts.append(md_table(["source", "rows"], [[k, v] for k, v in by_source.items()]))
    parts.append("**Dropped by reason** (the rows are kept in `rejects.arrow` in the store):\n\n"
                 + (md_table(["reason", "rows"], [[k, v] for k, v in dropped.items()]) if dropped else "none"))
    extra = {k: v for k, v in c.items() if k not in ("rows", "by_task_type", "dropped_by_reason")}
    if extra:
        parts.append("**Other counts:**\n\n" + kv_table(extra))
    return "\n\n".join(parts)


def usage(manifest: dict) -> str:
    u = manifest.get("usage")
    if not u:
        return "No generation usage recorded: no model was called to build this version."
    u = u if isinstance(u, dict) else {"usage": u}
    note = "" if any("cost" in k for k in flatten(u)) else "\n\nCost: not recorded in the manifest."
    return kv_table(u) + note


def contamination(manifest: dict) -> str:
    """`contamination` is {bench_ref: images shared with it} (builders.store.contamination)."""
    c = manifest.get("contamination")
    if c is None:
        return "No contamination check recorded for this version."
    if not c:
        return "Checked: there was no benchmark split in the store to compare with."
    near = manifest.get("near_duplicates")
    if isinstance(c, dict) and isinstance(near, dict) and isinstance(near.get("benches"), dict):
        b = near["benches"]
        counts = lambda d: ", ".join(f"{k}: {v}" for k, v in d.items()) or "-"  # noqa: E731
        return (f"Images shared with each benchmark split in the store: byte for byte (content hash), and as "
                f"near-duplicates ({near.get('hash')}, Hamming distance <= {near.get('threshold')} of "
                f"{near.get('bits')} bits, bench images also hashed after symmetric crops of "
                f"{near.get('bench_crops')} % per side; {near.get('library')}; "
                f"{near.get('images_not_hashed')} plain images checked by content hash only):\n\n"
                + md_table(["benchmark split", "same bytes", "near-duplicates", "rows using them",
                            "benchmark rows using their matches"],
                           [[k, c.get(k, 0), b[k]["images"], counts(b[k]["rows_by_task_type"]),
                             counts(b[k]["bench_rows_by_task_type"])] for k in sorted(b)]))
    if isinstance(c, dict):
        return ("Images shared (by content hash) with each benchmark split in the store:\n\n"
                + md_table(["benchmark split", "shared images"], [[k, c[k]] for k in sorted(c)]))
    return kv_table({"overlap": c})


def source_file(manifest: dict) -> str:
    """Which annotation file a split was read from, for readers that describe it (MIG-Bench:
    MIG_data.json with 0-1 boxes or the revised file with 0-1000 boxes; the published tables use the latter)."""
    f = (manifest.get("source") or {}).get("bench_file")
    if not isinstance(f, dict):
        return "Not recorded: the reader of this source does not describe its file."
    return (f"Read from `{f.get('name')}` ({f.get('variant')} file, boxes as {f.get('box_frame')} in the file), "
            f"{f.get('items')} items, sha256 `{f.get('sha256')}`: {f.get('release')}. "
            "Scores are comparable only with numbers computed on the same file.")


def metrics(table: pa.Table) -> str:
    m = plots.prediction_metrics(table)
    if not m:
        return "No predictions."
    keys = ["n", "format_rate", "image_accuracy", "acc_at_0.5", "mean_iou", "official_mean_iou", "choice_accuracy"]
    # n/a: no row of that task type can be scored that way (e.g. IoU of a multiple-choice task)
    return md_table(["task type"] + keys, [[t] + ["n/a" if row[k] is None else row[k] for k in keys]
                                           for t, row in m.items()])


def _stats(values) -> str:
    if not len(values):
        return NOT_RECORDED
    return f"n={len(values)}, mean={values.mean():.3f}, median={float(sorted(values)[len(values) // 2]):.3f}"


def verifier(table: pa.Table) -> str:
    """CoT: how the kept trajectories score under the verifier."""
    rows = {"format ok": plots.floats(table, "format_ok"), "image correct": plots.floats(table, "image_correct"),
            "IoU": plots.floats(table, "iou")}
    return md_table(["score", "summary"], [[k, _stats(v)] for k, v in rows.items()])


def pool(table: pa.Table) -> str:
    """RL pool: the pass-rate band that was kept and the difficulty mix."""
    rows = {"pass rate": _stats(plots.floats(table, "pass_rate")), "mean IoU": _stats(plots.floats(table, "mean_iou")),
            "max IoU": _stats(plots.floats(table, "max_iou")), "difficulty": plots.value_counts(table, "difficulty")}
    return md_table(["statistic", "value"], [[k, v] for k, v in rows.items()])


def schema_list(table: pa.Table) -> str:
    """The stored columns; the export (Parquet, the Hub) embeds the images."""
    text = "\n".join(f"- `{f.name}`: `{f.type}`" for f in table.schema)
    if "images" in table.schema.names:
        text += ("\n\nIn the Parquet shards `images` holds the image bytes, in order, as `List(Image())`, "
                 "and `image_refs` keeps the stored references above (sha256, width, height).")
    return text


def plots_md(figures: list[tuple[str, str]]) -> str:
    return "\n\n".join(f"**{caption}**\n\n![{caption}]({path})" for caption, path in figures) or "No plots (no rows)."


def fields(manifest: dict, table: pa.Table, figures: list[tuple[str, str]]) -> dict[str, str]:
    """Every `$field` a template may use."""
    kind = manifest.get("kind", "tasks")
    name = manifest.get("name", "dataset")
    vid = manifest.get("id") or "VERSION_ID"
    license_ = manifest.get("license") or (manifest.get("config") or {}).get("license") or "other"
    data_files = "\n".join(f"  - split: {d['split']}\n    path: {d['path']}" for d in hub_data_files(kind))
    return {
        "name": name, "kind": kind, "version_id": vid, "ref": f"{name}@{vid}", "split": split_name(kind),
        "license": license_, "size_category": size_category(table.num_rows), "data_files": data_files,
        "rows": str(table.num_rows), "lineage": lineage(manifest, table), "counts": counts(manifest, table),
        "usage": usage(manifest), "contamination": contamination(manifest), "source_file": source_file(manifest), "plots": plots_md(figures),
        "schema": schema_list(table), "metrics": metrics(table), "verifier": verifier(table), "pool": pool(table),
    }


def card_text(manifest: dict, table: pa.Table, figures: list[tuple[str, str]]) -> str:
    kind = manifest.get("kind", "tasks")
    path = TEMPLATES / f"{kind}.md"
    if not path.is_file():
        raise FileNotFoundError(f"no data card template for kind {kind!r}: {path}")
    return Template(path.read_text()).substitute(fields(manifest, table, figures))


def render_card(version_dir: Path, manifest: dict, table: pa.Table) -> None:
    """Write README.md and plots/*.png for one version into `version_dir`."""
    version_dir = Path(version_dir)
    figures = plots.write_plots(table, manifest.get("kind", "tasks"), version_dir)
    (version_dir / CARD).write_text(card_text(manifest, table, figures))
