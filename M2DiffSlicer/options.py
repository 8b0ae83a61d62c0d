"""Option parsing shared by every configuration object: enum choices checked once, errors naming the argument.

Torch-free, so the light configuration modules (model/config.py, training/config.py) can use it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any, NoReturn, TypeVar

E = TypeVar("E", bound=enum.Enum)

# Sampling steps K when none are asked for: the setting of the held-out quality table (benchmarks/results/quality.md),
# where more steps did not raise PSNR/SSIM for the shipped weights, and what keeps a CPU run near a minute.
DEFAULT_SAMPLING_STEPS = 2


class VarianceType(enum.Enum):
    """Reverse-process variance: what the diffusion samples with and how many channels each decoder outputs.

    Defined here, not in model/ or diffusion/, because both read it and neither imports the other.
    """

    LEARNED_RANGE = "learned_range"  # IDDPM: each decoder also outputs the interpolation value v
    FIXED_LARGE = "fixed_large"  # sigma^2 = beta_t: the decoders output x0 only


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
