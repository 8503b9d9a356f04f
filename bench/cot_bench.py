"""Throughput of the teacher path of `build cot` against the loopback server.

N synthetic tasks (two 56 px images each) go through exactly what
`builders.cot.build_teacher` sends: lazy image parts read from a store, the
response cache in that store, `EndpointClient.generate_all` at concurrency C.
The server (tests/openai_server.py, a separate process, one thread per
connection) sleeps L seconds per request, so the ideal wall time is N*L/C.

Prints the wall time, wall / (N*L/C) (target <= 1.10 at N=2000, L=50 ms,
C=64) and the client's CPU time per request (this process only: the server
runs elsewhere). Then the floor under that figure: the same request body
sent 1,000 times through the openai SDK's low-level `post` alone (no cache,
no images to read) and through bare aiohttp (no SDK), CPU per request each.
Then the gate: the time to verify and rewrite N*K samples.

    python bench/cot_bench.py [--n 2000] [--latency 0.05] [--concurrency 64] [--samples 1]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_tasks(store, n: int) -> list[dict]:
    from builders.sources.ingest import ingest
    from builders.sources.synthetic import read_synthetic

    records, _ = ingest(read_synthetic(None, n=n, seed=0, family="locate_red"), store, progress=False)
    return records


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_server.py"), "--latency", str(latency)],
                            stdout=subprocess.PIPE, text=True)
    return proc, proc.stdout.readline().strip()


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of another process so far; nan where /proc is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def transport_floor(url: str, payload: bytes, n: int, concurrency: int) -> dict[str, float]:
    """Client CPU ms per request for one fixed body: the SDK's `post` path vs bare aiohttp."""
    import aiohttp
    import httpx2

    from builders.inference.endpoint import EndpointClient

    headers = {"Content-Type": "application/json"}

    async def sdk():
        # the very SDK client the builder sends through, without the builder's own work around it
        api = EndpointClient(url, "bench", concurrency=concurrency)._client()
        slots = asyncio.Semaphore(concurrency)

        async def one():
            async with slots:
                raw = await api.post("/chat/completions", cast_to=httpx2.Response, content=payload,
                                     options={"headers": headers})
                json.loads(raw.text)
        await asyncio.gather(*(one() for _ in range(n)))
        await api.close()

    async def bare():
        slots = asyncio.Semaphore(concurrency)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:
            async def one():
                async with slots, session.post(url + "/chat/completions", data=payload, headers=headers) as r:
                    json.loads(await r.text())
            await asyncio.gather(*(one() for _ in range(n)))

    out = {}
    for name, fn in (("openai SDK post", sdk), ("bare aiohttp", bare)):
        cpu0 = time.process_time()
        asyncio.run(fn())
        out[name] = (time.process_time() - cpu0) / n * 1000
    return out


def run(args) -> None:
    import openai  # noqa: F401  (imported before timing: its import is not per-request work)

    from builders.inference.cache import ResponseCache
    from builders.inference.endpoint import EndpointClient, Request
    from builders.cot import CotConfig, gate, load_template, teacher_messages
    from builders.store import Store
    from schemas.profiles import get_profile

    store = Store(tempfile.mkdtemp(prefix="cot-bench-"))
    tasks = make_tasks(store, args.n)
    proc, url = start_server(args.latency)
    try:
        template, teacher_profile = load_template("teacher_v1"), get_profile("norm1000")
        client = EndpointClient(url, "bench", concurrency=args.concurrency, timeout=30,
                                cache=ResponseCache(store.root / "cache" / "responses.sqlite"),
                                image_loader=lambda h: store.image_path(h).read_bytes())
        requests = (Request(teacher_messages(t, template, None, teacher_profile), n=args.samples,
                            sampling={"temperature": 0.7, "max_tokens": 256, "seed": 0}) for t in tasks)
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = asyncio.run(client.generate_all(requests))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = process_cpu(proc.pid)
        first = client._expand(teacher_messages(tasks[0], template, None, teacher_profile))
        payload = json.dumps({"model": "bench", "messages": first, "temperature": 0.7, "max_tokens": 256}).encode()
        floor = transport_floor(url, payload, 1000, args.concurrency)
    finally:
        proc.kill()
    ideal = args.n * args.latency / args.concurrency
    sent = client.stats["requests"]
    print(f"N={args.n} L={args.latency * 1000:g} ms C={args.concurrency}: wall {wall:.2f} s, ideal {ideal:.2f} s, "
          f"wall/ideal {wall / ideal:.3f} (target <= 1.10)")
    print(f"client CPU {cpu:.2f} s = {cpu / max(sent, 1) * 1000:.2f} ms per request ({sent} requests, "
          f"{client.stats['retries']} retries); server CPU {server_cpu / args.n * 1000:.2f} ms per request; "
          f"machine load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("floor, same body x 1000, no cache: " + ", ".join(f"{k} {v:.2f} ms" for k, v in floor.items())
          + f" of client CPU per request; the target needs <= {ideal * 1.10 / args.n * 1000:.2f} ms on one event loop")
    speed = min(timeit.repeat("sum(range(1000))", number=2000, repeat=5)) / 2000 * 1e6
    print(f"python speed here: sum(range(1000)) in {speed:.1f} us: "
          f"CPU figures scale with it")
    cfg = CotConfig(teacher_url=url, teacher_model="bench", samples=args.samples)
    profile = get_profile("qwen2_vl")
    g0 = time.perf_counter()
    for task, samples in zip(tasks, results):
        gate(task, samples, cfg, teacher_profile, profile, {})
    print(f"gate: {(time.perf_counter() - g0) / (args.n * args.samples) * 1e6:.0f} us per sample")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000, help="tasks (one request each)")
    p.add_argument("--latency", type=float, default=0.05, help="server seconds per request")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    p.add_argument("--samples", type=int, default=1, help="samples per request (n)")
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
