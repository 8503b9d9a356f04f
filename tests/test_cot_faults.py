"""`build cot` under faults: 20% injected faults, SIGKILL then rerun, an endpoint that goes down.

The server is the real loopback one (tests/openai_server.py); the build uses
the real openai client. Content faults are a function of (request, sample), so
two runs over the same tasks must give the same rows whatever the transport
faults and crashes did in between.
"""
from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from builders.store import Store
from openai_server import TRANSPORT_FAULTS, FakeOpenAIServer, Faults, GroundTruthPolicy
from test_cot import GATE_REASONS, cli, make_tasks, ok, task_rows, teacher, version

REPO = Path(__file__).resolve().parents[1]


def cached_samples(root: Path) -> int:
    path = root / "cache" / "responses.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path, timeout=30) as db:
        try:
            return db.execute("SELECT COUNT(*) FROM samples").fetchone()[0]
        except sqlite3.OperationalError:  # the table is not made yet
            return 0


def accounted(root: Path, ref: str, tasks: list[dict], k: int) -> None:
    """Every sample is kept or rejected with a gate reason, or its task failed as a whole; once."""
    v = version(root, ref)
    rows, rejects = v.table().to_pylist(), v.rejects().to_pylist()
    failed = {r["id"] for r in rejects if r["reason"] == "request_failed"}
    ids = [r["id"] for r in rows] + [r["id"] for r in rejects if r["reason"] != "request_failed"]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(f"{t['id']}#{i}" for t in tasks if t["id"] not in failed for i in range(k))
    assert {r["reason"] for r in rejects} <= GATE_REASONS | {"request_failed"}


def test_twenty_percent_faults_every_task_accounted_for(tmp_path):
    root = tmp_path / "s"
    make_tasks(root, n=30)
    tasks = task_rows(root)
    faults = Faults.spread(0.2, stall_s=0.6)
    with FakeOpenAIServer(GroundTruthPolicy(tasks, store=Store(root), success=0.6), faults=faults, seed=7) as s:
        s.script = list(TRANSPORT_FAULTS)  # each kind at least once, then 20% at random
        ref = ok(root, *teacher(root, s.url, "cot", "--samples", "3", "--timeout", "0.3", "--concurrency", "8"))
    accounted(root, ref, tasks, 3)
    assert all(s.stats[k] for k in TRANSPORT_FAULTS)
    assert version(root, ref).manifest["run"]["retries"] >= len(TRANSPORT_FAULTS)
    assert version(root, ref).manifest["counts"]["rows"] > 0


def test_sigkill_then_rerun_gives_the_clean_rows_and_asks_nothing_twice(tmp_path):
    clean_root, crash_root = tmp_path / "clean", tmp_path / "crash"
    for root in (clean_root, crash_root):
        make_tasks(root, n=40)
    tasks = task_rows(clean_root)
    policy = GroundTruthPolicy(tasks, store=Store(root), success=0.6)
    faults = Faults(server_error=0.05, rate_limit=0.05, wrong_answer=0.1, length=0.05, refusal=0.05)
    argv = ["--samples", "2", "--concurrency", "2"]
    with FakeOpenAIServer(policy, faults=faults, latency=0.1, seed=1) as s:
        clean = ok(clean_root, *teacher(clean_root, s.url, "cot", *argv))
        cmd = [sys.executable, "-m", "polyground", "--store", str(crash_root),
               *teacher(crash_root, s.url, "cot", *argv)]
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=dict(os.environ, PYTHONPATH=str(REPO)))
        deadline = time.monotonic() + 60
        while cached_samples(crash_root) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 1.0))  # a random moment of the run
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL, "the build ended before it could be killed"
        assert not [p for p in (crash_root / "datasets").glob("cot/*") if not p.name.startswith(".")]
        s.wait_idle()  # requests in flight at the kill are answered into closed sockets
        cached = cached_samples(crash_root)
        served_before = s.stats["samples"]
        again = ok(crash_root, *teacher(crash_root, s.url, "cot", *argv))
        served_after = s.stats["samples"] - served_before
    assert 0 < cached < 80
    assert served_after == 80 - cached  # no cached answer was asked for again
    a, b = version(clean_root, clean), version(crash_root, again)
    assert b.table().equals(a.table()) and b.rejects().equals(a.rejects())
    assert a.id == b.id


def test_endpoint_down_stops_with_one_line_and_resumes_from_the_cache(tmp_path):
    root = tmp_path / "s"
    make_tasks(root, n=24)
    tasks = task_rows(root)
    truth = GroundTruthPolicy(tasks, store=Store(root))
    calls = []

    def dying(request, k):  # answers 10 samples, then the endpoint starts failing
        calls.append(k)
        if len(calls) == 10:
            server.faults.server_error = 1.0
        return truth(request, k)

    with FakeOpenAIServer(dying) as server:
        argv = teacher(root, server.url, "cot", "--concurrency", "1", "--samples", "1", "--breaker-after", "3")
        code, out, err = cli(root, *argv)
        assert code == 2 and "looks down" in err and "rerun the same command" in err
        assert len(err.strip().splitlines()) == 1 and out == ""
        assert not (root / "datasets" / "cot").exists() or not any(
            p for p in (root / "datasets" / "cot").iterdir() if not p.name.startswith("."))
        assert cached_samples(root) == 10
        server.faults.server_error = 0.0
        served = server.stats["samples"]
        ref = ok(root, *argv)
        assert server.stats["samples"] - served == 24 - 10
    assert version(root, ref).manifest["counts"]["rows"] == 24
