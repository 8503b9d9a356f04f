"""`build rl-pool` and `eval` through the real endpoint backend under injected faults, and a dead endpoint.

As tests/test_cot_faults.py does for `build cot`: the loopback server
(tests/openai_server.py) injects 429 with Retry-After, 500, stalls past the
client's timeout, bodies cut short and non-JSON bodies; content is a function
of (request, sample), so the rows must equal a run without faults. An
endpoint that dies mid-run opens the breaker: one line, nothing written, and
the rerun asks only for what was not answered.
"""
from __future__ import annotations

import pytest

from openai_server import TRANSPORT_FAULTS, FakeOpenAIServer, Faults
from test_eval import run_cli
from test_rlpool import pool_tasks, scripted

# 20% of attempts fail (4% each kind) after a script of one of each: a request fails for good only
# after 7 failed attempts in a row (about 1e-5 at 20%). 500s carry Retry-After here to keep the test
# short; the client's own backoff is timed in tests/test_client.py.
FAULTS = dict(rate_limit=0.04, server_error=0.04, stall=0.04, truncated_body=0.04, invalid_json=0.04, stall_s=0.5,
              error_retry_after=0.05)
POOL = ["build", "rl-pool", "--tasks", "tasks", "--policy", "URL", "--policy-model", "fake", "--profile", "norm1000",
        "--k", "8", "--name", "pool", "--quiet"]


def pool_argv(url, *extra):
    return [url if a == "URL" else a for a in POOL] + list(extra)


def test_rl_pool_under_transport_faults_equals_the_clean_pool(tmp_path):
    from builders.store import Store

    clean_store, faulty_store = Store(tmp_path / "clean"), Store(tmp_path / "faulty")
    tasks = pool_tasks(clean_store).table().to_pylist()
    pool_tasks(faulty_store)
    with FakeOpenAIServer(scripted(tasks, clean_store)) as s:
        code, out, err = run_cli(clean_store, *pool_argv(s.url))
        assert code == 0, err
        clean = clean_store.resolve(out.strip().splitlines()[-1])
    with FakeOpenAIServer(scripted(tasks, faulty_store), faults=Faults(**FAULTS), seed=3) as s:
        s.script = list(TRANSPORT_FAULTS)  # every kind at least once, then 20% at random
        code, out, err = run_cli(faulty_store, *pool_argv(s.url, "--timeout", "0.25", "--concurrency", "4"))
        assert code == 0, err
        assert all(s.stats[k] >= 1 for k in TRANSPORT_FAULTS)
    got = faulty_store.resolve(out.strip().splitlines()[-1])
    assert got.table().drop(["policy"]).equals(clean.table().drop(["policy"]))  # the policy names the URL
    assert got.rejects().to_pylist() == clean.rejects().to_pylist()
    assert {r["id"]: r["pass_rate"] for r in got.table().to_pylist()} == {"t1": 0.125, "t2": 0.5, "t4": 0.875,
                                                                           "t5": 0.25}
    assert got.manifest["usage"]["retries"] >= len(TRANSPORT_FAULTS)


def dying_after(server_box, answered: int, policy):
    calls = []

    def dying(request, k):
        calls.append(k)
        if len(calls) == answered:  # the next requests all fail (500, Retry-After 0.01 s: the breaker, fast)
            server_box[0].faults.server_error = 1.0
            server_box[0].faults.error_retry_after = 0.01
        return policy(request, k)

    return dying


def test_rl_pool_on_a_dead_endpoint_stops_in_one_line_and_resumes(store):
    tasks = pool_tasks(store).table().to_pylist()
    box = []
    with FakeOpenAIServer(dying_after(box, 3 * 8, scripted(tasks, store))) as s:  # answers 3 tasks (n=8 each), then dies
        box.append(s)
        code, out, err = run_cli(store, *pool_argv(s.url, "--concurrency", "2"))
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
        assert "looks down" in err and "rerun the same command" in err
        assert store.versions("pool") == []
        s.faults.server_error = 0.0
        before = s.stats["samples"]
        code, out, err = run_cli(store, *pool_argv(s.url, "--concurrency", "2"))
        assert code == 0, err
        assert s.stats["samples"] - before == (6 - 3) * 8  # only the tasks that were not answered
    assert sorted(store.resolve("pool").table().column("id").to_pylist()) == ["t1", "t2", "t4", "t5"]


def eval_metrics(store, bench, url, timeout):
    from builders.inference.backends import EndpointBackend, open_cache
    from schemas.profiles import get_profile
    from training.evaluation import run as ev

    profile = get_profile("norm1000")
    backend = EndpointBackend(store, profile, url, "fake", cache=open_cache(store), timeout=timeout, concurrency=4)
    completions = ev.generate_for_bench(store, bench, backend, {"max_tokens": 64}, batch_size=256)
    assert backend.failures == {}
    return ev.evaluate(store, bench, completions, profile, "fake", name="preds", source={"kind": "endpoint"}), backend


def test_eval_under_transport_faults_scores_like_a_clean_run(tmp_path):
    from builders.store import Store
    from openai_server import GroundTruthPolicy
    from schemas.profiles import get_profile
    from store_util import tasks_table, write_version

    stores = [Store(tmp_path / "clean"), Store(tmp_path / "faulty")]
    benches = [write_version(s, "bench", kind="bench", table=tasks_table(s, 12)) for s in stores]
    tasks = benches[0].table().to_pylist()
    policy = GroundTruthPolicy(tasks, render=get_profile("norm1000").render, success=0.5, store=stores[0])
    with FakeOpenAIServer(policy) as s:
        clean, _ = eval_metrics(stores[0], benches[0], s.url, 5.0)
    with FakeOpenAIServer(policy, faults=Faults(**FAULTS), seed=5) as s:
        s.script = list(TRANSPORT_FAULTS)
        got, backend = eval_metrics(stores[1], benches[1], s.url, 0.25)
        assert all(s.stats[k] >= 1 for k in TRANSPORT_FAULTS)
    assert backend.usage()["retries"] >= len(TRANSPORT_FAULTS)
    assert 0 < got["overall"]["strict_acc@0.5"] < 1
    assert got["overall"] == clean["overall"] and got["predictions"] == clean["predictions"]


def test_eval_on_a_dead_endpoint_stops_in_one_line_and_resumes(store, tmp_path):
    from openai_server import GroundTruthPolicy
    from schemas.profiles import get_profile
    from store_util import tasks_table, write_version

    bench = write_version(store, "bench", kind="bench", table=tasks_table(store, 10))
    policy = GroundTruthPolicy(bench.table().to_pylist(), render=get_profile("norm1000").render, store=store)
    box = []
    argv = ["eval", "--bench", "bench", "--endpoint", "URL", "--endpoint-model", "fake", "--profile", "norm1000",
            "--concurrency", "2", "--name", "preds", "--output", str(tmp_path / "report")]
    with FakeOpenAIServer(dying_after(box, 4, policy)) as s:
        box.append(s)
        argv[argv.index("URL")] = s.url
        code, out, err = run_cli(store, *argv)
        assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "looks down" in err
        assert store.versions("preds") == [] and not (tmp_path / "report" / "metrics.json").exists()
        s.faults.server_error = 0.0
        before = s.stats["samples"]
        code, out, err = run_cli(store, *argv)
        assert code == 0, err
        assert s.stats["samples"] - before == 10 - 4
    assert store.resolve("preds").table().num_rows == 10


@pytest.mark.parametrize("status", [401, 404])
def test_eval_endpoint_refusing_every_request_is_one_line(store, tmp_path, status):
    from store_util import tasks_table, write_version

    write_version(store, "bench", kind="bench", table=tasks_table(store, 2))
    with FakeOpenAIServer() as s:
        s.fixed_status = status
        code, out, err = run_cli(store, "eval", "--bench", "bench", "--endpoint", s.url, "--endpoint-model", "fake",
                                 "--profile", "norm1000", "--output", str(tmp_path / "r"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and str(status) in err


def test_eval_timeout_flag_reaches_the_client(store, tmp_path):
    """`eval --timeout`: an answer slower than it is given up on and asked again (one retry)."""
    import time

    from openai_server import GroundTruthPolicy
    from schemas.profiles import get_profile
    from store_util import tasks_table, write_version

    bench = write_version(store, "bench", kind="bench", table=tasks_table(store, 1))
    policy = GroundTruthPolicy(bench.table().to_pylist(), render=get_profile("norm1000").render, store=store)
    calls = []

    def slow_first(request, k):
        calls.append(k)
        if len(calls) == 1:
            time.sleep(3.0)  # past --timeout 1: the client has given up on this attempt
        return policy(request, k)

    with FakeOpenAIServer(slow_first) as s:
        code, out, err = run_cli(store, "eval", "--bench", "bench", "--endpoint", s.url, "--endpoint-model", "fake",
                                 "--profile", "norm1000", "--timeout", "1", "--name", "preds",
                                 "--output", str(tmp_path / "r"))
    assert code == 0, err
    # At least one: a loaded machine may be slow on a later attempt too; without the flag, none.
    assert store.resolve("preds").manifest["usage"].get("retries", 0) >= 1
