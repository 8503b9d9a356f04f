"""`polyground data ...`: list, show, verify, diff, tag, export and merge versions.

Read-only except `tag` (writes a ref; moving one needs --force), `export`
(writes outside the store, into an empty folder or, with --overwrite, over
its own earlier export) and `merge` (commits a new version from shard
versions of one kind, e.g. a CoT build sharded over hosts with `--shard i/n`).
Every command checks what it reads (builders.store). What the text reports
print comes from rows (ids, task types): it goes through `terminal_safe`, so an
escape sequence in a row value is shown, not obeyed; `--json` output is ASCII.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from polyground.cli import add_config_option, open_store, terminal_safe
from schemas.errors import UserError


def add_parsers(sub) -> None:
    def command(name, func, help):
        p = sub.add_parser(name, help=help, description=help)
        add_config_option(p)
        p.set_defaults(func=func)
        return p

    p = command("ls", cmd_ls, "list versions (oldest first), with kind, rows and tags")
    p.add_argument("name", nargs="?", help="only this dataset")
    p = command("show", cmd_show, "show a version's manifest and summary")
    p.add_argument("ref", help="NAME, NAME@ID or NAME@TAG")
    p.add_argument("--json", action="store_true", help="print the manifest as JSON")
    p = command("verify", cmd_verify, "recompute file and image hashes; exit 1 when anything changed")
    p.add_argument("ref")
    p = command("diff", cmd_diff, "compare two versions: counts, rows by id, manifest")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p = command("tag", cmd_tag, "give a version a name (NAME@TAG)")
    p.add_argument("ref")
    p.add_argument("tag")
    p.add_argument("--force", action="store_true", help="move the tag when it already marks another version")
    p = command("export", cmd_export, "write Parquet shards with embedded images, the card and the manifest")
    p.add_argument("ref")
    p.add_argument("dir", type=Path)
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in DIR (only the files that export wrote)")
    p = command("merge", cmd_merge, "merge versions of one kind (e.g. CoT shards) into a new version")
    p.add_argument("refs", nargs="+")
    p.add_argument("--name", required=True, help="name of the merged dataset")


def cmd_ls(args) -> int:
    store = open_store(args)
    versions = store.versions(args.name)
    if not versions:
        print(f"no datasets in store {store.root}" + (f" named {args.name}" if args.name else ""), file=sys.stderr)
        return 0
    tags = {}
    for v in versions:
        tags.setdefault(v.name, store.tags(v.name))
    w = max(36, *(len(v.ref) for v in versions))  # long names keep the columns aligned
    print(f"{'version':<{w}} {'kind':<12} {'rows':>8}  {'created':<20} tags")
    damaged = []
    for v in versions:
        try:  # the manifest's seal is checked as it is read: an edited one lists as damaged
            kind, rows = v.kind, v.manifest["counts"]["rows"]
        except UserError:
            kind, rows = "damaged", "?"
            damaged.append(v.ref)
        names = ",".join(t for t, i in tags[v.name].items() if i == v.id)
        print(terminal_safe(f"{v.ref:<{w}} {kind:<12} {rows:>8}  {v.created[:19]:<20} {names}"))
    if damaged:
        print(terminal_safe(f"warning: {len(damaged)} damaged version(s), their manifest changed or unreadable: "
                            f"{', '.join(damaged)} (see `polyground data verify REF`)"), file=sys.stderr)
    return 0


def cmd_show(args) -> int:
    store = open_store(args)
    v = store.resolve(args.ref)
    m = v.manifest
    if args.json:
        print(json.dumps(m, indent=2, sort_keys=True))
        return 0
    c = m["counts"]
    lines = [f"{v.ref}  ({m['kind']})", f"created       {m['created']}", f"code version  {m['code_version']}",
             f"inputs        {', '.join(i['ref'] for i in m['inputs']) or '-'}",
             f"config        {json.dumps(m['config'], sort_keys=True)}",
             f"tags          {', '.join(t for t, i in store.tags(v.name).items() if i == v.id) or '-'}",
             f"rows          {c['rows']}",
             f"dropped       {sum(c['dropped_by_reason'].values())} {_counts(c['dropped_by_reason'])}"]
    source = m["config"].get("source")
    pixels = m["config"].get("image_pixels") or (source.get("image_pixels") if isinstance(source, dict) else None)
    if pixels:  # the budget images were resized into: the frame of qwen2_5_vl answers
        lines.append(f"image pixels  {pixels['min_pixels']}..{pixels['max_pixels']} (images resized into this area)")
    if m.get("contamination"):
        lines.append(f"bench overlap {_counts(m['contamination'])}")
    if isinstance((m.get("near_duplicates") or {}).get("benches"), dict):
        near = {ref: b["images"] for ref, b in m["near_duplicates"]["benches"].items()}
        lines.append(f"near-dup      {_counts(near)} (perceptual hash <= {m['near_duplicates']['threshold']})")
    if m.get("usage"):
        lines.append(f"usage         {json.dumps(m['usage'], sort_keys=True)}")
    if m["kind"] in ("tasks", "bench"):
        lines += summary_lines(m.get("summary") or _summary(v))
    print(terminal_safe("\n".join(lines)))
    return 0


def _summary(version) -> dict:
    from builders.sources.ingest import task_summary

    return task_summary(version.table())


def _counts(d: dict) -> str:
    return "(" + ", ".join(f"{k}: {v}" for k, v in d.items()) + ")" if d else ""


def _range(s: dict, unit: str = "") -> str:
    if not s:
        return "-"
    return f"median {s['p50']:g}{unit} (min {s['min']:g}, p90 {s['p90']:g}, max {s['max']:g})"


def summary_lines(s: dict) -> list[str]:
    """The human summary of a tasks or bench version."""
    lines = ["", "rows per task type"]
    lines += [f"  {t:<28} {n:>7}" for t, n in s["rows_by_task_type"].items()]
    lines += [
        f"images per row          mean {s['images_per_row'].get('mean', 0):g}, {_range(s['images_per_row'])}",
        f"unique images           {s['unique_images']}",
        f"image width             {_range(s['image_width'], ' px')}",
        f"image height            {_range(s['image_height'], ' px')}",
        f"box area / image area   {_range(s['box_area_fraction'])}",
        f"targets                 {s['grounding_rows']} boxes, {s['multiple_choice_rows']} multiple choice",
    ]
    return lines


def cmd_verify(args) -> int:
    store = open_store(args)
    problems = store.verify(args.ref)
    if problems:
        print(f"{args.ref}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    v = store.resolve(args.ref)
    print(f"{v.ref}: ok ({len(v.manifest['files'])} files, {len(v.image_hashes)} images match their hashes)")
    return 0


def cmd_diff(args) -> int:
    from builders.store.diff import diff_versions, format_diff

    store = open_store(args)
    d = diff_versions(store.resolve(args.a), store.resolve(args.b))
    print(json.dumps(d, indent=2, default=str) if args.json else terminal_safe(format_diff(d)))
    return 0


def cmd_tag(args) -> int:
    store = open_store(args)
    v, previous = store.tag(args.ref, args.tag, force=args.force)
    if previous:
        print(f"moved {v.name}@{args.tag} from {v.name}@{previous}", file=sys.stderr)
    print(f"{v.name}@{args.tag} -> {v.ref}")
    return 0


def cmd_export(args) -> int:
    from builders.publish.export import export_version

    store = open_store(args)
    files = export_version(store, store.resolve(args.ref), args.dir, overwrite=args.overwrite)
    shards = sum(1 for f in files if f.suffix == ".parquet")
    print(f"wrote {shards} parquet shard(s), the card and the manifest", file=sys.stderr)
    print(args.dir)
    return 0


def cmd_merge(args) -> int:
    store = open_store(args)
    v = merge_versions(store, [store.resolve(r) for r in args.refs], args.name)
    print(v.ref)
    return 0


def merge_versions(store, versions: list, name: str):
    """One version holding the rows and rejects of `versions` (same kind, distinct ids)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kinds = {v.kind for v in versions}
    if len(kinds) != 1:
        raise UserError(f"merge needs versions of one kind, got {', '.join(sorted(kinds))}")
    if len({v.id for v in versions}) != len(versions):
        raise UserError("merge: the same version is given twice")
    kind = kinds.pop()
    table = pa.concat_tables([v.table() for v in versions])
    ids = table.column("id")
    if pc.count_distinct(ids).as_py() != table.num_rows:
        dup = next(d["values"] for d in pc.value_counts(ids).to_pylist() if d["counts"] > 1)
        raise UserError(f"merge: id {dup!r} appears in more than one input; shards must not overlap")
    rejects = pa.concat_tables([v.rejects() for v in versions])
    from builders.store.contamination import table_image_hashes

    store.check_images(table_image_hashes(table), "merge")  # before the summary and contamination work
    extra = merged_extra(versions)
    if kind in ("tasks", "bench"):
        from builders.sources.ingest import task_summary

        extra["summary"] = task_summary(table)
    if kind in ("tasks", "cot", "rl-pool"):
        from builders.store.contamination import contamination_fields

        extra.update(contamination_fields(store, table, refuse=False))
    with store.writer(name, kind, inputs=versions, config={"operation": "merge"}) as w:
        w.write(table, rejects, extra)
    return w.version


def merged_extra(versions: list) -> dict:
    """Builder-given manifest fields: `usage` summed, equal values kept, others per input."""
    from builders.store import CORE_KEYS

    keys = sorted({k for v in versions for k in v.manifest if k not in CORE_KEYS and k != "seal"})
    out = {}
    for key in keys:
        values = [v.manifest.get(key) for v in versions]
        if key == "usage":
            out[key] = _sum(values)
        elif all(x == values[0] for x in values):
            out[key] = values[0]
        else:
            out[key] = {"per_input": {v.ref: x for v, x in zip(versions, values)}}
    return out


def _sum(values: list):
    """Numbers summed, dicts summed key by key; anything else kept from the first."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return sum(present)
    if present and all(isinstance(v, dict) for v in present):
        return {k: _sum([v.get(k) for v in present]) for k in sorted({k for v in present for k in v})}
    return present[0] if present else None
