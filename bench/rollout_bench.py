"""Rollout throughput: samples/s of rejection sampling, endpoint and local backends.

Endpoint: N tasks, k samples each (one request with n=k per task), against the
loopback OpenAI-compatible server (tests/openai_server.py, run as a separate
process so it does not share the client's GIL) with a fixed latency L per
request, at concurrency C. The latency-bound ideal is
    ideal samples/s = N*k / (ceil(N/C) * L)
and the bench prints the measured rate, wall time as a multiple of the ideal,
and CPU per request of the client (this process) and of the server, for
  - `raw client`: builders.inference.endpoint.EndpointClient alone on prebuilt requests;
  - `backend`: EndpointBackend.generate over all N tasks in one call;
  - `rl-pool`: the whole build_rl_pool (chunks, scoring, polars, store write)
    on a fresh cache, then its rerun (every sample from the cache).
Local: samples/s of the tiny random Qwen2.5-VL (LocalBackend, no cache) on CPU
(or CUDA when present), k samples of `--local-tokens` new tokens per task.

Run: `.venv/bin/python bench/rollout_bench.py [--n 1024] [--k 8] [--concurrency 64] [--latency 0.05]`.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def make_tasks(store, n: int):
    """n grounding tasks over 4 tiny stored images (two per task)."""
    from conftest import png_bytes
    from schemas import rows

    hashes = [store.put_image(png_bytes(56, 56, (40 * i, 90, 160))) for i in range(4)]
    imgs = [{"sha256": h, "width": 56, "height": 56} for h in hashes]
    recs = [{"id": f"t{i}", "source": "bench", "task_type": "locate", "images": [imgs[i % 4], imgs[(i + 1) % 4]],
             "question": f"Locate object {i}.", "target_image": 0, "equivalent_images": [],
             "target_box": [0.1, 0.1, 0.5, 0.5], "choices": None, "answer": None, "meta": "{}"} for i in range(n)]
    with store.writer("tasks", "tasks", config={"n": n}) as w:
        w.write(rows.to_table(recs, "tasks"))
    return w.version


def start_server(latency: float):
    proc = subprocess.Popen([sys.executable, str(REPO / "tests" / "openai_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def timed(fn, server_pid: int | None = None):
    """(result, wall s, this process's CPU s, the server's CPU s) of fn()."""
    from cot_bench import process_cpu  # bench/ is on sys.path when run as a script

    s0 = process_cpu(server_pid) if server_pid else 0.0
    c0, t0 = time.process_time(), time.perf_counter()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return result, wall, cpu, (process_cpu(server_pid) - s0) if server_pid else 0.0


def report(label: str, samples: int, requests: int, wall: float, cpu: float, server_cpu: float,
           ideal: float | None) -> None:
    rate = samples / wall
    line = f"{label:<24} {samples:>6} samples {wall:6.2f} s {rate:8.0f} samples/s"
    if ideal:
        line += f"  {ideal / rate:5.2f}x ideal wall"
    if requests:
        line += f"  CPU/request: client {1000 * cpu / requests:.2f} ms, server {1000 * server_cpu / requests:.2f} ms"
    print(line, flush=True)


def raw_client(store, url: str, concurrency: int):
    """The EndpointClient alone: what the backend adds on top of it is prompt building."""
    from builders.inference.endpoint import EndpointClient

    return EndpointClient(url, "bench", concurrency=concurrency, image_loader=lambda h: store.image_path(h).read_bytes())


def bench_endpoint(args, root: Path) -> None:
    from builders.inference.endpoint import Request
    from builders.inference.backends import EndpointBackend, open_cache, user_turn
    from builders.rlpool import RLPoolConfig, build_rl_pool
    from builders.store import Store
    from schemas.profiles import get_profile

    import openai  # noqa: F401 - a one-off ~1 s import, kept out of the first timing

    proc, url = start_server(args.latency)
    try:
        ideal = args.n * args.k / (math.ceil(args.n / args.concurrency) * args.latency)
        print(f"endpoint: N={args.n} tasks, k={args.k}, C={args.concurrency}, L={1000 * args.latency:g} ms -> "
              f"ideal {ideal:.0f} samples/s", flush=True)
        store = Store(root / "store")
        tasks = make_tasks(store, args.n)
        profile = get_profile("norm1000")
        sampling = {"temperature": 1.0, "max_tokens": 64}

        def backend(cache):
            return EndpointBackend(store, profile, url, "bench", cache=cache, concurrency=args.concurrency)

        rows = tasks.table().to_pylist()
        raw = raw_client(store, url, args.concurrency)
        requests = [Request(user_turn(t, profile), n=args.k, sampling={**sampling, "seed": 0}) for t in rows]
        raw_client(store, url, args.concurrency).generate_many(requests[: args.concurrency])  # warm the server
        _, wall, cpu, scpu = timed(lambda: raw.generate_many(requests), proc.pid)
        report("raw client (no cache)", args.n * args.k, raw.stats["requests"], wall, cpu, scpu, ideal)
        b = backend(None)
        _, wall, cpu, scpu = timed(lambda: b.generate(rows, args.k, sampling, 0), proc.pid)
        report("backend (no cache)", args.n * args.k, b.stats["requests"], wall, cpu, scpu, ideal)
        config = RLPoolConfig(k=args.k, band="[0,1]", max_tokens=64, chunk=args.chunk)
        for label in ("rl-pool (fresh cache)", "rl-pool (rerun, cached)"):
            b = backend(open_cache(store))
            _, wall, cpu, scpu = timed(lambda: build_rl_pool(store, tasks, b, config, "pool", progress=False), proc.pid)
            report(label, args.n * args.k, b.stats["requests"], wall, cpu, scpu, ideal if "fresh" in label else None)
    finally:
        proc.terminate()
        proc.wait()


def bench_local(args, root: Path) -> None:
    from builders.inference.backends import LocalBackend
    from builders.store import Store
    from schemas.profiles import get_profile
    from builders.inference.local import pick_device
    from training.models import build_tiny_model

    store = Store(root / "local-store")
    tasks = make_tasks(store, args.local_n).table().to_pylist()
    model = build_tiny_model(root / "tiny", size=args.local_size)
    device = pick_device(None)
    b = LocalBackend(store, get_profile("short"), str(model), cache=None, batch_size=args.local_batch, device=device)
    b.generator  # load outside the timing
    sampling = {"temperature": 1.0, "max_tokens": args.local_tokens}
    _, wall, cpu, _ = timed(lambda: b.generate(tasks, args.k, sampling, 0))
    print(f"local: tiny '{args.local_size}' model on {device}, {args.local_n} tasks x k={args.k}, "
          f"{args.local_tokens} new tokens, {args.local_batch} tasks per generate call", flush=True)
    report("local (no cache)", args.local_n * args.k, 0, wall, cpu, 0.0, None)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1024, help="endpoint tasks")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency", type=float, default=0.05, help="seconds per request at the server")
    p.add_argument("--chunk", type=int, default=1024, help="rl-pool tasks per round")
    p.add_argument("--local-n", type=int, default=16)
    p.add_argument("--local-tokens", type=int, default=32)
    p.add_argument("--local-batch", type=int, default=8)
    p.add_argument("--local-size", default="test", help="tiny model size: test or demo")
    p.add_argument("--skip-local", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bench_endpoint(args, Path(tmp))
        if not args.skip_local:
            bench_local(args, Path(tmp))


if __name__ == "__main__":
    main()
