"""Held-out Acc@0.5 after SFT, after GRPO and after the equal-time SFT control, over several seeds.

    python bench/learning_bench.py [--seeds 0 1 2] [--out bench-out/learning]

Runs the demo loop (polyground.demo) once per seed, about 9 minutes each on
2 CPU cores, and prints every seed's figures and the mean and spread, so the
learning claim is a measured distribution rather than one run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    from polyground.demo import DemoConfig, run_demo

    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default="bench-out/learning")
    args = ap.parse_args()
    rows = []
    for seed in args.seeds:
        out = Path(args.out) / f"seed{seed}"
        run_demo(DemoConfig(seed=seed), out)
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append({k: 100 * m["strict_acc@0.5"] for k, m in metrics.items()})
    print("\nheld-out Acc@0.5 (strict, %); chance 12.5")
    labels = list(rows[0])
    print("seed  " + "  ".join(f"{k:>8}" for k in labels) + "  grpo-control")
    for seed, r in zip(args.seeds, rows):
        print(f"{seed:>4}  " + "  ".join(f"{r[k]:8.1f}" for k in labels) + f"  {r['grpo'] - r['control']:+12.1f}")
    for k in labels + ["grpo-control"]:
        vals = [r["grpo"] - r["control"] if k == "grpo-control" else r[k] for r in rows]
        spread = statistics.stdev(vals) if len(vals) > 1 else 0.0
        print(f"{k:>12}: mean {statistics.mean(vals):6.1f}  sd {spread:5.1f}  min {min(vals):6.1f}  max {max(vals):6.1f}")


if __name__ == "__main__":
    main()
