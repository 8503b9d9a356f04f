"""MGrounding reader at growing input sizes: rows/s and peak memory stay flat.

Builds MGrounding-style JSON lists by repeating the conversations of the
fixture tests/fixtures/mgrounding/MGrounding-630k.json (new ids, same
images) up to 1x, 10x and 100x a base size (`--base` conversations), then
for each file measures:
- rows/s of `read_mgrounding` (untraced run),
- its peak Python heap (tracemalloc, a second run),
- the peak of `json.load` on the same file, for contrast (what a
  non-streaming reader would hold), unless `--no-compare`,
- with `--ingest`: rows/s of the full ingest into a temporary store
  (images decoded and stored once; ingest keeps its output rows in memory,
  so its peak grows with the output, not with the reader).

Run: `.venv/bin/python bench/ingest_bench.py [--base 1000] [--scales 1,10,100]`.

Measured here in one run (2 cores shared with a test run, Python 3.11, --ingest):
    scale   MB    rows  rows/s  stream peak MB  json.load peak MB  ingest rows/s  ingest peak B/row
       1x  0.6    1167   20386            0.34                2.3           5502               1991
      10x  5.7   11667   20878            1.04               22.8          11849               1461
     100x 57.6  116667   20180            1.05              228.2          10092               1400
The step from 0.34 to 1.04 MB is a one-off (pathlib's interned-name table
growing); from 10x to 100x the reader's peak does not move, while json.load
grows with the file. Ingest's own peak is about 1.4 KB of Python heap per
kept row (the rows it returns), so all 630k rows would need roughly 0.9 GB
(an extrapolation, not a run).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from builders.sources.mgrounding import read_mgrounding  # noqa: E402

FIXTURE = REPO / "tests" / "fixtures" / "mgrounding"


def write_scaled(folder: Path, conversations: int) -> Path:
    """An MGrounding-630k.json of `conversations` items next to the fixture's images."""
    seed = json.loads((FIXTURE / "MGrounding-630k.json").read_text())
    path = folder / f"MGrounding-{conversations}.json"
    with open(path, "w", encoding="utf-8") as f:  # written item by item: the bench stays small too
        f.write("[\n")
        for i in range(conversations):
            item = dict(seed[i % len(seed)], id=f"{seed[i % len(seed)]['id']}-{i}")
            f.write((",\n" if i else "") + json.dumps(item))
        f.write("\n]\n")
    return path


def measure(fn) -> tuple[object, float, int]:
    """(result, seconds untraced, peak traced bytes) of fn()."""
    t0 = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - t0
    tracemalloc.start()
    try:
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, seconds, peak


def ingest_figures(path: Path) -> tuple[float, float]:
    """(rows/s, peak traced bytes per kept row) of the full ingest (reader + image checks +
    store) into a temp store: ingest holds its output rows, so its peak grows with them."""
    from builders.sources.ingest import ingest
    from builders.store import Store

    def run() -> int:
        with tempfile.TemporaryDirectory() as tmp:
            records, _ = ingest(read_mgrounding(path), Store(Path(tmp)), progress=False, root=path.parent)
            return len(records)

    rows, seconds, peak = measure(run)
    return rows / seconds, peak / rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", type=int, default=1000, help="conversations at scale 1x")
    ap.add_argument("--scales", default="1,10,100", help="comma-separated multiples of --base")
    ap.add_argument("--no-compare", action="store_true", help="skip the json.load contrast")
    ap.add_argument("--ingest", action="store_true", help="also time the full ingest")
    args = ap.parse_args(argv)
    scales = [int(s) for s in args.scales.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        # The fixture's image folder beside the scaled files, as in the real layout.
        shutil.copytree(FIXTURE / "MGrounding-630k", Path(tmp) / "MGrounding-630k")
        paths = {s: write_scaled(Path(tmp), args.base * s) for s in scales}
        # The reader first, at every scale, before json.load or ingest allocate
        # anything (their leftovers, e.g. grown interpreter tables, would be
        # charged to the next measurement).
        lines = {}
        for s, path in paths.items():
            rows, seconds, peak = measure(lambda: sum(1 for _ in read_mgrounding(path)))
            lines[s] = (f"{s:>5}x {path.stat().st_size / 1e6:7.1f} {rows:8d} "
                        f"{rows / seconds:9.0f} {peak / 1e6:15.2f}")
        header = f"{'scale':>6} {'MB':>7} {'rows':>8} {'rows/s':>9} {'stream peak MB':>15}"
        if not args.no_compare:
            header += f" {'json.load peak MB':>18}"
            for s, path in paths.items():
                lines[s] += f" {measure(lambda: len(json.loads(path.read_text())))[2] / 1e6:18.1f}"
        if args.ingest:
            header += f" {'ingest rows/s':>14} {'ingest peak B/row':>18}"
            for s, path in paths.items():
                rate, per_row = ingest_figures(path)
                lines[s] += f" {rate:14.0f} {per_row:18.0f}"
        print(header)
        print("\n".join(lines[s] for s in scales))


if __name__ == "__main__":
    main()
