"""ModelConfig: the one typed description of an M2Diff network (JSON round-trip, validation, presets)."""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any

from ..options import VarianceType, parse_enum, reject_unknown_fields
from .presets import PRESETS, VARIANTS


class T1Input(enum.Enum):
    """How the T1 reaches the network."""

    BRANCH = "branch"  # its own encoder E2 on (x_t, T1): the paper
    CHANNEL = "channel"  # an extra input channel of the single encoder (Table IV V2)
    NONE = "none"  # not used (Table IV V1)


class HFFMode(enum.Enum):
    """Hierarchical feature fusion of the two encoders' skip features."""

    PROJ = "proj"  # paper eq. 4-5: per-branch 1x1 projection, concat, conv-GroupNorm-SiLU head
    CONCAT = "concat"  # released code: both raw skips concatenated into each decoder block
    NONE = "none"  # each decoder sees only its own encoder (Table IV V3)


class AttentionBranches(enum.Enum):
    """Which branches have attention blocks."""

    BOTH = "both"
    PET = "pet"  # released code: the MRI encoder/decoder have none and a one-ResBlock middle


class OutputMode(enum.Enum):
    """What drives the final x0 when T1 is present."""

    MEAN = "mean"  # paper eq. 8: mean of both decoders
    PET = "pet"  # released code / single-decoder variants: the PET decoder alone


_ENUM_FIELDS: dict[str, type[enum.Enum]] = {
    "t1_input": T1Input,
    "hff": HFFMode,
    "variance": VarianceType,
    "attention": AttentionBranches,
    "output": OutputMode,
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """
    Architecture of an M2DiffNet. Defaults are the paper-faithful `m2diff` variant; sizes have no defaults.

    Strings are accepted for the enum fields and lists for the tuple fields; every field is validated on
    construction (ValueError naming the field).
    """

    image_size: tuple[int, int]  # nominal slice (H, W); any size divisible by 2**(len(channel_mult)-1) runs
    model_channels: int
    channel_mult: tuple[int, ...]
    num_res_blocks: int
    attention_ds: tuple[int, ...]  # downsample factors (1 = full resolution) that get attention
    num_heads: int = 4
    norm_groups: int = 32
    dropout: float = 0.0
    mri_decoder_dropout: float | None = None  # None: same as `dropout` (symmetric decoders)
    t1_input: T1Input = T1Input.BRANCH
    num_decoders: int = 2
    hff: HFFMode = HFFMode.PROJ
    variance: VarianceType = VarianceType.LEARNED_RANGE
    attention: AttentionBranches = AttentionBranches.BOTH
    output: OutputMode = OutputMode.MEAN
    # x0 = LD-PET + each decoder's output: no correction is the easy answer, so a clean input keeps its detail and
    # its regional uptake (the direct x0 of the paper had to re-draw a 25 %-dose image and blurred it).
    residual: bool = False

    def __post_init__(self) -> None:
        for name, kind in _ENUM_FIELDS.items():
            object.__setattr__(self, name, parse_enum(kind, getattr(self, name), name))
        for name in ("image_size", "channel_mult", "attention_ds"):
            value = getattr(self, name)
            if not isinstance(value, (tuple, list)):
                raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        self._validate()

    @property
    def levels(self) -> int:
        """Number of resolution levels (the input is downsampled levels-1 times)."""
        return len(self.channel_mult)

    @property
    def size_divisor(self) -> int:
        """Input H and W must be multiples of this."""
        return 2 ** (self.levels - 1)

    @property
    def out_channels(self) -> int:
        """Channels each decoder outputs: x0, plus v with learned-range variance."""
        return 2 if self.variance == VarianceType.LEARNED_RANGE else 1

    def _validate(self) -> None:
        def positive_int(name: str, value: Any) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")

        for name in ("model_channels", "num_res_blocks", "num_heads", "norm_groups"):
            positive_int(name, getattr(self, name))
        if not self.channel_mult:
            raise ValueError("channel_mult must not be empty")
        for mult in self.channel_mult:
            positive_int("channel_mult", mult)
        if len(self.image_size) != 2:
            raise ValueError(f"image_size must be (H, W), got {self.image_size!r}")
        for side in self.image_size:
            positive_int("image_size", side)
            if side % self.size_divisor:
                raise ValueError(
                    f"image_size {self.image_size} must be divisible by {self.size_divisor} "
                    f"(2**(len(channel_mult)-1))"
                )
        for mult in self.channel_mult:
            if (mult * self.model_channels) % self.norm_groups:
                raise ValueError(
                    f"norm_groups {self.norm_groups} must divide every width model_channels*channel_mult "
                    f"({self.model_channels}*{mult})"
                )
        reachable = {2**level: mult * self.model_channels for level, mult in enumerate(self.channel_mult)}
        for ds in self.attention_ds:
            positive_int("attention_ds", ds)
            if ds not in reachable:
                raise ValueError(f"attention_ds {ds} is not one of the downsample factors {sorted(reachable)}")
            if reachable[ds] % self.num_heads:
                raise ValueError(f"num_heads {self.num_heads} must divide the attention width {reachable[ds]}")
        for name in ("dropout", "mri_decoder_dropout"):
            value = getattr(self, name)
            if name == "mri_decoder_dropout" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value!r}")
        if self.num_decoders not in (1, 2):
            raise ValueError(f"num_decoders must be 1 or 2, got {self.num_decoders!r}")
        branch = self.t1_input == T1Input.BRANCH
        if self.num_decoders == 2 and not branch:
            raise ValueError("num_decoders 2 needs t1_input 'branch' (the MRI decoder follows the T1 encoder)")
        if self.hff != HFFMode.NONE and not branch:
            raise ValueError(f"hff {self.hff.value!r} needs t1_input 'branch' (there is no second encoder)")
        if branch and self.num_decoders == 1 and self.hff == HFFMode.NONE:
            raise ValueError("hff 'none' with one decoder would leave the T1 encoder unused")
        if self.output == OutputMode.MEAN and self.num_decoders != 2:
            raise ValueError("output 'mean' needs num_decoders 2")
        if self.attention == AttentionBranches.PET and not branch:
            raise ValueError("attention 'pet' needs t1_input 'branch' (there is no MRI branch)")
        if not isinstance(self.residual, bool):
            raise ValueError(f"residual must be true or false, got {self.residual!r}")
        if self.mri_decoder_dropout is not None and self.num_decoders != 2:
            raise ValueError("mri_decoder_dropout needs num_decoders 2")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (enums as their string values, tuples as lists)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown or missing keys raise ValueError."""
        reject_unknown_fields(cls, data)
        try:
            return cls(**data)
        except TypeError as error:  # a required field is missing
            raise ValueError(f"incomplete ModelConfig: {error}") from None

    def to_json(self) -> str:
        """JSON text of `to_dict()`."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """Inverse of `to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"ModelConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


def model_config(preset: str, variant: str = "m2diff") -> ModelConfig:
    """
    The configuration of a named preset (`paper`, `small`, `tiny`) and variant (`m2diff`, `released-code`,
    `v1` ... `v6`).
    """
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
    return ModelConfig(**PRESETS[preset], **VARIANTS[variant])
