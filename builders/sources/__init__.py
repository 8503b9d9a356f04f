"""One reader per source format, and the registry of them. Each yields `SourceItem` or `Reject` (see base.py).

To add a source: write `builders/sources/<name>.py` with a `read_<name>(path, <option>=...)`
generator (explicit keyword options: `read` refuses an option a reader does not name)
and name it in READERS. A reader module may also define `official_prompt(task)`
and `TEMPLATE_ID` (its benchmark's own multiple-choice prompt, which generation then sends)
and `describe_source(path)` (extra manifest fields, e.g. which file and frame).
"""
from __future__ import annotations

import importlib

from schemas.errors import UserError

# name -> "module:function"; imported only when used, so one broken or
# unwritten reader does not break the others.
READERS = {
    "synthetic": "builders.sources.synthetic:read_synthetic",
    "mig-bench": "builders.sources.migbench:read_migbench",
    "mgrounding": "builders.sources.mgrounding:read_mgrounding",
    "blink": "builders.sources.blink:read_blink",
    "mmiu": "builders.sources.mmiu:read_mmiu",
    "jsonl": "builders.sources.jsonl:read_jsonl",
    "mcbench": "builders.sources.mcbench:read_mcbench",
}
NEEDS_NO_PATH = {"synthetic"}


def _module(source: str):
    module = READERS[source].split(":")[0]
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise UserError(f"the {source} reader is not available in this version of polyground") from None
        raise


def load_reader(source: str):
    """The reader function of a source name; a one-line error naming the known ones otherwise."""
    if source not in READERS:
        raise UserError(f"unknown source {source!r}; choose from {', '.join(READERS)}")
    return getattr(_module(source), READERS[source].split(":")[1])


def reader_options(reader) -> list[str]:
    """The keyword options a reader takes (every parameter after `path`)."""
    import inspect

    return [name for name in inspect.signature(reader).parameters if name != "path"]


def read(source: str, path, options: dict):
    """The items of `source` at `path`, read with `options`; an option its reader does not
    take is a one-line error (a typo, or `--subsets` given to a source without subtasks)."""
    reader = load_reader(source)
    takes = reader_options(reader)
    unknown = sorted(set(options) - set(takes))
    if unknown:
        raise UserError(f"--source {source} takes no option {', '.join(unknown)} "
                        f"(its options: {', '.join(takes) or 'none'})")
    return reader(path, **options)


def official_prompt_module(source: str | None):
    """The reader module of `source` when it renders its benchmark's own prompt (`official_prompt`), else None."""
    if source not in READERS:
        return None
    module = _module(source)
    return module if hasattr(module, "official_prompt") else None
