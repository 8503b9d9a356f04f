"""Export a version as self-contained Parquet shards with its card and manifest.

Layout (what the Hub and `datasets.load_dataset("parquet", ...)` read):

    DIR/README.md                          the version's card (its YAML names the splits)
    DIR/plots/*.png                        the card's figures, when it has any
    DIR/manifest.json                      the version's manifest, as stored
    DIR/data/<split>-00000-of-0000N.parquet

    DIR/.polyground-export.json            what this export wrote (the only files --overwrite replaces)

The folder must be new or empty; one holding an earlier export is replaced
only with `overwrite`, and then only the files that export listed are removed.
A folder inside the store is refused. Images are checked against their hash
as they are read: no changed byte leaves the store.

In the shards the store's `images` column (hash, width, height per image)
becomes `image_refs`, and `images` holds the image bytes as `List(Image())`,
the column TRL's vision collators read. Every other column is unchanged, so
a loaded row equals the stored row once `image_refs` is read as `images`.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from schemas.errors import UserError

MARKER = ".polyground-export.json"
SHARD_BYTES = 256 * 1024 * 1024  # image bytes per shard: Hub-friendly file sizes
ROW_GROUP = 100  # small row groups keep the Hub viewer's random access cheap


def split_name(kind: str) -> str:
    """The split name the card's YAML uses for this kind."""
    try:
        from builders.publish.cards import split_name as card_split
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
    images = [[{"bytes": store.read_image(r["sha256"]), "path": None} for r in row]
              for row in refs.to_pylist()]
    at = table.schema.get_field_index("images")
    table = table.set_column(at, "images", pa.array(images, type=pa.list_(
        pa.struct([("bytes", pa.binary()), ("path", pa.string())]))))
    return table.add_column(at + 1, "image_refs", refs)


def _earlier_export(out_dir: Path) -> list[str] | None:
    """The files an earlier export listed in its marker, or None when there is none."""
    try:
        files = json.loads((out_dir / MARKER).read_text(encoding="utf-8")).get("files")
    except (OSError, ValueError, AttributeError, RecursionError):
        return None
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else None


def _remove_listed(out_dir: Path, files: list[str]) -> None:
    """Delete what an earlier export wrote (nothing else; nothing outside out_dir)."""
    root = out_dir.resolve()
    for rel in files:
        path = out_dir / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or not path.parent.resolve().is_relative_to(root):
            continue
        if path.is_file() or path.is_symlink():
            path.unlink()
    for folder in ("data", "plots"):
        if (out_dir / folder).is_dir() and not any((out_dir / folder).iterdir()):
            (out_dir / folder).rmdir()
    (out_dir / MARKER).unlink(missing_ok=True)


def prepare_dir(out_dir: Path, store=None, overwrite: bool = False) -> None:
    """An empty folder; with `overwrite`, one holding an earlier export (its files are removed).

    Refused: a folder inside the store, a non-empty folder this tool did not
    export to, and an earlier export without `overwrite`."""
    if store is not None:
        root = Path(store.root).resolve()
        if out_dir.resolve() == root or out_dir.resolve().is_relative_to(root):
            raise UserError(f"{out_dir} is inside the store {store.root}; export to a folder outside it")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        earlier = _earlier_export(out_dir)
        if earlier is None:
            raise UserError(f"{out_dir} is not empty and holds no earlier export (no {MARKER}); "
                            "choose a new or empty folder")
        if not overwrite:
            raise UserError(f"{out_dir} holds an earlier export; pass --overwrite to replace it "
                            "(only the files that export wrote are removed)")
        _remove_listed(out_dir, earlier)
        clash = [p for p in ("README.md", "manifest.json", "data", "plots") if (out_dir / p).exists()]
        if clash:
            raise UserError(f"{out_dir}: {', '.join(clash)} were not written by the earlier export; "
                            "move them away or choose another folder")
    (out_dir / "data").mkdir(parents=True, exist_ok=True)


def export_version(store, version, out_dir: Path, overwrite: bool = False, marker: bool = True) -> list[Path]:
    """Write `version` (a Version or a ref) to `out_dir`; returns the files written.

    `marker` writes MARKER listing them (publish leaves it out of what it sends)."""
    version = store.resolve(version)
    missing = [h for h in sorted(version.image_hashes) if not store.image_path(h).is_file()]
    if missing:  # cheap, before anything is written; the bytes are hashed as they are read
        store.check_images(missing[:1], version.ref)
    out_dir = Path(out_dir)
    prepare_dir(out_dir, store, overwrite)
    table = version.table()
    bounds = shard_bounds(store, table)
    features = features_for(table.schema)
    split = split_name(version.kind)
    shards = [out_dir / "data" / f"{split}-{k:05d}-of-{len(bounds):05d}.parquet" for k in range(len(bounds))]
    plots = sorted((version.path / "plots").rglob("*.png")) if (version.path / "plots").is_dir() else []
    written = shards + [out_dir / n for n in ("README.md", "manifest.json")] \
        + [out_dir / p.relative_to(version.path) for p in plots]
    if marker:  # first: an export cut short is still known as ours, and replaced by --overwrite
        listing = {"ref": version.ref, "files": [p.relative_to(out_dir).as_posix() for p in written]}
        (out_dir / MARKER).write_text(json.dumps(listing, indent=1) + "\n", encoding="utf-8")
    try:
        for path, (start, stop) in zip(shards, bounds):
            part = embed_images(store, table.slice(start, stop - start))
            part = part.cast(features.arrow_schema)  # carries the `huggingface` features metadata
            pq.write_table(part, path, row_group_size=ROW_GROUP)
        shutil.copyfile(version.checked_file("README.md"), out_dir / "README.md")
        shutil.copyfile(version.path / "manifest.json", out_dir / "manifest.json")  # its seal was checked at open
        for plot in plots:
            (out_dir / plot.relative_to(version.path)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(version.checked_file(plot.relative_to(version.path).as_posix()),
                            out_dir / plot.relative_to(version.path))
    except UserError:  # a changed image or file found while reading: no part of the export stays
        _remove_listed(out_dir, [p.relative_to(out_dir).as_posix() for p in written])
        raise
    return written
