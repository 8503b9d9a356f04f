"""Rejection sampling: exact pass rates from a scripted endpoint, the band, resume, the tiny local model."""
from __future__ import annotations

import pyarrow as pa
import pytest

from schemas import rows
from schemas.errors import UserError
from store_util import tasks_table, write_version
from test_eval import run_cli

# passing samples out of k=8 per task -> pass rates 0, .125, .5, 1, .875, .25
PASSES = {"t0": 0, "t1": 1, "t2": 4, "t3": 8, "t4": 7, "t5": 2}


def pool_tasks(store, n: int = 6):
    """n grounding tasks (store_util) plus one multiple-choice task."""
    table = tasks_table(store, n)
    mc = dict(table.slice(0, 1).to_pylist()[0], id="mc0", target_image=None, target_box=None,
              choices=["yes", "no"], answer="A")
    return write_version(store, "tasks", table=pa.concat_tables([table, rows.to_table([mc], "tasks")]))


def scripted(tasks, store=None):
    """The loopback server's policy: sample i of task t is right iff i < PASSES[t]."""
    from openai_server import GroundTruthPolicy

    class Scripted(GroundTruthPolicy):
        def __call__(self, request, sample_index):
            task = self.find(request)
            return self.answer(task, sample_index, right=sample_index < PASSES[task["id"]])

    return Scripted(tasks, store=store)


@pytest.fixture
def server(store):
    from openai_server import FakeOpenAIServer

    version = pool_tasks(store)
    with FakeOpenAIServer(scripted(version.table().to_pylist(), store)) as srv:
        srv.tasks_version = version
        yield srv


def endpoint_backend(store, url):
    from builders.inference.backends import EndpointBackend, open_cache
    from schemas.profiles import get_profile

    return EndpointBackend(store, get_profile("norm1000"), url, "fake", cache=open_cache(store), concurrency=4)


def test_endpoint_pass_rates_kept_set_and_rejects(store, server):
    from builders.rlpool import RLPoolConfig, build_rl_pool

    result = build_rl_pool(store, server.tasks_version, endpoint_backend(store, server.url),
                           RLPoolConfig(k=8, chunk=4), "pool", progress=False)
    pool = {r["id"]: r for r in result.version.table().to_pylist()}
    assert sorted(pool) == ["t1", "t2", "t4", "t5"]
    assert {t: r["pass_rate"] for t, r in pool.items()} == {"t1": 0.125, "t2": 0.5, "t4": 0.875, "t5": 0.25}
    assert {t: r["difficulty"] for t, r in pool.items()} == {"t1": "hard", "t2": "medium", "t4": "easy", "t5": "hard"}
    assert all(r["k"] == 8 and r["max_iou"] > 0.99 for r in pool.values())
    assert pool["t2"]["mean_iou"] == pytest.approx(0.5, abs=0.01)  # 4 right (IoU ~1), 4 wrong (IoU 0)
    assert {r["policy"] for r in pool.values()} == {f"endpoint:fake@{server.url}"}
    reasons = {r["id"]: r["reason"] for r in result.version.rejects().to_pylist()}
    assert reasons == {"t0": "pass_rate=0.00 below band", "t3": "pass_rate=1.00 above band", "mc0": "no_box_target"}
    m = result.version.manifest
    assert m["config"]["policy"] == f"endpoint:fake@{server.url}" and m["config"]["band"] == "(0,1)"
    assert m["pass_rates"] == {"0.00": 1, "0.12": 1, "0.25": 1, "0.50": 1, "0.88": 1, "1.00": 1}
    assert m["samples"]["passed"] == sum(PASSES.values())
    assert server.stats["requests"] == 6  # one request per grounding task, n=8 each


def test_rerun_is_cached_and_emits_sft(store, server):
    from builders.rlpool import RLPoolConfig, build_rl_pool

    config = RLPoolConfig(k=8)
    first = build_rl_pool(store, "tasks", endpoint_backend(store, server.url), config, "pool", progress=False)
    asked = server.stats["requests"]
    again = build_rl_pool(store, "tasks", endpoint_backend(store, server.url), config, "pool", emit_sft="rs-sft",
                          progress=False)
    assert server.stats["requests"] == asked  # every sample came from the cache
    assert again.version.ref == first.version.ref
    sft = {r["task_id"]: r for r in again.sft_version.table().to_pylist()}
    assert again.sft_version.kind == "cot" and sorted(sft) == ["t1", "t2", "t3", "t4", "t5"]  # t0 never passed
    assert all(r["image_correct"] and r["iou"] > 0.99 and r["sample_index"] == 0 for r in sft.values())
    assert sft["t2"]["id"] == "t2#0" and sft["t2"]["generator_kind"] == "endpoint"
    assert sft["t2"]["completion"].startswith("<think>") and sft["t2"]["reasoning"]


def test_other_bands(store, server):
    from builders.rlpool import RLPoolConfig, build_rl_pool

    def kept(band):
        r = build_rl_pool(store, "tasks", endpoint_backend(store, server.url), RLPoolConfig(band=band),
                          f"pool-{len(band)}", progress=False)
        return sorted(r.version.table().column("id").to_pylist())

    assert kept("[0,1)") == ["t0", "t1", "t2", "t4", "t5"]
    assert kept("0.2,0.5") == ["t2", "t5"]
    assert kept("(0.25,0.875]") == ["t2", "t4"]


@pytest.mark.parametrize("text,expected", [
    ("(0,1)", (0.0, 1.0, True, True)), ("[0,1)", (0.0, 1.0, False, True)), ("0.1, 0.9", (0.1, 0.9, False, False)),
    ("[0.5,0.5]", (0.5, 0.5, False, False)),
])
def test_band_parse(text, expected):
    from builders.rlpool import Band

    b = Band.parse(text)
    assert (b.lo, b.hi, b.lo_open, b.hi_open) == expected


@pytest.mark.parametrize("text", ["(0,1", "1,0", "(0.5,0.5)", "0,2", "a,b", "0.1.2,1"])
def test_band_parse_rejects(text):
    from builders.rlpool import Band

    with pytest.raises(UserError, match="--band"):
        Band.parse(text)


def test_band_sides():
    from builders.rlpool import Band

    b = Band.parse("(0,1)")
    assert [b.side(p) for p in (0.0, 0.01, 0.99, 1.0)] == ["below", None, None, "above"]


class StubBackend:
    """A backend whose requests for some tasks failed (retries spent)."""

    kind, identity, model_name = "endpoint", "endpoint:stub@http://x", "stub"

    def __init__(self, profile, answers):
        self.profile, self.answers, self.failures = profile, answers, {}

    def generate(self, tasks, k, sampling, seed):
        out = []
        for t in tasks:
            if t["id"] in self.answers:
                out.append([self.answers[t["id"]]] * k)
            else:
                self.failures[t["id"]] = "http_500: HTTP 500 (after 7 attempts)"
                out.append([])
        return out

    def describe(self):
        return {"kind": self.kind, "identity": self.identity}

    def usage(self):
        return {}


def test_failed_requests_are_rejected_not_scored(store):
    from builders.rlpool import RLPoolConfig, build_rl_pool
    from schemas.profiles import get_profile

    version = pool_tasks(store, 2)
    p = get_profile("norm1000")
    good = p.render("x", 0, [0.1, 0.2, 0.5, 0.6], [(32, 24), (33, 24)])
    result = build_rl_pool(store, version, StubBackend(p, {"t0": good}), RLPoolConfig(k=2, band="[0,1]"), "pool",
                           progress=False)
    assert result.version.table().column("id").to_pylist() == ["t0"]
    reasons = {r["id"]: (r["reason"], r["detail"]) for r in result.version.rejects().to_pylist()}
    assert reasons["t1"] == ("generation_failed", "http_500: HTTP 500 (after 7 attempts)")


def test_bench_split_is_refused(store):
    from builders.rlpool import RLPoolConfig, build_rl_pool

    write_version(store, "mig", kind="bench")
    with pytest.raises(UserError, match="benchmark split"):
        build_rl_pool(store, "mig", StubBackend(None, {}), RLPoolConfig(), "pool", progress=False)


def test_cli_endpoint(store, server, tmp_path):
    cfg = tmp_path / "pool.yaml"
    cfg.write_text("k: 8\nmin_iou: 0.5\n")
    code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "tasks", "--policy", server.url, "--policy-model",
                             "fake", "--profile", "norm1000", "--emit-sft", "rs", "--name", "pool", "--config", str(cfg))
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[-1].startswith("pool@") and lines[0].startswith("rs@")
    assert store.resolve(lines[-1]).table().num_rows == 4 and store.resolve(lines[0]).table().num_rows == 5
    assert "rl-pool: 7/7 tasks" in err  # the progress line
    code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "tasks", "--policy", server.url, "--policy-model",
                             "fake", "--profile", "norm1000", "--name", "pool", "--config", str(cfg), "--quiet")
    assert code == 0, err
    assert "rl-pool: 7/7" not in err and out.strip().splitlines()[-1].startswith("pool@")
    code, out, err = run_cli(store, "build", "rl-pool", "--tasks", "tasks", "--policy", server.url,
                             "--profile", "norm1000", "--name", "pool")
    assert code == 2 and "--policy-model" in err


@pytest.mark.slow
def test_tiny_local_model_end_to_end(store, tiny_model):
    """A random model never answers right: the default band keeps nothing (a clear error,
    nothing written); [0,1] keeps every task at pass rate 0 (the demo's fallback)."""
    version = write_version(store, "tasks", table=tasks_table(store, 3))
    args = ["build", "rl-pool", "--tasks", "tasks", "--policy", str(tiny_model), "--profile", "short", "--k", "2",
            "--max-tokens", "8", "--batch-size", "2", "--device", "cpu", "--name", "pool"]
    code, out, err = run_cli(store, *args)
    assert code == 2 and out == ""
    assert err.strip().splitlines()[-1].startswith("error: no task in band (0,1): 3 tasks, pass rates {0.00: 3};")
    assert not [v for v in store.versions() if v.name == "pool"]
    code, out, err = run_cli(store, *args, "--band", "[0,1]")
    assert code == 0, err
    pool = store.resolve(out.strip().splitlines()[-1])
    t = pool.table().to_pylist()
    assert [r["id"] for r in t] == ["t0", "t1", "t2"] and {r["pass_rate"] for r in t} == {0.0}
    assert {r["difficulty"] for r in t} == {"hard"} and t[0]["policy"].startswith("local:model:sha256:")
    assert pool.manifest["policy"]["kind"] == "local" and pool.manifest["usage"]["cache_hits"] == 6
    assert pool.manifest["config"]["k"] == 2 and pool.manifest["config"]["profile"] == "short"


def test_rl_pool_flags_parse_into_its_config():
    """RLPoolConfig's flags (tests/test_build_configs.py checks every build config's flags against
    its fields, their defaults, unknown options and bad values): the band is normalised."""
    import argparse

    from builders.rlpool import RLPoolConfig
    from polyground.cli import add_config_flags, config_from_args

    p = argparse.ArgumentParser()
    add_config_flags(p, RLPoolConfig)
    got = config_from_args(RLPoolConfig, p.parse_args(["--k", "4", "--min-iou", "0.7", "--band", "[0, 1)"]))
    assert (got.k, got.min_iou, got.band) == (4, 0.7, "[0,1)")
    helps = {a.dest: a.help for a in p._actions if a.dest != "help"}
    assert helps["k"] == "samples per task (default 8)"
