"""`polyground build negatives`: a tasks version plus no-target rows made by leaving out the target's images.

The rule and counts live in builders/negatives.py; the new version's input is
the tasks version it was made from (its lineage), and the rule is part of its
config (so of its id). The new `name@id` is the last line of standard output.
"""
from __future__ import annotations

import sys

from builders.negatives import NegativesConfig
from polyground.cli import add_config_flags, add_config_option, config_from_args, open_store


def add_parsers(sub) -> None:
    what = "add no-target rows to a tasks version by leaving out each target's image(s)"
    p = sub.add_parser("negatives", help=what, description=what)
    p.add_argument("--from", dest="source", required=True, help="the tasks version (name@id, name@tag or name)")
    p.add_argument("--name", required=True, help="dataset name of the new tasks version")
    add_config_flags(p, NegativesConfig)  # --negatives-only
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.negatives import RULE, build_negatives

    result = build_negatives(open_store(args), args.source, args.name, config_from_args(NegativesConfig, args))
    s = result.summary
    print(f"{result.version.ref}: {s['made']} negatives ({RULE}) from {s['from']}", file=sys.stderr)
    print(result.version.ref)
    return 0
