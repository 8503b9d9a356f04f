"""Build configs made like the training ones: a dataclass field per option, help and default written once.

`option(default, help)` declares a field; the checks live in the dataclass's
`__post_init__`; `polyground.cli.add_config_flags` makes one `--flag` per field
(its type, help and default); `from_options` builds the config from a mapping
and names any key it does not know: an unknown option is an error, never ignored.
builders.rlpool.RLPoolConfig is the worked example.
"""
from __future__ import annotations

import dataclasses

from schemas.errors import UserError


def option(default, help: str, **metadata):
    """A dataclass field with its help string (the flag's help, and --help-config for trainers)."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def option_factory(factory, help: str):
    return dataclasses.field(default_factory=factory, metadata={"help": help})


def from_options(cls, values: dict, what: str):
    """`cls(**values)`, with a one-line UserError naming the options `cls` does not have."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise UserError(f"{what}: unknown option(s) {', '.join(unknown)}")
    return cls(**values)
