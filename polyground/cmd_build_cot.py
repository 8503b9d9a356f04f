"""`polyground build cot`: chain-of-thought trajectories into a new cot version.

Two modes (builders/cot.py documents the gate and the row contract):
- `teacher` (default): a teacher model behind any OpenAI-compatible endpoint
  (vLLM, SGLang, OpenAI) writes K samples per task; only verified samples are
  kept, rewritten into the answer profile. Responses are cached in the store:
  a rerun (after a crash, Ctrl-C or an endpoint outage) asks nothing twice.
- `annotations`: reasoning written offline from the rows' object annotations.

The new `name@id` is the last line of standard output; progress and the
report go to standard error. The API key is read from the environment
(`--teacher-api-key-env`, default OPENAI_API_KEY), never from the command line.
"""
from __future__ import annotations

import sys

from builders.cot import CotConfig
from polyground.cli import (
    add_config_flags, add_config_option, add_endpoint_options, add_pixel_budget_options, config_from_args, open_store,
)


def add_parsers(sub) -> None:
    what = "chain-of-thought trajectories from a teacher endpoint (or annotations), verified"
    p = sub.add_parser("cot", help=what, description=what)
    p.add_argument("--tasks", required=True, help="tasks version to build from (NAME[@VERSION|@TAG])")
    p.add_argument("--name", required=True, help="name of the new cot dataset")
    # The endpoint and pixel-budget flags are the shared ones; every other CotConfig field gets its flag here.
    add_endpoint_options(p, api_key_flag="--teacher-api-key-env")
    add_pixel_budget_options(p, "a stock served Qwen2.5-VL's, 3136 and 12845056")
    add_config_flags(p, CotConfig)
    p.add_argument("--no-contamination", action="store_true",
                   help="refuse to build when any image is shared with a benchmark split")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.cot import build_cot
    from schemas.profiles import takes_budget

    cfg = config_from_args(CotConfig, args)
    store = open_store(args)
    result = build_cot(store, cfg, args.tasks, args.name, refuse_contamination=args.no_contamination,
                       quiet=args.quiet)
    version, s = result.version, result.summary
    dropped = ", ".join(f"{k}: {v}" for k, v in result.dropped.items()) or "none"
    line = (f"{version.ref}: kept {s['kept_rows']} samples for {s['tasks_kept']} of {s['tasks']} tasks; "
            f"rejected {dropped}")
    if cfg.mode == "teacher" or takes_budget(cfg.profile) or takes_budget(cfg.teacher_profile):  # where it matters
        px = s["image_pixels"]
        line += f"; images at {px['min_pixels']}..{px['max_pixels']} pixels"
    u = s.get("usage")
    if u:
        line += f"; {u['prompt_tokens']} prompt + {u['completion_tokens']} completion tokens"
        line += f", cost {u['cost']:.4f}" if "cost" in u else ""
    print(line, file=sys.stderr)
    if s["tasks_failed"]:
        print(f"warning: {s['tasks_failed']} tasks failed (request_failed) and are not in {version.ref}; "
              f"rerun the same command to retry them (every answer received is cached)", file=sys.stderr)
    print(version.ref)
    return 0
