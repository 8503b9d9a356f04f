"""`polyground demo`: the whole loop on the embedded synthetic data, offline, on CPU (see polyground/demo.py)."""
from __future__ import annotations

from pathlib import Path

from polyground.cli import add_config_option


def add_parsers(sub) -> None:
    p = sub.add_parser("demo", help="the whole loop on synthetic data and a tiny local model, offline, on CPU")
    p.add_argument("--out", default="polyground-demo", help="folder for the store, models and report")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, the model and training")
    from polyground.demo import DemoConfig

    d = DemoConfig()  # the defaults are written once, there
    p.add_argument("--sft-steps", type=int, help=f"SFT steps (default {d.sft_steps})")
    p.add_argument("--grpo-steps", type=int, help=f"GRPO steps (default {d.grpo_steps})")
    p.add_argument("--n-train", type=int, help=f"tasks the demo's teacher is asked about (default {d.n_train})")
    p.add_argument("--n-bench", type=int, help=f"held-out tasks (default {d.n_bench})")
    p.add_argument("--n-rl", type=int, help=f"tasks sampled for the RL pool (default {d.n_rl})")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from polyground.demo import DemoConfig, run_demo

    overrides = {"sft_steps": args.sft_steps, "grpo_steps": args.grpo_steps, "n_train": args.n_train,
                 "n_bench": args.n_bench, "n_rl": args.n_rl}
    cfg = DemoConfig(seed=args.seed, **{k: v for k, v in overrides.items() if v is not None})
    # --store wins; else the demo keeps its own store inside --out.
    run_demo(cfg, Path(args.out), Path(args.store) if args.store else None)
    return 0
