"""Throughput of the scoring hot path: vectorised IoU and strict parse+score.

Run: `.venv/bin/python bench/scoring_bench.py [--n 100000] [--seed 0]`.
Builds N mixed completions over every profile (well formed, wrong image,
malformed, adversarial, a few 10 KB garbage ones) in one process, then prints
boxes/s for `iou_many` and completions/s for `score_completion`. Targets:
>= 1M boxes/s and >= 50k completions/s on one core. A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from schemas.boxes import iou, iou_many  # noqa: E402
from schemas.profiles import PROFILES  # noqa: E402
from schemas.scoring import score_completion  # noqa: E402

# Ways a completion goes wrong, applied to a well-formed one; weights are rough
# guesses at an early GRPO batch.
MUTATIONS = [
    (50, lambda c, rng: c),
    (10, lambda c, rng: c.replace("</answer>", "")),  # truncated
    (5, lambda c, rng: c.replace("<think>", "")),
    (5, lambda c, rng: c + c[c.index("<answer>") :]),  # two answers
    (5, lambda c, rng: c.replace("</think>", "</think>\nSo:")),
    (5, lambda c, rng: c.split("<answer>")[0]),  # no answer
    (5, lambda c, rng: c.replace("1", "١")),  # non-ASCII digits
    (5, lambda c, rng: c.replace("<answer>", "<answer>I think ")),
    (1, lambda c, rng: "".join(rng.choices("<>()[],{}:0123456789 abcimage\n", k=10_000))),  # 10 KB garbage
]


def random_box(rng: random.Random) -> list[float]:
    x1, x2 = sorted(rng.random() for _ in range(2))
    y1, y2 = sorted(rng.random() for _ in range(2))
    return [x1, y1, x2 + 1e-3, y2 + 1e-3]


def make_rows(n: int, seed: int) -> list[tuple]:
    """(completion, target_image, equivalent_images, target_box, image_sizes, profile) rows."""
    rng = random.Random(seed)
    profiles = list(PROFILES.values())
    weights = [w for w, _ in MUTATIONS]
    rows = []
    for _ in range(n):
        n_images = rng.randint(2, 6)
        sizes = [(rng.randint(200, 2000), rng.randint(200, 2000)) for _ in range(n_images)]
        target, named = rng.randrange(n_images), rng.randrange(n_images)
        box = random_box(rng)
        profile = rng.choice(profiles)
        reasoning = "The object described is visible in one image; " * rng.randint(1, 6)
        completion = profile.render(reasoning, named, random_box(rng) if rng.random() < 0.7 else box, sizes)
        (mutate,) = rng.choices([m for _, m in MUTATIONS], weights)
        rows.append((mutate(completion, rng), target, [], box, sizes, profile))
    return rows


def _rates(n: int, wall: float, cpu: float) -> tuple[float, float]:
    return n / wall, n / cpu


def bench_iou(n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)

    def boxes():
        x, y = np.sort(rng.random((n, 2)), axis=1), np.sort(rng.random((n, 2)), axis=1)
        return np.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], axis=1)

    a, b = boxes(), boxes()
    iou_many(a[:1000], b[:1000])  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    out = iou_many(a, b)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert all(out[i] == iou(a[i], b[i]) for i in range(0, n, max(1, n // 1000)))
    return _rates(n, wall, cpu)


def bench_scoring(rows: list[tuple]) -> tuple[tuple[float, float], dict]:
    reasons: dict = {}
    wall, cpu = time.perf_counter(), time.process_time()
    for row in rows:
        s = score_completion(*row)
        reasons[s.reason] = reasons.get(s.reason, 0) + 1
    return _rates(len(rows), time.perf_counter() - wall, time.process_time() - cpu), reasons


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="completions to score (and 10x as many box pairs)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    boxes = bench_iou(10 * args.n, args.seed)
    rows = make_rows(args.n, args.seed)
    completions, reasons = bench_scoring(rows)
    # CPU time as well as wall time: on a shared machine other jobs slow the wall clock.
    print(f"iou_many:    {boxes[0]:>12,.0f} boxes/s wall, {boxes[1]:>12,.0f} per CPU second  (target >= 1,000,000)")
    print(f"parse+score: {completions[0]:>12,.0f} completions/s wall, {completions[1]:>9,.0f} per CPU second  (target >= 50,000)")
    print("outcomes:", ", ".join(f"{k or 'ok'}={v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])))


if __name__ == "__main__":
    main()
