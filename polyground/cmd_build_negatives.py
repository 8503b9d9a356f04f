"""`polyground build negatives`: a tasks version plus no-target rows made by leaving out the target's images.

The rule and counts live in builders/negatives.py; the new version's input is
the tasks version it was made from (its lineage), and the rule is part of its
config (so of its id). The new `name@id` is the last line of standard output.
"""
from __future__ import annotations

import sys

from polyground.cli import add_config_option, open_store
from schemas.errors import UserError


def add_parsers(sub) -> None:
    what = "add no-target rows to a tasks version by leaving out each target's image(s)"
    p = sub.add_parser("negatives", help=what, description=what)
    p.add_argument("--from", dest="source", required=True, help="the tasks version (name@id, name@tag or name)")
    p.add_argument("--name", required=True, help="dataset name of the new tasks version")
    p.add_argument("--negatives-only", action="store_true", help="write only the negative rows")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.sources.ingest import task_summary
    from builders.negatives import RULE, with_negatives
    from schemas import rows as contract

    store = open_store(args)
    version = store.resolve(args.source)
    store.check_trainable(version)
    if version.kind != "tasks":
        raise UserError(f"{version.ref} is a {version.kind} version; build negatives reads a tasks version")
    records, block = with_negatives(version.table().to_pylist(), args.negatives_only)
    if not block["made"]:
        why = ", ".join(f"{k}: {v}" for k, v in block["skipped"].items()) or "no row"
        raise UserError(f"no negative could be made from {version.ref} ({why})")
    table = contract.to_table(records, "tasks")
    extra = {"summary": task_summary(table), "negatives": {**block, "from": version.ref}}
    config = {"negatives": RULE, "negatives_only": args.negatives_only}
    with store.writer(args.name, "tasks", inputs=[version], config=config) as w:
        w.write(table, None, extra)
    print(f"{w.version.ref}: {block['made']} negatives ({RULE}) from {version.ref}", file=sys.stderr)
    print(w.version.ref)
    return 0
