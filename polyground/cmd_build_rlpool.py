"""`polyground build rl-pool`: rejection sampling of a policy into an RL pool.

k samples per task from the policy (a local model folder, or an
OpenAI-compatible endpoint serving it), scored with the shared rules, tasks
kept by pass-rate band (builders/rlpool.py documents the band notation). The
new `name@id` is the last line of standard output (after the SFT version's,
with --emit-sft); progress goes to standard error.
"""
from __future__ import annotations

import sys

from builders.rlpool import RLPoolConfig
from polyground.cli import (
    add_config_flags, add_config_option, add_endpoint_options, add_pixel_budget_options, config_from_args, open_store,
)


def add_parsers(sub) -> None:
    what = "sample a policy k times per task and keep the tasks in a pass-rate band"
    p = sub.add_parser("rl-pool", help=what, description=what)
    p.add_argument("--tasks", required=True, help="tasks version to sample (NAME[@VERSION|@TAG])")
    p.add_argument("--policy", required=True, help="model folder (merged SFT policy) or endpoint URL (http://.../v1)")
    p.add_argument("--policy-model", help="the served model's name (required with an endpoint URL)")
    p.add_argument("--profile", help="answer profile (default: the profile a model folder was trained on, else its "
                                     "model family; an endpoint whose served name names no family needs it)")
    add_config_flags(p, RLPoolConfig)  # --k, --temperature, --top-p, --max-tokens, --min-iou, --band, --seed, --chunk
    p.add_argument("--emit-sft", metavar="NAME", help="also write each task's best verified sample as a cot version")
    p.add_argument("--batch-size", type=int, default=8, help="local model: tasks per generate call (default 8)")
    p.add_argument("--device", help="local model: cpu, cuda, cuda:1 (default: cuda when available)")
    add_endpoint_options(p)
    p.add_argument("--name", required=True, help="name of the new rl-pool dataset")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_pixel_budget_options(p, "a model folder's processor bounds; for an endpoint a stock served "
                                "Qwen2.5-VL's, 3136 and 12845056: pass the served model's own")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.inference.backends import is_url, make_backend, resolve_frame
    from builders.rlpool import build_rl_pool, input_version
    from builders.secrets import check_url

    if is_url(args.policy):
        check_url(args.policy, "--policy")

    config = config_from_args(RLPoolConfig, args)
    store = open_store(args)
    version = input_version(store, args.tasks)  # fail fast, before a model is loaded or hashed
    profile, budget, given = resolve_frame(args.policy, args.policy_model, args.profile,
                                           args.image_min_pixels, args.image_max_pixels)
    backend = make_backend(store, args.policy, args.policy_model, profile, concurrency=args.concurrency,
                           batch_size=args.batch_size, device=args.device, api_key_env=args.api_key_env,
                           timeout=args.timeout, budget=budget, budget_given=given)
    result = build_rl_pool(store, version, backend, config, args.name, emit_sft=args.emit_sft,
                           progress=not args.quiet)
    s = result.summary
    rates = ", ".join(f"{p}: {n}" for p, n in sorted(s["pass_rates"].items()))
    print(f"{result.version.ref}: kept {result.kept} of {s['tasks']} tasks in band {config.band} "
          f"(pass rates {{{rates}}}); policy {backend.identity}, profile {profile.name}, "
          f"images at {budget.min_pixels}..{budget.max_pixels} pixels", file=sys.stderr)
    if result.sft_version is not None:
        print(f"{result.sft_version.ref}: {s['sft_rows']} best verified samples (cot)", file=sys.stderr)
        print(result.sft_version.ref)
    print(result.version.ref)
    return 0
