"""`polyground build tasks` and `polyground build bench`: a source -> a frozen version.

Both read a source through its reader (the registry: builders/sources/__init__.py),
validate and store it with builders.sources.ingest, and commit a version; `bench` marks it as a benchmark
split that no training or data build may use. The new `name@id` is the last
line of standard output; progress and the drop report go to standard error.
"""
from __future__ import annotations

import sys
from pathlib import Path

from builders.sources import READERS
from builders.tasks import TasksConfig
from polyground.cli import add_config_flags, add_config_option, config_from_args, open_store


def add_parsers(sub) -> None:
    for kind, what in (("tasks", "read a source into a tasks dataset"),
                       ("bench", "read a source into a benchmark split (never trainable)")):
        p = sub.add_parser(kind, help=what, description=what)
        p.add_argument("--source", required=True, help=f"one of: {', '.join(READERS)}")
        p.add_argument("--path", type=Path, help="the source's file or folder (not needed for synthetic)")
        p.add_argument("--name", required=True, help="dataset name in the store")
        add_config_flags(p, TasksConfig)  # --n, --seed, --family, --subsets, --max-images-per-row
        if kind == "tasks":
            p.add_argument("--no-contamination", action="store_true",
                           help="refuse to build when any image is shared with a benchmark split")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_config_option(p)
        p.set_defaults(func=lambda args, kind=kind: run_build(args, kind))


def run_build(args, kind: str) -> int:
    from builders.tasks import build_tasks

    config = config_from_args(TasksConfig, args)
    store = open_store(args)
    result = build_tasks(store, args.source, args.path, args.name, kind, config,
                         refuse_contamination=getattr(args, "no_contamination", False), progress=not args.quiet)
    report(result)
    print(result.version.ref)
    return 0


def report(result) -> None:
    """Kept and dropped counts (and any benchmark overlap, exact or near) on standard error."""
    dropped, contamination = result.dropped, result.summary["contamination"]
    line = f"{result.version.ref}: kept {result.kept} rows"
    if dropped:
        line += f", dropped {sum(dropped.values())} (" + ", ".join(f"{k}: {v}" for k, v in dropped.items()) + ")"
    print(line, file=sys.stderr)
    for ref, n in contamination.items():
        if n:
            print(f"warning: {n} images are shared with benchmark split {ref}", file=sys.stderr)
    for ref, b in (result.summary["near_duplicates"] or {}).get("benches", {}).items():
        if b["images"] > contamination.get(ref, 0):
            print(f"warning: {b['images']} images are near-duplicates of benchmark split {ref} (perceptual hash)",
                  file=sys.stderr)
