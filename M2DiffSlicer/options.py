"""Option parsing shared by every configuration object: enum choices checked once, errors naming the argument.

Torch-free, so the light configuration modules (model/config.py, training/config.py) can use it.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import types
import typing
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

E = TypeVar("E", bound=enum.Enum)

# Sampling steps K when none are asked for. One step cost the 0.8.0 weights (the default's architecture) 0.03-0.04
# dB against two on validation subjects (benchmarks/results/sampling_steps.md) and halves the network's CPU time.
DEFAULT_SAMPLING_STEPS = 1


class VarianceType(enum.Enum):
    """Reverse-process variance: what the diffusion samples with and how many channels each decoder outputs.

    Defined here, not in model/ or diffusion/, because both read it and neither imports the other.
    """

    LEARNED_RANGE = "learned_range"  # IDDPM: each decoder also outputs the interpolation value v
    FIXED_LARGE = "fixed_large"  # sigma^2 = beta_t: the decoders output x0 only



class SamplingMethod(enum.Enum):
    """Reverse-step rules (defined here so the torch-free job options can name them)."""

    DDIM = "ddim"  # Song et al. 2021, eq. 12; eta = 0 is deterministic
    ANCESTRAL = "ancestral"  # sample p(x_{t-1} | x_t) with the model's variance


def reject_unknown_fields(cls: type, keys: Iterable[str]) -> None:
    """ValueError naming the keys that are not fields of the dataclass `cls` (JSON round-trips stay strict)."""
    names = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(keys) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")


def parse_enum(enum_cls: type[E], value: Any, argument: str) -> E:
    """`enum_cls(value)` (a member or its value), or a ValueError naming the argument and the allowed values."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(repr(member.value) for member in enum_cls)
        raise ValueError(f"{argument} must be one of {allowed}, got {value!r}") from None


def unhandled_choice(value: object) -> NoReturn:
    """For the `else` of an if-chain over every member of an enum: reaching it means a member was added without
    code for it (values from users are checked by parse_enum long before)."""
    raise AssertionError(f"no code handles {type(value).__name__} {value!r}")


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type, fields: Iterable[dataclasses.Field],
                            defaults: Any = None, required: Iterable[str] | None = None) -> None:
    """One `--flag` per field of the dataclass `cls`, typed from its annotation.

    A field's metadata may give `help`, `flag` (default `--field-name`), `metavar` and `required`. Booleans get
    `--flag/--no-flag`, enums their values as choices, `list[T]` takes any number of values and `tuple[T, ...]`
    at least one; `T | None` is typed as T. `defaults` (an instance of `cls`) overrides the field defaults;
    `required`, when given, replaces the metadata's choice of which flags are required.
    """
    hints = typing.get_type_hints(cls)
    required = None if required is None else set(required)
    for field in fields:
        meta = field.metadata
        default = getattr(defaults, field.name) if defaults is not None else _field_default(field)
        keywords: dict[str, Any] = {"dest": field.name, "help": meta.get("help", f"default: {default}")}
        if (field.name in required) if required is not None else meta.get("required"):
            keywords["required"] = True
        else:
            keywords["default"] = _as_argument(default)
        if "metavar" in meta:
            keywords["metavar"] = meta["metavar"]
        keywords.update(_argument_type(hints[field.name]))
        parser.add_argument(meta.get("flag", "--" + field.name.replace("_", "-")), **keywords)


def dataclass_values(args: argparse.Namespace, fields: Iterable[dataclasses.Field]) -> dict[str, Any]:
    """{field name: parsed value} of the fields that add_dataclass_arguments turned into flags."""
    return {field.name: getattr(args, field.name) for field in fields}


def _field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def _as_argument(value: Any) -> Any:
    """A default as argparse hands it back: enums as their values, sequences as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_as_argument(v) for v in value]
    return value


def _argument_type(kind: Any) -> dict[str, Any]:
    """argparse keywords (type, choices, nargs or action) for a field annotation."""
    origin, parts = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        (kind,) = [part for part in parts if part is not type(None)]
        origin, parts = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if origin in (list, tuple):
        item = _argument_type(parts[0])
        metavar = {} if "choices" in item else {"metavar": parts[0].__name__.upper()}
        return {**item, **metavar, "nargs": "*" if origin is list else "+"}
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return {"type": str, "choices": [member.value for member in kind]}
    return {"type": kind}
