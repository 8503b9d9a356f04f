"""Build configs made like the training ones: a dataclass field per option, help and default written once.

`option(default, help)` declares a field (`choices=` limits its values); the
checks live in the dataclass's `__post_init__`; `polyground.cli.add_config_flags`
makes one `--flag` per field, named after it (its type, help, default and
choices); `from_options` builds the config from a mapping and names any key it
does not know: an unknown option is an error, never ignored. A `bool` field is
a switch, off by default. builders.rlpool.RLPoolConfig is the worked example;
builders.cot.CotConfig, builders.tasks.TasksConfig,
builders.negatives.NegativesConfig and training.evaluation.config.EvalConfig follow it.
"""
from __future__ import annotations

import dataclasses
import types
import typing

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


def flag_type(cls, name: str):
    """The value type of field `name` (int, float, str or bool), `X | None` read as X;
    a TypeError for any other (a list needs its own action: declare it by hand)."""
    kind = typing.get_type_hints(cls)[name]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        kind = args[0] if len(args) == 1 else kind
    if kind not in (int, float, str, bool):
        raise TypeError(f"{cls.__name__}.{name}: no flag for type {kind}")
    return kind
