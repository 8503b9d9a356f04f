"""`polyground build tasks` and `polyground build bench`: a source -> a frozen version.

Both read a source through its reader (the registry: builders/sources/__init__.py),
validate and store it with builders.sources.ingest, and commit a version; `bench` marks it as a benchmark
split that no training or data build may use. The new `name@id` is the last
line of standard output; progress and the drop report go to standard error.
"""
from __future__ import annotations

import sys
from pathlib import Path

from builders.sources import NEEDS_NO_PATH, READERS, load_reader
from polyground.cli import add_config_option, open_store
from schemas.errors import UserError


def add_parsers(sub) -> None:
    for kind, what in (("tasks", "read a source into a tasks dataset"),
                       ("bench", "read a source into a benchmark split (never trainable)")):
        p = sub.add_parser(kind, help=what, description=what)
        p.add_argument("--source", required=True, help=f"one of: {', '.join(READERS)}")
        p.add_argument("--path", type=Path, help="the source's file or folder (not needed for synthetic)")
        p.add_argument("--name", required=True, help="dataset name in the store")
        p.add_argument("--n", type=int, help="synthetic: number of tasks")
        p.add_argument("--seed", type=int, help="synthetic: random seed")
        p.add_argument("--family", help="synthetic: task family (e.g. locate_red, mixed)")
        p.add_argument("--subsets", help="blink/mmiu: comma-separated subtasks to read")
        p.add_argument("--max-images-per-row", type=int,
                       help="rows listing more images are rejected as too_many_images "
                            "(default: builders.sources.ingest.MAX_IMAGES_PER_ROW, 64)")
        if kind == "tasks":
            p.add_argument("--no-contamination", action="store_true",
                           help="refuse to build when any image is shared with a benchmark split")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_config_option(p)
        p.set_defaults(func=lambda args, kind=kind: run_build(args, kind))


def reader_options(args) -> dict:
    options = {"n": args.n, "seed": args.seed, "family": args.family}
    if args.subsets:
        options["subsets"] = [s.strip() for s in str(args.subsets).split(",") if s.strip()]
    return {k: v for k, v in options.items() if v is not None}


def run_build(args, kind: str) -> int:
    from builders.store.contamination import contamination_fields
    from builders.sources.ingest import ingest, task_summary
    from schemas import rows

    reader = load_reader(args.source)
    path = args.path
    if path is None and args.source not in NEEDS_NO_PATH:
        raise UserError(f"--source {args.source} needs --path")
    if path is not None and not path.exists():
        raise UserError(f"--path {path}: no such file or folder")
    root = None if path is None else (path if path.is_dir() else path.parent).resolve()
    options = reader_options(args)
    store = open_store(args)
    limit = args.max_images_per_row
    bound = {} if limit is None else {"max_images": limit}
    records, rejects = ingest(reader(path, **options), store, progress=not args.quiet, root=root, **bound)
    table = rows.to_table(records, kind)
    extra = {"summary": task_summary(table),
             "source": {"reader": args.source, "path": None if path is None else str(path.resolve())}}
    describe = getattr(sys.modules.get(reader.__module__), "describe_source", None)
    if describe is not None and path is not None:  # which file, which frame (MIG-Bench: official or revised)
        extra["source"].update(describe(path))
    if kind != "bench":
        extra.update(contamination_fields(store, records, refuse=args.no_contamination))
    config = {"source": args.source, "options": options}
    if limit is not None:  # only when given: the ids of earlier builds stay what they were
        config["max_images_per_row"] = limit
    with store.writer(args.name, kind, inputs=[], config=config) as w:
        w.write(table, rows.to_table(rejects, "rejects"), extra)
    report(w.version, extra.get("contamination", {}), extra.get("near_duplicates"))
    print(w.version.ref)
    return 0


def report(version, contamination: dict, near: dict | None = None) -> None:
    """Kept and dropped counts (and any benchmark overlap, exact or near) on standard error."""
    counts = version.manifest["counts"]
    dropped = counts["dropped_by_reason"]
    line = f"{version.ref}: kept {counts['rows']} rows"
    if dropped:
        line += f", dropped {sum(dropped.values())} (" + ", ".join(f"{k}: {v}" for k, v in dropped.items()) + ")"
    print(line, file=sys.stderr)
    for ref, n in contamination.items():
        if n:
            print(f"warning: {n} images are shared with benchmark split {ref}", file=sys.stderr)
    for ref, b in (near or {}).get("benches", {}).items():
        if b["images"] > contamination.get(ref, 0):
            print(f"warning: {b['images']} images are near-duplicates of benchmark split {ref} (perceptual hash)",
                  file=sys.stderr)
