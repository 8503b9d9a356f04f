"""SIGKILL inside the store write of every building command, then a rerun: the same rows as a clean run.

Each child is the real CLI (`python -m polyground`) run with
POLYGROUND_TEST_PAUSE_IN_WRITE=FILE: the store writer writes FILE after
data.arrow and stops there for good, answering a probe (builders/store/__init__.py).
The test waits for FILE, writes a fresh nonce to FILE.probe, waits for the
child to copy it to FILE.ack (only a child waiting inside the write can),
checks it is still alive with no version visible, kills it there, and checks that
- the kill landed: exit -SIGKILL, a temp folder holding data.arrow exists;
- no version of that name is visible (nothing half-written can be read);
- a rerun (in process) gives the same rows and the same id as an uninterrupted
  run on another store, and asks the endpoint nothing it already answered.
A marker, not a sleep: a child that finished or died early fails the test.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from openai_server import FakeOpenAIServer, GroundTruthPolicy
from schemas.profiles import get_profile
from test_cot import make_tasks, ok, task_rows, teacher

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # one CLI subprocess per case (~3-5 s of imports each)


def kill_inside_write(root: Path, name: str, argv: list[str]) -> None:
    from builders.store import Store

    marker = root.parent / f"paused-{name}"
    env = dict(os.environ, PYTHONPATH=str(REPO), POLYGROUND_TEST_PAUSE_IN_WRITE=str(marker))
    proc = subprocess.Popen([sys.executable, "-m", "polyground", "--store", str(root), *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    probe, ack = Path(f"{marker}.probe"), Path(f"{marker}.ack")
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"the child ended before the write: {proc.stderr.read()[-500:]}"
            assert time.monotonic() < deadline, "the child never reached the write"
            time.sleep(0.02)
        nonce = os.urandom(8).hex()  # written after the marker: an answer can only come from a waiting child
        Path(f"{probe}.part").write_text(nonce)
        Path(f"{probe}.part").replace(probe)
        while not ack.exists():
            assert proc.poll() is None, "the child left the write instead of waiting in it"
            assert time.monotonic() < deadline, "the child never answered the probe from inside the write"
            time.sleep(0.02)
        assert ack.read_text() == nonce
        assert proc.poll() is None  # alive, and it never leaves the pause
        assert Store(root).versions(name) == []  # nothing visible while it waits
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    temps = list((root / "datasets" / name).glob(".tmp-*"))
    assert any((t / "data.arrow").is_file() for t in temps), "no half-written version: the kill missed the write"
    assert Store(root).versions(name) == []
    with pytest.raises(Exception, match="no dataset named"):
        Store(root).resolve(name)


def same_version(a_root: Path, a_ref: str, b_root: Path, b_ref: str) -> None:
    from builders.store import Store

    a, b = Store(a_root).resolve(a_ref), Store(b_root).resolve(b_ref)
    assert a.id == b.id and a.table().equals(b.table()) and a.rejects().equals(b.rejects())
    assert Store(b_root).verify(b) == []
    assert not list(b.path.parent.glob(".tmp-*"))  # the killed build's folder was cleaned


def test_build_tasks(tmp_path):
    argv = ["build", "tasks", "--source", "synthetic", "--family", "mixed", "--n", "12", "--seed", "3",
            "--name", "syn", "--quiet"]
    clean = ok(tmp_path / "clean", *argv)
    kill_inside_write(tmp_path / "crash", "syn", argv)
    same_version(tmp_path / "clean", clean, tmp_path / "crash", ok(tmp_path / "crash", *argv))


def test_data_merge(tmp_path):
    def shards(root):
        a = make_tasks(root, n=4, seed=1, name="a")
        b = make_tasks(root, n=4, seed=2, name="b")
        return ["data", "merge", a, b, "--name", "merged"]

    clean_root, crash_root = tmp_path / "clean", tmp_path / "crash"
    clean = ok(clean_root, *shards(clean_root))
    argv = shards(crash_root)
    kill_inside_write(crash_root, "merged", argv)
    same_version(clean_root, clean, crash_root, ok(crash_root, *argv))


def endpoint_case(tmp_path, name: str, argv_for, kind: str = "tasks", n: int = 6):
    """Clean run, killed run, rerun against one loopback server; the rerun asks nothing."""
    from builders.store import Store

    clean_root, crash_root = tmp_path / "clean", tmp_path / "crash"
    for root in (clean_root, crash_root):
        make_tasks(root, n=n, kind=kind)
    tasks = task_rows(clean_root)
    render = get_profile("norm1000").render
    with FakeOpenAIServer(GroundTruthPolicy(tasks, render=render, success=0.5, store=Store(clean_root))) as s:
        clean = ok(clean_root, *argv_for(clean_root, s.url))
        asked_clean = s.stats["requests"]
        kill_inside_write(crash_root, name, argv_for(crash_root, s.url))
        asked = s.stats["requests"]
        assert asked - asked_clean == asked_clean  # the killed run asked everything before writing
        again = ok(crash_root, *argv_for(crash_root, s.url))
        assert s.stats["requests"] == asked  # every answer came from the killed run's cache
    same_version(clean_root, clean, crash_root, again)


def test_build_cot(tmp_path):
    endpoint_case(tmp_path, "cot", lambda root, url: teacher(root, url, "cot", "--samples", "2"))


def test_build_rl_pool(tmp_path):
    endpoint_case(tmp_path, "pool", lambda root, url: [
        "build", "rl-pool", "--tasks", "syn", "--policy", url, "--policy-model", "fake", "--profile", "norm1000",
        "--k", "4", "--band", "[0,1]", "--name", "pool", "--quiet"])


def test_eval(tmp_path):
    endpoint_case(tmp_path, "preds", lambda root, url: [
        "eval", "--bench", "syn", "--endpoint", url, "--endpoint-model", "fake", "--profile", "norm1000",
        "--name", "preds", "--output", str(root.parent / f"report-{root.name}")], kind="bench")
