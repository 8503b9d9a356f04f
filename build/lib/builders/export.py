"""Export a version as self-contained Parquet shards with its card and manifest.

Layout (what the Hub and `datasets.load_dataset("parquet", ...)` read):

    DIR/README.md                          the version's card (its YAML names the splits)
    DIR/plots/*.png                        the card's figures, when it has any
    DIR/manifest.json                      the version's manifest, as stored
    DIR/data/<split>-00000-of-0000N.parquet

In the shards the store's `images` column (hash, width, height per image)
becomes `image_refs`, and `images` holds the image bytes as `List(Image())`,
the column TRL's vision collators read. Every other column is unchanged, so
a loaded row equals the stored row once `image_refs` is read as `images`.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import UserError

SHARD_BYTES = 256 * 1024 * 1024  # image bytes per shard: Hub-friendly file sizes
ROW_GROUP = 100  # small row groups keep the Hub viewer's random access cheap


def split_name(kind: str) -> str:
    """The split name the card's YAML uses for this kind."""
    try:
        from builders.cards import split_name as card_split
    except ImportError:  # no card renderer: benchmarks are test splits, the rest train
        return "test" if kind in ("bench", "predictions") else "train"
    return card_split(kind)


def features_for(schema: pa.Schema):
    """datasets Features of the exported table: `images` as List(Image())."""
    import datasets

    features = datasets.Features.from_arrow_schema(schema)
    if "images" not in schema.names:
        return features
    out = {}
    for name, feature in features.items():
        if name == "images":
            out["images"] = datasets.List(datasets.Image())
            out["image_refs"] = feature
        else:
            out[name] = feature
    return datasets.Features(out)


def shard_bounds(store, table: pa.Table) -> list[tuple[int, int]]:
    """Row ranges whose image bytes stay near SHARD_BYTES each (at least one row)."""
    if "images" not in table.schema.names:
        return [(0, table.num_rows)]
    bounds, start, size = [], 0, 0
    for i, refs in enumerate(table.column("images").to_pylist()):
        row = sum(store.image_path(r["sha256"]).stat().st_size for r in refs)
        if size and size + row > SHARD_BYTES:
            bounds.append((start, i))
            start, size = i, 0
        size += row
    bounds.append((start, table.num_rows))
    return bounds


def embed_images(store, table: pa.Table) -> pa.Table:
    """Replace hash references with the image bytes, keeping the references."""
    if "images" not in table.schema.names:
        return table
    refs = table.column("images")
    images = [[{"bytes": store.image_path(r["sha256"]).read_bytes(), "path": None} for r in row]
              for row in refs.to_pylist()]
    at = table.schema.get_field_index("images")
    table = table.set_column(at, "images", pa.array(images, type=pa.list_(
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]))))
    return table.add_column(at + 1, "image_refs", refs)


def prepare_dir(out_dir: Path) -> None:
    """An empty folder, or one holding an earlier export (its shards are replaced)."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not (out_dir / "manifest.json").is_file():
            raise UserError(f"{out_dir} is not empty and holds no earlier export; choose an empty folder")
        for old in (out_dir / "data").glob("*.parquet"):
            old.unlink()
        shutil.rmtree(out_dir / "plots", ignore_errors=True)
    (out_dir / "data").mkdir(parents=True, exist_ok=True)


def export_version(store, version, out_dir: Path) -> list[Path]:
    """Write `version` (a Version or a ref) to `out_dir`; returns the files written."""
    version = store.resolve(version)
    missing = [h for h in sorted(version.image_hashes) if not store.image_path(h).is_file()]
    if missing:
        raise UserError(f"{version.ref}: image {missing[0]} is missing from the store (run `polyground data verify`)")
    out_dir = Path(out_dir)
    prepare_dir(out_dir)
    table = version.table()
    bounds = shard_bounds(store, table)
    features = features_for(table.schema)
    split, written = split_name(version.kind), []
    for k, (start, stop) in enumerate(bounds):
        part = embed_images(store, table.slice(start, stop - start))
        part = part.cast(features.arrow_schema)  # carries the `huggingface` features metadata
        path = out_dir / "data" / f"{split}-{k:05d}-of-{len(bounds):05d}.parquet"
        pq.write_table(part, path, row_group_size=ROW_GROUP)
        written.append(path)
    for name in ("README.md", "manifest.json"):
        shutil.copyfile(version.path / name, out_dir / name)
        written.append(out_dir / name)
    if (version.path / "plots").is_dir():
        shutil.copytree(version.path / "plots", out_dir / "plots", dirs_exist_ok=True)
        written += sorted((out_dir / "plots").rglob("*.png"))
    return written
