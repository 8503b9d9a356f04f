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

from polyground.cli import add_config_option, add_endpoint_options, add_pixel_budget_options, open_store


def add_parsers(sub) -> None:
    what = "chain-of-thought trajectories from a teacher endpoint (or annotations), verified"
    p = sub.add_parser("cot", help=what, description=what)
    p.add_argument("--tasks", required=True, help="tasks version to build from (NAME[@VERSION|@TAG])")
    p.add_argument("--name", required=True, help="name of the new cot dataset")
    p.add_argument("--mode", choices=("teacher", "annotations"), help="teacher (default) or annotations")
    p.add_argument("--teacher-url", help="OpenAI-compatible base URL, e.g. http://host:8000/v1")
    p.add_argument("--teacher-model", help="the served model's name")
    p.add_argument("--teacher-profile", help="answer format asked of the teacher (default norm1000: JSON on 0-1000)")
    p.add_argument("--profile", help="answer profile of the written completions (default qwen2_vl)")
    p.add_argument("--samples", type=int, help="samples per task (default 4)")
    p.add_argument("--temperature", type=float, help="sampling temperature (default 0.7)")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default 1.0)")
    p.add_argument("--max-tokens", type=int, help="completion tokens per sample (default 1024)")
    p.add_argument("--seed", type=int, help="sampling seed; request seed = seed + first sample index (default 0)")
    p.add_argument("--hint", choices=("none", "answer"),
                   help="answer: give the teacher the ground truth to reason towards")
    p.add_argument("--min-iou", type=float, help="keep a sample with the right image and IoU >= this (default 0.5)")
    p.add_argument("--keep-per-task", type=int, help="at most this many best samples kept per task (default 1)")
    add_endpoint_options(p, api_key_flag="--teacher-api-key-env", defaults=False)
    p.add_argument("--max-retries", type=int, help="retries of a failed request (default 6)")
    p.add_argument("--breaker-after", type=int,
                   help="stop the build when this many attempts in a row fail: the endpoint is down (default 20)")
    p.add_argument("--no-n", action="store_true",
                   help="one request per sample, for servers that ignore `n`")
    p.add_argument("--price-in", type=float, help="price per million prompt tokens (for the cost in the manifest)")
    p.add_argument("--price-out", type=float, help="price per million completion tokens")
    p.add_argument("--shard", help="i/n: build only shard i (0-based) of n, split by task id hash")
    p.add_argument("--no-contamination", action="store_true",
                   help="refuse to build when any image is shared with a benchmark split")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_pixel_budget_options(p, "a stock served Qwen2.5-VL's, 3136 and 12845056")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.cot import build_cot, config_from_args
    from schemas.profiles import takes_budget

    cfg = config_from_args(args)
    store = open_store(args)
    version, s = build_cot(store, cfg, args.tasks, args.name, refuse_contamination=args.no_contamination,
                           quiet=args.quiet)
    dropped = ", ".join(f"{k}: {v}" for k, v in sorted(s["rejects"].items())) or "none"
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
