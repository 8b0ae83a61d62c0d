"""The enhance job: its paths, its InferenceOptions, and job.json (docs/DEVELOPING.md "Worker protocol").

Torch-free, so building the `m2diff` parser stays fast: the `enhance` flags and job.json keys are both generated
from these two dataclasses, so every option is defined once, here.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from pathlib import Path
from typing import Any

from ..errors import BadInputError
from ..imaging.orientation import Orientation
from ..options import DEFAULT_SAMPLING_STEPS, SamplingMethod, parse_enum

class DeviceChoice(enum.Enum):
    """Where the network runs."""

    AUTO = "auto"  # CUDA when available, else CPU
    CUDA = "cuda"
    CPU = "cpu"


def _option(default: Any, help: str, **cli: Any) -> Any:
    """A dataclass field that is also a command-line option (`help` and argparse keywords in its metadata)."""
    factory = {"default_factory": lambda: default} if isinstance(default, (list, tuple)) else {"default": default}
    return dataclasses.field(**factory, metadata={"help": help, **cli})


@dataclasses.dataclass(frozen=True)
class InferenceOptions:
    """Settings of one inference run (strings are accepted for the enum and orientation fields).

    Fields with a `help` are job.json keys and `m2diff enhance` flags; the others are set by code only
    (`uncertainty` follows from the job asking for an uncertainty output).
    """

    steps: int = _option(DEFAULT_SAMPLING_STEPS, "sampling steps K (respaced DDIM)")
    orientations: tuple[Orientation, ...] = _option(tuple(Orientation), "slice stacks to sample and fuse")
    device: DeviceChoice = _option(DeviceChoice.AUTO, "where the network runs (auto: CUDA when usable)")
    seed: int = _option(0, "seeds every noise draw")
    batch_size: int = _option(16, "slices per network call")
    bf16: bool = _option(False, "bfloat16 autocast of the network")
    # NHWC runs the convolutions 15 % faster on CPU with the same float32 arithmetic (benchmarks/enhance_speed.py).
    channels_last: bool = _option(True, "NHWC memory layout for the network")
    threads: int | None = _option(None, "torch threads (default: torch's choice)")
    safeguard: bool = _option(True, "keep part of the input where it is cleaner than the model's training data, and "
                                    "the input's coarse regional uptake (calibrated blend and uptake anchor, "
                                    "enhance/safeguard.py); --no-safeguard: the network as is")
    skip_empty: bool = True  # slices without head signal keep the LD-PET itself
    destripe_sigma: float | None = None  # notch width of the stripe filter; None: destripe's default, 0: off
    uncertainty: bool = False  # also return the per-voxel spread of the estimates
    method: SamplingMethod = SamplingMethod.DDIM

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", parse_enum(DeviceChoice, self.device, "device"))
        object.__setattr__(self, "method", parse_enum(SamplingMethod, self.method, "method"))
        if isinstance(self.orientations, (str, Orientation)):
            raise ValueError(f"orientations must be a list, got {self.orientations!r}")
        orientations = tuple(parse_enum(Orientation, o, "orientations") for o in self.orientations)
        if not orientations or len(set(orientations)) != len(orientations):
            raise ValueError(f"orientations must be a non-empty list without repeats, got {self.orientations}")
        object.__setattr__(self, "orientations", orientations)
        for name in ("steps", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        if self.destripe_sigma is not None and self.destripe_sigma < 0:
            raise ValueError(f"destripe_sigma must be >= 0, got {self.destripe_sigma}")

    def job_values(self) -> dict[str, Any]:
        """The job.json values of the user-facing fields (enums as their strings)."""
        return {name: _plain(getattr(self, name)) for name in option_names(InferenceOptions)}


@dataclasses.dataclass(frozen=True)
class EnhanceJob:
    """One enhancement: input and output paths plus its InferenceOptions.

    pet / t1 / roi / transform: input paths (t1 None = MRI-free; roi: a labelmap, else the built-in lobar atlas;
    transform: a T1->PET .tfm in ITK resampling convention that replaces registration). Output paths may be None
    (not written) except `output`. weights: checkpoint path or catalogue id (None = the catalogue default).
    job.json is flat: these fields and the InferenceOptions' user-facing fields side by side.
    """

    pet: str = _option(None, "low-dose PET: NIfTI, NRRD or a DICOM series folder", required=True)
    output: str = _option(None, "enhanced PET to write (.nii.gz, .nrrd, ...)", flag="--out", required=True)
    t1: str | None = _option(None, "T1 MRI of the same subject (omit for MRI-free mode)")
    roi: str | None = _option(None, "ROI labelmap (default: the built-in lobar atlas)")
    transform: str | None = _option(None, "known T1->PET transform (.tfm); skips registration")
    uncertainty_output: str | None = _option(None, "also write the per-voxel spread across orientations/decoders "
                                             "here", flag="--uncertainty", metavar="U")
    transform_output: str | None = _option(None, "write the T1->PET transform used (.tfm)", flag="--transform-out")
    roi_csv: str | None = _option(None, "write the ROI table as CSV", flag="--roi-out", metavar="CSV")
    roi_json: str | None = _option(None, "write the ROI table as JSON")
    report: str | None = _option(None, "write a JSON report of the run", metavar="JSON")
    weights: str | None = _option(None, "checkpoint path or catalogue id (default: the catalogue default)")
    options: InferenceOptions = InferenceOptions()

    def __post_init__(self) -> None:
        for name in ("pet", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise BadInputError(f"job field {name!r} must be a non-empty path, got {getattr(self, name)!r}")
        wants_uncertainty = self.uncertainty_output is not None
        if self.options.uncertainty != wants_uncertainty:
            object.__setattr__(self, "options", dataclasses.replace(self.options, uncertainty=wants_uncertainty))

    def outputs(self) -> dict[str, str | None]:
        """{field: path or None} of every output."""
        return {name: getattr(self, name) for name in OUTPUT_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """The flat job.json object."""
        paths = {name: getattr(self, name) for name in option_names(EnhanceJob)}
        return {**paths, **self.options.job_values()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnhanceJob:
        """Build from a flat job.json object; unknown, missing or invalid fields are a BadInputError."""
        if not isinstance(data, dict):
            raise BadInputError(f"a job must be a JSON object, got {type(data).__name__}")
        path_fields, option_fields = option_names(EnhanceJob), option_names(InferenceOptions)
        unknown = sorted(set(data) - set(path_fields) - set(option_fields))
        if unknown:
            raise BadInputError(f"unknown job field(s): {', '.join(unknown)}")
        missing = sorted(name for name in ("pet", "output") if data.get(name) is None)
        if missing:
            raise BadInputError(f"job is missing required field(s): {', '.join(missing)}")
        try:
            options = InferenceOptions(**{k: v for k, v in data.items() if k in option_fields})
        except (TypeError, ValueError) as error:
            raise BadInputError(f"invalid job option: {error}") from None
        return cls(**{k: v for k, v in data.items() if k in path_fields}, options=options)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_json(cls, text: str) -> EnhanceJob:
        try:
            data = json.loads(text)
        except ValueError as error:
            raise BadInputError(f"job is not valid JSON: {error}") from None
        return cls.from_dict(data)

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> EnhanceJob:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise BadInputError(f"cannot read job file {path}: {error.strerror}") from None
        return cls.from_json(text)


OUTPUT_FIELDS = ("output", "uncertainty_output", "transform_output", "roi_csv", "roi_json", "report")


def option_fields(cls: type, names: tuple[str, ...] | None = None) -> list[dataclasses.Field]:
    """The user-facing fields of `cls` (those with a help text: job.json keys and flags), in declaration order;
    only those in `names` when given."""
    return [field for field in dataclasses.fields(cls)
            if "help" in field.metadata and (names is None or field.name in names)]


def option_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in option_fields(cls))


def _plain(value: Any) -> Any:
    """JSON form of an option value: enums as their values, tuples as lists."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value
