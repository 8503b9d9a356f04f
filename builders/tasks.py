"""`build tasks` and `build bench` as a step: a source, through its reader and ingest, into a version.

`TasksConfig` holds the options (the reader's and ingest's bound); `build_tasks`
reads the source (builders.sources.read: an option the reader does not take is
an error), validates and stores it (builders.sources.ingest), and commits a `tasks` or
`bench` version (builders.steps). A reader option left unset is the reader's
own default and stays out of the version id, so the ids of earlier builds stay
what they were; so does `max_images_per_row` unless given.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from builders.options import option
from schemas.errors import UserError


@dataclass
class TasksConfig:
    """Options of `build tasks|bench`; each field is its flag (polyground.cli.add_config_flags).
    None: the reader's (or ingest's) own default."""

    n: int | None = option(None, "synthetic: number of tasks")
    seed: int | None = option(None, "synthetic: random seed")
    family: str | None = option(None, "synthetic: task family (e.g. locate_red, mixed)")
    subsets: str | None = option(None, "blink/mmiu: comma-separated subtasks to read")
    max_images_per_row: int | None = option(None, "rows listing more images are rejected as too_many_images "
                                                  "(default: builders.sources.ingest.MAX_IMAGES_PER_ROW, 64)")

    def __post_init__(self):
        if self.max_images_per_row is not None:
            from builders.sources.ingest import check_max_images  # lazily: the CLI builds its flags from this class

            check_max_images(self.max_images_per_row)

    def reader_options(self) -> dict:
        """The reader options given (subsets as a list): what the reader is called with and the id records."""
        options = {"n": self.n, "seed": self.seed, "family": self.family}
        if self.subsets:
            options["subsets"] = [s.strip() for s in str(self.subsets).split(",") if s.strip()]
        return {k: v for k, v in options.items() if v is not None}


def build_tasks(store, source: str, path: Path | None, name: str, kind: str, config: TasksConfig,
                refuse_contamination: bool = False, progress: bool = True):
    """Read `source` at `path` into a new `kind` ("tasks" or "bench") version; a BuildResult
    whose summary holds the benchmark overlap (`contamination`, `near_duplicates`)."""
    from builders.store.contamination import contamination_fields
    from builders.sources.ingest import ingest, task_summary
    from builders.sources import NEEDS_NO_PATH, load_reader, read
    from builders.steps import commit
    from schemas import rows

    reader = load_reader(source)
    if path is None and source not in NEEDS_NO_PATH:
        raise UserError(f"--source {source} needs --path")
    if path is not None and not path.exists():
        raise UserError(f"--path {path}: no such file or folder")
    root = None if path is None else (path if path.is_dir() else path.parent).resolve()
    options = config.reader_options()
    limit = config.max_images_per_row
    bound = {} if limit is None else {"max_images": limit}
    records, rejects = ingest(read(source, path, options), store, progress=progress, root=root, **bound)
    table = rows.to_table(records, kind)
    extra = {"summary": task_summary(table),
             "source": {"reader": source, "path": None if path is None else str(path.resolve())}}
    describe = getattr(sys.modules.get(reader.__module__), "describe_source", None)
    if describe is not None and path is not None:  # which file, which frame (MIG-Bench: official or revised)
        extra["source"].update(describe(path))
    if kind != "bench":
        extra.update(contamination_fields(store, records, refuse=refuse_contamination))
    version_config = {"source": source, "options": options}
    if limit is not None:  # only when given: the ids of earlier builds stay what they were
        version_config["max_images_per_row"] = limit
    overlap = {"contamination": extra.get("contamination", {}), "near_duplicates": extra.get("near_duplicates")}
    return commit(store, name, kind, table, rejects, inputs=[], config=version_config, extra=extra, summary=overlap)
