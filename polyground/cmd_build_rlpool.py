"""`polyground build rl-pool`: rejection sampling of a policy into an RL pool.

k samples per task from the policy (a local model folder, or an
OpenAI-compatible endpoint serving it), scored with the shared rules, tasks
kept by pass-rate band (builders/rlpool.py documents the band notation). The
new `name@id` is the last line of standard output (after the SFT version's,
with --emit-sft); progress goes to standard error.
"""
from __future__ import annotations

import sys

from polyground.cli import add_config_option, add_endpoint_options, add_pixel_budget_options, open_store


def add_parsers(sub) -> None:
    what = "sample a policy k times per task and keep the tasks in a pass-rate band"
    p = sub.add_parser("rl-pool", help=what, description=what)
    p.add_argument("--tasks", required=True, help="tasks version to sample (NAME[@VERSION|@TAG])")
    p.add_argument("--policy", required=True, help="model folder (merged SFT policy) or endpoint URL (http://.../v1)")
    p.add_argument("--policy-model", help="the served model's name (required with an endpoint URL)")
    p.add_argument("--profile", help="answer profile (default: the profile a model folder was trained on, else its "
                                     "model family; an endpoint whose served name names no family needs it)")
    p.add_argument("--k", type=int, default=8, help="samples per task (default 8)")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling (default 1.0: off)")
    p.add_argument("--max-tokens", type=int, default=512, help="new tokens per sample (default 512)")
    p.add_argument("--min-iou", type=float, default=0.5, help="a sample passes with the right image and IoU >= this")
    p.add_argument("--band", default="(0,1)",
                   help="pass rates kept, as an interval: (0,1) (default) drops always- and never-solved tasks, "
                        "[0,1) keeps never-solved ones, a bare LO,HI includes both ends")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--emit-sft", metavar="NAME", help="also write each task's best verified sample as a cot version")
    p.add_argument("--batch-size", type=int, default=8, help="local model: tasks per generate call (default 8)")
    p.add_argument("--device", help="local model: cpu, cuda, cuda:1 (default: cuda when available)")
    p.add_argument("--chunk", type=int, default=1024, help="tasks per round; bounds memory (default 1024)")
    add_endpoint_options(p)
    p.add_argument("--name", required=True, help="name of the new rl-pool dataset")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    add_pixel_budget_options(p, "a model folder's processor bounds; for an endpoint a stock served "
                                "Qwen2.5-VL's, 3136 and 12845056: pass the served model's own")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from builders.generation import is_url, make_backend, resolve_frame
    from builders.rlpool import RLPoolConfig, build_rl_pool, input_version
    from builders.secrets import check_url

    if is_url(args.policy):
        check_url(args.policy, "--policy")

    config = RLPoolConfig(k=args.k, temperature=args.temperature, top_p=args.top_p, max_tokens=args.max_tokens,
                          min_iou=args.min_iou, band=str(args.band), seed=args.seed, chunk=args.chunk)
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
    print(f"{result.version.ref}: kept {s['kept']} of {s['tasks']} tasks in band {config.band} "
          f"(pass rates {{{rates}}}); policy {backend.identity}, profile {profile.name}, "
          f"images at {budget.min_pixels}..{budget.max_pixels} pixels", file=sys.stderr)
    if result.sft_version is not None:
        print(f"{result.sft_version.ref}: {s['sft_rows']} best verified samples (cot)", file=sys.stderr)
        print(result.sft_version.ref)
    print(result.version.ref)
    return 0
