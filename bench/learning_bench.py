"""What GRPO adds over the equal-time SFT control, over seeds and over repeated runs of one seed.

    python bench/learning_bench.py [--seeds 0 1 2] [--repeat 1] [--validation] [--set KEY=VALUE ...]
                                   [--out bench-out/learning]

Runs the demo loop (polyground.demo) once per seed (and `--repeat` times
each), about 10 minutes a run on 2 CPU cores, and prints every run's
held-out Acc@0.5 and mean IoU (the metric the IoU reward optimises) after
SFT, GRPO and the control, then the mean and spread over seeds and over
repeats, so the learning claim is a measured distribution, not one run.
`--validation` scores on the validation split (where choices are made);
the held-out split is for reporting only. `--set` overrides a DemoConfig
field (`--set n_rl=1024 --set grpo_steps=80`).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from dataclasses import fields
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

METRICS = (("strict_acc@0.5", "Acc@0.5"), ("strict_miou", "mean IoU"))


def overrides(pairs: list[str]) -> dict:
    from polyground.demo import DemoConfig

    types = {f.name: f.type for f in fields(DemoConfig)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key in ("seed", "validation"):
            raise SystemExit(f"--set {pair}: use --seeds / --validation")
        if key not in types:
            raise SystemExit(f"--set {pair}: no DemoConfig field {key!r} (fields: {', '.join(types)})")
        kind = {"int": int, "float": float, "bool": lambda v: v.lower() in ("1", "true", "yes")}.get(types[key], str)
        out[key] = kind(value)
    return out


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"mean {statistics.mean(values):6.1f}  sd {sd:5.1f}  min {min(values):6.1f}  max {max(values):6.1f}"


def main() -> None:
    from polyground.demo import DemoConfig, run_demo

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeat", type=int, default=1, help="runs of each seed (the run-to-run spread)")
    ap.add_argument("--validation", action="store_true", help="score on the validation split")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="a DemoConfig field")
    ap.add_argument("--out", default="bench-out/learning")
    args = ap.parse_args()
    extra = overrides(args.set)
    runs = []  # (seed, repeat, {model: {metric: %}})
    for seed in args.seeds:
        for rep in range(args.repeat):
            out = Path(args.out) / f"seed{seed}-run{rep}"
            run_demo(DemoConfig(seed=seed, validation=args.validation, **extra), out)
            metrics = json.loads((out / "metrics.json").read_text())
            runs.append((seed, rep, {k: {m: 100 * v[m] for m, _ in METRICS} for k, v in metrics.items()}))
    split = "validation" if args.validation else "held-out"
    for key, name in METRICS:
        print(f"\n{split} {name} (strict, %); chance Acc@0.5 12.5")
        labels = list(runs[0][2])
        print("seed run  " + "  ".join(f"{k:>8}" for k in labels) + "  grpo-control")
        for seed, rep, r in runs:
            cells = "  ".join(f"{r[k][key]:8.1f}" for k in labels)
            print(f"{seed:>4} {rep:>3}  {cells}  {r['grpo'][key] - r['control'][key]:+12.1f}")
        for k in labels + ["grpo-control"]:
            vals = [r["grpo"][key] - r["control"][key] if k == "grpo-control" else r[k][key] for _, _, r in runs]
            print(f"{k:>12} over all runs: {spread(vals)}")
        if args.repeat > 1:
            for seed in args.seeds:
                gaps = [r["grpo"][key] - r["control"][key] for s, _, r in runs if s == seed]
                print(f"  seed {seed}, grpo-control over {args.repeat} runs: {spread(gaps)}")


if __name__ == "__main__":
    main()
