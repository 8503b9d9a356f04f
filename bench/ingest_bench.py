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

Measured here (2 shared cores, Python 3.11, --ingest):
    scale   MB    rows  rows/s  stream peak MB  json.load peak MB  ingest rows/s
       1x  0.6    1167    6634            0.34                2.3           1842
      10x  5.7   11667    7019            1.04               22.8           3469
     100x 57.6  116667    6412            1.04              228.2           3082
The step from 0.34 to 1.04 MB is a one-off (pathlib's interned-name table
growing); from 10x to 100x the reader's peak does not move, while json.load
grows with the file.
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


def ingest_rate(path: Path) -> float:
    """Rows/s of the full ingest (reader + image checks + store) into a temp store."""
    from builders.ingest import ingest
    from builders.store import Store

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        records, _ = ingest(read_mgrounding(path), Store(Path(tmp)), progress=False, root=path.parent)
        return len(records) / (time.perf_counter() - t0)


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
            header += f" {'ingest rows/s':>14}"
            for s, path in paths.items():
                lines[s] += f" {ingest_rate(path):14.0f}"
        print(header)
        print("\n".join(lines[s] for s in scales))


if __name__ == "__main__":
    main()
