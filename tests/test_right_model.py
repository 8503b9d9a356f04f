"""Every model-facing stage on a model that answers right on a share of tasks (tests/right_model.py).

A random model scores 0 everywhere, so scoring that always said 0, answers
paired with the wrong task ids or rewards read from the wrong columns would
pass with it. Here the numbers each stage reports are recounted by
`right_model.short_score` from the completions and the tasks' own targets.
"""
from __future__ import annotations

import contextlib
import io

import pytest

from right_model import recount, red_tasks, short_score
from schemas.profiles import get_profile

SHORT = get_profile("short")
GREEDY = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 32}
pytestmark = pytest.mark.slow  # the session's right_model fixture trains for ~40 s, once


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from builders.store import Store

    store = Store(tmp_path_factory.mktemp("right-data") / "store")
    return {"store": store, "bench": red_tasks(store, "bench", n=16, seed=99, kind="bench", n_locate=12),
            "rl": red_tasks(store, "rl", n=16, seed=7)}


def cli(store, *argv) -> str:
    """The CLI in process; its last stdout line."""
    from polyground.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["--store", str(store.root), *argv]) == 0
    return out.getvalue().strip().splitlines()[-1]


def local(store, model, cache=None):
    from builders.inference.backends import LocalBackend

    return LocalBackend(store, SHORT, str(model), cache=cache, batch_size=16, device="cpu")


def test_local_generation_reads_the_images_and_their_order(data, right_model):
    red = [t for t in data["bench"].table().to_pylist() if t["id"].startswith("red-")]
    texts = [s[0] for s in local(data["store"], right_model).generate(red, 1, GREEDY, 0)]
    got = recount({t["id"]: x for t, x in zip(red, texts)}, red)
    assert got["format_rate"] > 0.9 and got["strict_acc@0.5"] >= 0.9  # right, from the pixels
    # The same tasks with their two images swapped (the target left as it was): the model follows
    # the red image, so the score must fall to about 0; an image-order slip anywhere would look like this.
    swapped = [dict(t, images=t["images"][::-1]) for t in red]
    texts = [s[0] for s in local(data["store"], right_model).generate(swapped, 1, GREEDY, 0)]
    assert recount({t["id"]: x for t, x in zip(red, texts)}, red)["image_acc"] <= 0.1


def test_eval_scores_are_the_recount_of_its_completions(data, right_model, tmp_path):
    import json

    store, bench = data["store"], data["bench"]
    ref = cli(store, "eval", "--bench", bench.ref, "--model", str(right_model), "--profile", "short", "--max-tokens",
              "32", "--batch-size", "16", "--device", "cpu", "--output", str(tmp_path / "ev"))
    preds = {r["id"]: r for r in store.resolve(ref).table().to_pylist()}
    tasks = bench.table().to_pylist()
    assert sorted(preds) == sorted(t["id"] for t in tasks)
    want = recount({i: r["completion"] for i, r in preds.items()}, tasks)
    overall = json.loads((tmp_path / "ev" / "metrics.json").read_text())["overall"]
    for key, value in want.items():
        assert overall[key] == pytest.approx(value, abs=1e-6), key
    assert want["image_acc"] >= 0.6 and 0.4 <= want["strict_acc@0.5"] < 1  # the red_image tasks (16 of 28), not the cells
    for t in tasks:  # each row's own scores belong to its own task
        s, row = short_score(preds[t["id"]]["completion"], t), preds[t["id"]]
        assert (row["format_ok"], row["image_correct"]) == (s["format_ok"], s["image_ok"])
        assert row["iou"] == pytest.approx(s["iou"], abs=1e-6)


@pytest.fixture(scope="module")
def pool(data, right_model):
    """An rl-pool sampled from the right model (k=6, temperature 1): (version, k, sampling)."""
    ref = cli(data["store"], "build", "rl-pool", "--tasks", data["rl"].ref, "--policy", str(right_model),
              "--profile", "short", "--k", "6", "--temperature", "1.0", "--max-tokens", "32", "--batch-size", "16",
              "--device", "cpu", "--name", "pool", "--quiet")
    return data["store"].resolve(ref), 6, {"temperature": 1.0, "top_p": 1.0, "max_tokens": 32}


def test_rl_pool_pass_rates_are_the_recount_of_its_samples(data, right_model, pool):
    from builders.inference.backends import open_cache

    version, k, sampling = pool
    store, tasks = data["store"], data["rl"].table().to_pylist()
    backend = local(store, right_model, cache=open_cache(store))
    samples = backend.generate(tasks, k, sampling, 0)  # the pool's own samples, read back from the cache
    assert backend.stats["cache_hits"] == k * len(tasks) and backend.stats["samples"] == 0
    rates = {t["id"]: sum(short_score(x, t)["iou"] >= 0.5 for x in s) / k for t, s in zip(tasks, samples)}
    kept = {r["id"]: r["pass_rate"] for r in version.table().to_pylist()}
    assert kept and all(0 < p < 1 for p in kept.values())
    assert kept == {i: pytest.approx(p) for i, p in rates.items() if 0 < p < 1}
    dropped = {r["id"]: r["reason"] for r in version.rejects().to_pylist()}
    assert dropped == {i: f"pass_rate={p:.2f} {'below' if p == 0 else 'above'} band"
                       for i, p in rates.items() if p in (0, 1)}
