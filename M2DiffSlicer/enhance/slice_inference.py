"""Multi-orientation inference on the model grid: slice stacks, batched few-step sampling, destriping, fusion.

For every requested orientation the prepared LD-PET (and T1) volume is cut into slices, slices without head signal
are skipped (their output is the LD-PET itself), the rest are sampled in batches with a respaced DDIM schedule,
restacked, destriped along the stacking direction (Muench 2009, as Lucas et al. 2025 do) and averaged over the
orientations. The spread of the estimates (orientations, and both decoders where both exist) is the optional
uncertainty map. `run_inference` is a generator: it yields a progress dict after every sampling step, so a caller
can report and cancel between steps, and returns the `InferenceResult`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..imaging.orientation import Orientation
from ..imaging.destripe import DEFAULT_SIGMA, remove_stripes
from ..diffusion.gaussian_diffusion import GaussianDiffusion
from ..options import parse_enum
from ..diffusion.sampling import sample_progressive
from .job import DeviceChoice, InferenceOptions

# A slice is sampled when at least MIN_FRACTION of its LD-PET pixels exceed MIN_SIGNAL (network units, head mean
# ~1): the criterion training uses to pick slices (dataset.SliceDataset), applied to the LD-PET we have here.
MIN_SIGNAL = 0.1
MIN_FRACTION = 0.01

# In-plane axis along which each orientation's stripes run, i.e. the plane family that is filtered; LowGAN's
# choice (axial and coronal stacks filtered along x, sagittal along z).
_STRIPE_PLANE_AXIS = {Orientation.AXIAL: 2, Orientation.CORONAL: 2, Orientation.SAGITTAL: 0}


@dataclass
class InferenceResult:
    """Outcome of `run_inference`; volumes are [z, y, x] float32 in network units (LD-PET scale).

    volume: the fused estimate. uncertainty: per-voxel standard deviation of the estimates, or None.
    per_orientation: each orientation's destriped volume. sampled_slices / skipped_slices: per orientation.
    """

    volume: np.ndarray
    uncertainty: np.ndarray | None
    per_orientation: dict[Orientation, np.ndarray] = field(default_factory=dict)
    sampled_slices: dict[str, int] = field(default_factory=dict)
    skipped_slices: dict[str, int] = field(default_factory=dict)


def resolve_device(choice: DeviceChoice | str) -> tuple[torch.device, str | None]:
    """The device to run on and a warning to show when CUDA was asked for but is not usable (CPU fallback)."""
    choice = parse_enum(DeviceChoice, choice, "device")
    if choice == DeviceChoice.CPU:
        return torch.device("cpu"), None
    if torch.cuda.is_available():
        return torch.device("cuda"), None
    if choice == DeviceChoice.CUDA:
        build = torch.version.cuda or "a CPU-only build"
        return torch.device("cpu"), (f"CUDA was requested but is not available (torch {torch.__version__}, "
                                     f"{build}); running on the CPU")
    return torch.device("cpu"), None


def device_report(device: torch.device) -> dict[str, Any]:
    """torch build and device facts for the worker's start event (docs/DEVELOPING.md "Worker protocol")."""
    report: dict[str, Any] = {"torch": torch.__version__.split("+")[0], "cuda_build": torch.version.cuda,
                              "device": device.type}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        arch = f"sm_{props.major}{props.minor}"
        report.update(device_name=props.name, memory_gb=round(props.total_memory / 2**30, 1),
                      arch_ok=arch in torch.cuda.get_arch_list())
    else:
        report.update(device_name=_cpu_name(), memory_gb=round(_total_memory_bytes() / 2**30, 1), arch_ok=True)
    return report


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU ({os.cpu_count()} cores)"


def _total_memory_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def sampled_slice_indices(pet: np.ndarray, orientation: Orientation, skip_empty: bool = True) -> np.ndarray:
    """Indices along `orientation` of the slices that carry head signal (all of them when not skipping).

    :param pet: [z, y, x] LD-PET in network units.
    """
    if not skip_empty:
        return np.arange(pet.shape[orientation.axis])
    other = tuple(a for a in range(3) if a != orientation.axis)
    fractions = (pet > MIN_SIGNAL).mean(axis=other)
    return np.flatnonzero(fractions >= MIN_FRACTION)


def total_steps(pet: np.ndarray, options: InferenceOptions) -> int:
    """How many progress steps `run_inference` will yield: batches x sampling steps, plus one destriping step
    per orientation."""
    batches = 0
    for orientation in options.orientations:
        n = len(sampled_slice_indices(pet, orientation, options.skip_empty))
        batches += -(-n // options.batch_size)
    return batches * options.steps + len(options.orientations)


class _RecordingModel:
    """Calls the network (under bf16 autocast when asked) and keeps its last output dict for the decoder spread."""

    def __init__(self, model: torch.nn.Module, device: torch.device, bf16: bool, channels_last: bool) -> None:
        self.model = model
        self.device = device
        self.bf16 = bf16
        self.channels_last = channels_last
        self.last: dict[str, Any] = {}

    def __call__(self, x_t, t, ld_pet, t1=None, t1_present=None):
        if self.channels_last:
            nhwc = torch.channels_last
            x_t, ld_pet = x_t.contiguous(memory_format=nhwc), ld_pet.contiguous(memory_format=nhwc)
            t1 = None if t1 is None else t1.contiguous(memory_format=nhwc)
        autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if self.bf16
                    else contextlib.nullcontext())
        with autocast:
            out = self.model(x_t, t, ld_pet, t1, t1_present)
        # The diffusion maths stays in float32 whatever precision the network ran in.
        out = {k: None if v is None else v.float().contiguous() for k, v in out.items()}
        self.last = out
        return out


def run_inference(
    model: torch.nn.Module,
    diffusion: GaussianDiffusion,
    pet: np.ndarray,
    t1: np.ndarray | None,
    options: InferenceOptions,
    device: torch.device,
) -> Generator[dict[str, Any], None, InferenceResult]:
    """Sample every orientation's slice stack, destripe, fuse; yield progress after each sampling step.

    :param model: an M2DiffNet (or anything with its forward contract), already on `device`, in eval mode.
    :param diffusion: a respaced diffusion with `options.steps` steps (see respace.create_diffusion).
    :param pet: [z, y, x] float32 LD-PET in network units (preprocess.PreparedInputs.pet).
    :param t1: [z, y, x] float32 normalised T1 on the same grid, or None (MRI-free mode).
    :param options: InferenceOptions.
    :param device: torch device to run on.
    :return: generator of progress dicts {"phase": "infer"|"fuse", "step", "total", "message"} (one step count
        across both phases, as they interleave: each orientation is destriped once sampled); its return value
        (StopIteration.value, or `yield from`) is the InferenceResult.
    """
    if pet.ndim != 3 or (t1 is not None and t1.shape != pet.shape):
        raise ValueError(f"pet must be 3D and t1 None or of the same shape, got {pet.shape} and "
                         f"{None if t1 is None else t1.shape}")
    if diffusion.num_timesteps != options.steps:
        raise ValueError(f"diffusion has {diffusion.num_timesteps} steps but options.steps is {options.steps}")
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    recorder = _RecordingModel(model, device, options.bf16, options.channels_last)
    counter = _StepCounter(total_steps(pet, options))
    estimates: dict[Orientation, np.ndarray] = {}
    decoder_var: dict[Orientation, np.ndarray] = {}
    sampled, skipped = {}, {}
    for orientation in options.orientations:
        indices = sampled_slice_indices(pet, orientation, options.skip_empty)
        stack, spread = yield from _sample_orientation(diffusion, recorder, pet, t1, orientation, indices, options,
                                                       counter)
        yield counter.step("fuse", f"destriping {orientation.value}")
        estimates[orientation] = np.clip(_destripe(stack, orientation, options), 0.0, None)  # activity is >= 0
        if spread is not None:
            decoder_var[orientation] = spread
        sampled[orientation.value] = int(len(indices))
        skipped[orientation.value] = int(pet.shape[orientation.axis] - len(indices))
    fused, uncertainty = _fuse(estimates, decoder_var, options.uncertainty)
    return InferenceResult(volume=fused, uncertainty=uncertainty, per_orientation=estimates,
                           sampled_slices=sampled, skipped_slices=skipped)


class _StepCounter:
    """One progress count across sampling and destriping, which interleave."""

    def __init__(self, total: int) -> None:
        self.done, self.total = 0, total

    def step(self, phase: str, message: str) -> dict[str, Any]:
        self.done += 1
        return {"phase": phase, "step": self.done, "total": self.total, "message": message}


def _sample_orientation(
    diffusion: GaussianDiffusion, recorder: _RecordingModel, pet: np.ndarray, t1: np.ndarray | None,
    orientation: Orientation, indices: np.ndarray, options: InferenceOptions, counter: _StepCounter,
) -> Generator[dict[str, Any], None, tuple[np.ndarray, np.ndarray | None]]:
    """Sample the slices `indices` of one orientation in batches; return the restacked volume (skipped slices keep
    the LD-PET) and, when uncertainty is asked for, the per-voxel variance between the two decoders."""
    device = recorder.device
    stack = pet.copy()
    spread = np.zeros_like(pet) if options.uncertainty else None
    generator = torch.Generator(device=device).manual_seed(options.seed * 3 + orientation.axis)
    batches = [indices[i : i + options.batch_size] for i in range(0, len(indices), options.batch_size)]
    for b, batch in enumerate(batches, start=1):
        cond = _condition(pet, t1, orientation, batch, device)
        shape = tuple(cond["ld_pet"].shape)
        for out in sample_progressive(diffusion, recorder, shape, cond, options.method, 0.0, generator):
            yield counter.step("infer", f"{orientation.value} batch {b}/{len(batches)} "
                                        f"step {out['step']}/{out['total']}")
        _put(stack, orientation, batch, out["x0"].float().cpu().numpy()[:, 0])
        if spread is not None and cond["t1"] is not None and recorder.last.get("x0_mri") is not None:
            half_gap = 0.5 * (recorder.last["x0_pet"] - recorder.last["x0_mri"]).float().cpu().numpy()[:, 0]
            _put(spread, orientation, batch, half_gap**2)  # variance of two values = (half their gap)^2
    return stack, spread


def _destripe(stack: np.ndarray, orientation: Orientation, options: InferenceOptions) -> np.ndarray:
    sigma = DEFAULT_SIGMA if options.destripe_sigma is None else options.destripe_sigma
    if sigma == 0:
        return stack
    return remove_stripes(stack, orientation.axis, _STRIPE_PLANE_AXIS[orientation], sigma=sigma)


def _fuse(estimates: dict[Orientation, np.ndarray], decoder_var: dict[Orientation, np.ndarray],
          uncertainty: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean over orientations and, when asked, the per-voxel standard deviation of all estimates."""
    volumes = np.stack(list(estimates.values()))
    fused = volumes.mean(axis=0).astype(np.float32)
    if not uncertainty:
        return fused, None
    # Law of total variance over all (orientation, decoder) estimates: spread of the orientation means plus the
    # mean within-orientation (decoder) variance.
    within = np.mean(list(decoder_var.values()), axis=0) if decoder_var else 0.0
    return fused, np.sqrt(volumes.var(axis=0) + within).astype(np.float32)


def _condition(
    pet: np.ndarray, t1: np.ndarray | None, orientation: Orientation, batch: Sequence[int], device: torch.device
) -> dict[str, torch.Tensor | None]:
    """cond for the slices `batch`: ld_pet and t1 [N x 1 x H x W] float32 on `device`; t1 None when MRI-free."""

    def take(volume: np.ndarray) -> torch.Tensor:
        slices = np.take(volume, np.asarray(batch), axis=orientation.axis)
        slices = np.moveaxis(slices, orientation.axis, 0)  # [N, H, W] in the slice's natural [row, column] order
        return torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32)[:, None]).to(device)

    if t1 is None:
        return {"ld_pet": take(pet), "t1": None, "t1_present": None}
    return {"ld_pet": take(pet), "t1": take(t1),
            "t1_present": torch.ones(len(batch), dtype=torch.bool, device=device)}


def _put(volume: np.ndarray, orientation: Orientation, batch: Sequence[int], slices: np.ndarray) -> None:
    """Write [N, H, W] `slices` back into `volume` [z, y, x] at `batch` along the orientation's axis."""
    index: list[Any] = [slice(None)] * 3
    index[orientation.axis] = np.asarray(batch)
    volume[tuple(index)] = np.moveaxis(slices, 0, orientation.axis)
