"""Near-duplicate contamination benchmark: recall on made copies, false matches between distinct images.

Generates `--n` distinct images (photo-like 1/f textures, gradients, blurred
noise, each with 3-14 shapes; and a `sparse` kind: a plain background with one
or two shapes, the hard case), hashes them as a bench split would be
(builders.store.perceptual, every symmetric crop variant), then:

- recall: for `--copies` of them, each transformed copy (JPEG quality change,
  PNG, resize 0.5x / 2x / non-uniform, symmetric crops of 1-8% per side,
  one-sided and uneven crops, combinations) is hashed as a build image would
  be; a copy is caught at threshold t when its distance to its original is
  <= t. Printed per transformation for a few thresholds.
- false matches: every image against every other image's bench hashes (all
  ordered pairs); a pair at distance <= t is a false match. Printed as pairs,
  per pair, the images with any, and the expected false flags per 1,000
  build images against a 6,000-image bench split (MIG-Bench's size).
- timing: ms per image to hash a bench image (all crops) and a build image,
  and to compare one build image with a 6,000-image bench split.

    .venv/bin/python bench/contamination_bench.py [--n 3000] [--copies 300] [--seed 0]
"""
from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

THRESHOLDS = (24, 32, 36, 40, 44, 48, 56)
BENCH_SIZE = 6000


def pink_noise(rng, h: int, w: int, beta: float) -> np.ndarray:
    """(h, w, 3) floats 0-1 with a 1/f^beta power spectrum (natural images sit near beta 2)."""
    fy, fx = np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None, :]
    f = np.hypot(fx, fy)
    f[0, 0] = 1
    spec = (rng.normal(size=(3, *f.shape)) + 1j * rng.normal(size=(3, *f.shape))) / f ** (beta / 2)
    spec[:, 0, 0] = 0
    x = np.fft.irfft2(spec, s=(h, w)).transpose(1, 2, 0)
    x = x @ (np.eye(3) + rng.normal(size=(3, 3)) * 0.4)  # correlated colour channels, as in photos
    return (x - x.min()) / (np.ptp(x) + 1e-9)


def make_image(seed: int) -> tuple[str, bytes]:
    """(kind, JPEG bytes) of one distinct image, 192-512 px a side."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = np.random.default_rng(seed)
    w, h = (int(v) for v in rng.integers(192, 513, 2))
    kind = ("texture", "gradient", "noise", "sparse")[seed % 4]
    small = (max(8, h // 4), max(8, w // 4))  # textures drawn at 1/4 and upsampled: cheaper, same look
    if kind == "texture":
        base = pink_noise(rng, *small, rng.uniform(1.6, 2.6))
    elif kind == "gradient":
        yy, xx = np.mgrid[0:1:small[0] * 1j, 0:1:small[1] * 1j]
        base = xx[..., None] * rng.uniform(-1, 1, 3) + yy[..., None] * rng.uniform(-1, 1, 3)
        base = 0.75 * (base - base.min()) / (np.ptp(base) + 1e-9) + 0.25 * pink_noise(rng, *small, 2.0)
    elif kind == "noise":
        base = rng.random((*small, 3))
    else:
        base = np.ones((*small, 3)) * rng.random(3)
    img = Image.fromarray((base * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 3) if kind == "sparse" else rng.integers(3, 15))):
        x0, y0 = rng.uniform(-0.1, 1, 2) * (w, h)
        x1, y1 = (x0, y0) + rng.uniform(0.05, 0.5, 2) * (w, h)
        fill = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = rng.integers(3)
        if shape == 0:
            draw.ellipse([x0, y0, x1, y1], fill=fill)
        elif shape == 1:
            draw.rectangle([x0, y0, x1, y1], fill=fill)
        else:
            draw.polygon([tuple(rng.uniform(0, 1, 2) * (w, h)) for _ in range(int(rng.integers(3, 7)))], fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.5)))  # soft edges, as a camera gives
    return kind, encode(img, "JPEG", int(rng.integers(80, 96)))


def encode(img, fmt: str, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, fmt, **({"quality": quality} if fmt == "JPEG" else {}))
    return buf.getvalue()


def crop(img, left, top, right, bottom):
    """Cut these fractions of the width/height from each side."""
    w, h = img.size
    return img.crop((round(left * w), round(top * h), w - round(right * w), h - round(bottom * h)))


def resize(img, fx, fy):
    from PIL import Image

    return img.resize((max(1, round(img.width * fx)), max(1, round(img.height * fy))), Image.Resampling.BICUBIC)


COPIES = {  # name -> (what a copy is, covered by the design: re-encode, resize, symmetric crop)
    "jpeg q30": lambda im: encode(im, "JPEG", 30),
    "jpeg q60": lambda im: encode(im, "JPEG", 60),
    "png": lambda im: encode(im, "PNG"),
    "resize 0.5x": lambda im: encode(resize(im, 0.5, 0.5), "JPEG", 90),
    "resize 2x": lambda im: encode(resize(im, 2, 2), "PNG"),
    "resize 0.7x1.3 (non-uniform)": lambda im: encode(resize(im, 0.7, 1.3), "JPEG", 85),
    "resize 0.25x": lambda im: encode(resize(im, 0.25, 0.25), "JPEG", 90),
    "crop 1% per side": lambda im: encode(crop(im, .01, .01, .01, .01), "JPEG", 90),
    "crop 3% per side": lambda im: encode(crop(im, .03, .03, .03, .03), "JPEG", 90),
    "crop 5% per side": lambda im: encode(crop(im, .05, .05, .05, .05), "JPEG", 90),
    "crop 8% per side": lambda im: encode(crop(im, .08, .08, .08, .08), "JPEG", 90),
    "crop 2/3/4/1% uneven": lambda im: encode(crop(im, .02, .03, .04, .01), "JPEG", 90),
    "crop 3% one side": lambda im: encode(crop(im, .03, 0, 0, 0), "JPEG", 90),
    "crop 6% right+bottom": lambda im: encode(crop(im, 0, 0, .06, .06), "JPEG", 90),
    "crop 3% + resize 0.6x + jpeg q60": lambda im: encode(resize(crop(im, .03, .03, .03, .03), .6, .6), "JPEG", 60),
}


def main() -> None:
    from PIL import Image

    from builders.store import perceptual as ph

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=3000, help="distinct images")
    ap.add_argument("--copies", type=int, default=300, help="originals to make copies of")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t = time.perf_counter()
    made = [make_image(args.seed * 10**6 + i) for i in range(args.n)]
    kinds, images = np.array([k for k, _ in made]), [b for _, b in made]
    print(f"{args.n} distinct images generated in {time.perf_counter() - t:.0f}s "
          f"(mean {np.mean([len(b) for b in images]) / 1024:.0f} KB JPEG)")

    ph.hash_image(images[0])  # imports and first-call set-up out of the timings
    bench, t_bench = timed(lambda: [ph.hash_image(b, ph.BENCH_CROPS) for b in images], args.n)
    query, t_query = timed(lambda: [ph.hash_image(b) for b in images], args.n)
    keep = np.array([q is not None for q in query])
    print(f"plain (not hashed): {int((~keep).sum())} of {args.n}")
    B = np.stack([b for b in bench if b is not None])
    Q = np.stack([q[0] for q in query if q is not None])
    kinds = kinds[keep]
    n = len(Q)

    # every ordered pair (query i, bench j != i): the distance matrix, row by row
    t = time.perf_counter()
    by_word = ph.by_words(B)
    D = np.empty((n, n), np.int16)
    for s in range(0, n, 64):
        D[s:s + 64] = ph.distance_block(Q[s:s + 64], by_word)
    np.fill_diagonal(D, 10**4)
    print(f"pair distances in {time.perf_counter() - t:.0f}s; smallest between distinct images: "
          f"{np.sort(D.min(1))[:10].tolist()}")
    for k in ("texture", "gradient", "noise", "sparse"):
        mine = kinds == k
        print(f"  smallest from a {k} image to any other: {np.sort(D[mine].min(1))[:5].tolist()}, "
              f"median {np.median(D[mine].min(1)):.0f}")
    pairs = n * (n - 1)
    print(f"\nfalse matches over {pairs:,} ordered pairs of distinct images")
    print(f"{'threshold':>9} {'pairs':>7} {'per pair':>9} {'images with one':>16} "
          f"{'per 1k images vs 6k bench':>26}  pairs by kind (query kind)")
    for th in THRESHOLDS:
        hit = D <= th
        rate = hit.sum() / pairs
        by = {k: int(hit[kinds == k].sum()) for k in ("texture", "gradient", "noise", "sparse")}
        print(f"{th:>9} {int(hit.sum()):>7} {rate:>9.1e} {int(hit.any(1).sum()):>16} "
              f"{1000 * (1 - (1 - rate) ** BENCH_SIZE):>26.2f}  {by}")

    step = max(1, n // args.copies)
    originals = [i for i in range(0, args.n, step) if query[i] is not None][:args.copies]
    print(f"\nrecall on copies of {len(originals)} images (distance to the original's bench hashes <= threshold)")
    print("(a copy that became plain, e.g. a sparse image whose one shape was cropped away, has no hash: a miss)")
    print(f"{'copy':34} {'p50':>4} {'p95':>4} {'max':>4} {'plain':>5} "
          + " ".join(f"{f'<={th}':>6}" for th in THRESHOLDS))
    for name, make in COPIES.items():
        d = []
        for i in originals:
            h = ph.hash_image(make(Image.open(io.BytesIO(images[i]))))
            d.append(10**4 if h is None else int(np.bitwise_count(bench[i] ^ h[0]).sum(-1).min()))
        d = np.array(d)
        hashed = d[d < 10**4]
        print(f"{name:34} {np.median(hashed):>4.0f} {np.percentile(hashed, 95):>4.0f} {hashed.max():>4} "
              f"{int((d == 10**4).sum()):>5} "
              + " ".join(f"{(d <= th).mean():>6.1%}" for th in THRESHOLDS))

    big = np.concatenate([B] * (BENCH_SIZE // n + 1))[:BENCH_SIZE]  # timing only: content does not matter
    k = min(512, n)
    _, t_cmp = timed(lambda: ph.distances(Q[:k], big), k)
    with tempfile.TemporaryDirectory() as tmp:
        cache = ph.HashCache(Path(tmp) / "perceptual.sqlite")
        rows = {f"{i:064x}": big[i].tobytes() for i in range(BENCH_SIZE)}
        cache.put("bench", rows)
        _, t_cache = timed(lambda: cache.get("bench", list(rows)), 1)
        cache.close()
    print(f"\ntiming, ms per image, wall (CPU of this process; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores):")
    print(f"  hash a bench image ({len(ph.BENCH_CROPS)} crops)   {t_bench[0] * 1e3:6.2f} ({t_bench[1] * 1e3:.2f})")
    print(f"  hash a build image               {t_query[0] * 1e3:6.2f} ({t_query[1] * 1e3:.2f})")
    print(f"  compare it with {BENCH_SIZE} bench images  {t_cmp[0] * 1e3:6.2f} ({t_cmp[1] * 1e3:.2f})")
    print(f"  read {BENCH_SIZE} cached bench hashes: {t_cache[0]:.2f}s ({t_cache[1]:.2f}s) in all")
    print(f"so a {BENCH_SIZE}-image bench split is hashed once in ~{BENCH_SIZE * t_bench[1]:.0f}s of CPU (then "
          f"cached), and each build image costs ~{(t_query[1] + t_cmp[1]) * 1e3:.1f} ms of CPU (hash once, cached)")


def timed(fn, n: int):
    """fn's result and (wall, CPU) seconds per item."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, ((time.perf_counter() - wall) / n, (time.process_time() - cpu) / n)

if __name__ == "__main__":
    main()
