"""The enhance job as a generator of events: validate, register, prepare, infer, fuse, restore, ROI table, write.

`enhance_events(job)` yields the worker protocol's events (docs/DEVELOPING.md "Worker protocol") except `error`,
which belongs to whoever catches the exception: the worker prints every event as a JSON line, the CLI drives a
progress bar. Cancelling = setting the `cancel` event (checked between steps, also inside registration) or
closing the generator; either way nothing is left on disk, because every output is first written to a temporary
file beside its destination and all of them are renamed into place together at the very end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import SimpleITK as sitk
import torch

from ..imaging import validation
from ..imaging.atlas import atlas_labels_for_subject
from ..atomic import temp_path_beside
from ..model.catalogue import resolve_weights
from ..model.checkpoint import read_checkpoint
from ..errors import BadInputError, CancelledError, ModelError
from ..imaging.input_profile import input_profile
from .input_check import out_of_range_messages, profile_for_report, training_record
from .job import OUTPUT_FIELDS, EnhanceJob, InferenceOptions
from .safeguard import anchor_uptake, blend, safeguard_for
from .slice_inference import InferenceResult, device_report, resolve_device, run_inference
from ..imaging.model_grid import ModelGrid, PreparedInputs, prepare_inputs, restore_output
from ..imaging.registration import register_rigid
from ..diffusion.respace import RespacingError, trained_process_diffusion
from ..imaging.roi import roi_table, write_roi_csv, write_roi_json
from ..imaging.volumes import read_image

T = TypeVar("T")

# Share of the overall progress bar per phase (renormalised over the phases a job runs); measured proportions
# of a CPU run of the small preset, where sampling dominates.
# Inference interleaves sampling and destriping (each orientation is destriped once sampled), so "fuse" events
# share the "infer" span and its step count.
PHASE_WEIGHTS = {"validate": 0.03, "register": 0.10, "prepare": 0.03, "infer": 0.77, "restore": 0.02,
                 "roi": 0.04, "write": 0.01}
_SPAN_OF_PHASE = {"fuse": "infer"}


class _Progress:
    """Turns (phase, step, total) into progress events with the overall fraction."""

    def __init__(self, phases: list[str]) -> None:
        weights = {p: PHASE_WEIGHTS[p] for p in phases}
        norm = sum(weights.values())
        self.start, self.weight, offset = {}, {}, 0.0
        for phase in PHASE_WEIGHTS:
            if phase in weights:
                self.start[phase], self.weight[phase] = offset, weights[phase] / norm
                offset += self.weight[phase]

    def __call__(self, phase: str, step: int, total: int, message: str) -> dict[str, Any]:
        span = _SPAN_OF_PHASE.get(phase, phase)
        done = min(max(step / total, 0.0), 1.0) if total else 1.0
        fraction = self.start[span] + self.weight[span] * done
        return {"event": "progress", "phase": phase, "step": int(step), "total": int(total),
                "fraction": round(min(fraction, 1.0), 4), "message": message}


class _StagedOutputs:
    """Outputs written beside their destinations under temporary names, renamed into place only by `commit`."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def path_for(self, destination: str | os.PathLike) -> Path:
        """A fresh temporary path in the destination's folder, with the same extension (format detection)."""
        temp = temp_path_beside(destination)
        self._staged.append((temp, Path(destination)))
        return temp

    def commit(self) -> None:
        with _termination_signals_deferred():
            for temp, destination in self._staged:
                os.replace(temp, destination)
        self._staged = []

    def discard(self) -> None:
        for temp, _ in self._staged:
            temp.unlink(missing_ok=True)
        self._staged = []


@contextlib.contextmanager
def _termination_signals_deferred() -> Iterator[None]:
    """Hold SIGTERM/SIGINT back until the block ends, then deliver them: a second Cancel (whose Python handler
    raises, see worker.py) must not land between two renames and leave old and new outputs mixed. Python runs
    signal handlers in the main thread only, so elsewhere nothing can interrupt the block; a default handler
    (process death) cannot be deferred from Python and is left alone."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    replaced = {
        signum: signal.signal(signum, lambda number, frame: received.append(number))
        for signum in (signal.SIGTERM, signal.SIGINT)
        if callable(signal.getsignal(signum))
    }
    try:
        yield
    finally:
        for signum, handler in replaced.items():
            signal.signal(signum, handler)
        for signum in received:
            signal.raise_signal(signum)


def _check(cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise CancelledError("cancelled by the user")


def enhance_events(job: EnhanceJob, cancel: threading.Event | None = None) -> Iterator[dict[str, Any]]:
    """Run `job`, yielding start / progress / warning events and finally the result event.

    :param job: the EnhanceJob.
    :param cancel: set it (e.g. from a signal handler) to stop between steps with CancelledError.
    :raises M2DiffError: BadInputError, OutOfMemoryError, ModelError, CancelledError (see errors.py).
    """
    run = _Run(job, cancel)
    device, device_warning = resolve_device(job.options.device)
    yield {"event": "start", **device_report(device)}
    if device_warning:
        yield run.warn(device_warning)
    try:
        pet, t1, labels, model = yield from run.timed("validate", run.validate(device))
        registration = (yield from run.timed("register", run.register(pet, t1))) if t1 is not None else None
        prepared = yield from run.timed("prepare", run.prepare(pet, t1, registration, model.grid))
        yield from run.check_distribution(prepared, registration, model)
        result = yield from run.timed("infer_and_fuse", run.infer(model, prepared, device))
        enhanced, uncertainty = yield from run.timed("restore", run.restore(result, prepared, pet))
        enhanced, uncertainty = yield from run.apply_safeguard(pet, enhanced, uncertainty, model)
        table = (yield from run.timed("roi", _roi_table(pet, enhanced, t1, registration, labels, run.progress,
                                                         cancel))) if run.wants_roi else None
        _check(cancel)
        yield from run.timed("write", run.write(enhanced, uncertainty, registration, table))
        report = run.report(device, model, registration, prepared, result)
        if job.report:
            run.staged.path_for(job.report).write_text(json.dumps(_finite(report), indent=1), encoding="utf-8")
        _check(cancel)
        run.staged.commit()
        yield run.progress("write", 1, 1, "done")
        yield {"event": "result", "outputs": {name: report["outputs"].get(name) for name in OUTPUT_FIELDS},
               "registration": report["registration"], "elapsed_s": report["elapsed_s"]}
    finally:
        run.staged.discard()


@dataclasses.dataclass
class _LoadedModel:
    network: Any
    diffusion: Any
    grid: ModelGrid
    info: dict[str, Any]
    training: dict[str, Any] | None  # the catalogue's record of how the weights were trained; None for a user's


class _Run:
    """One job's state across its phases; each phase is a generator of events that returns its product."""

    def __init__(self, job: EnhanceJob, cancel: threading.Event | None) -> None:
        self.job, self.cancel = job, cancel
        self.started = time.monotonic()
        self.wants_roi = job.roi_csv is not None or job.roi_json is not None
        self.progress = _Progress(["validate", *(["register"] if job.t1 else []), "prepare", "infer", "restore",
                                   *(["roi"] if self.wants_roi else []), "write"])
        self.timings: dict[str, float] = {}
        self.warnings: list[str] = []
        self.staged = _StagedOutputs()
        self.user_transform: sitk.Transform | None = None  # read with the inputs
        self.input_profile: dict[str, Any] = {}
        self.noise_level = float("nan")
        self.safeguard_report: dict[str, Any] | None = None

    def warn(self, message: str) -> dict[str, Any]:
        self.warnings.append(message)
        return {"event": "warning", "message": message}

    def timed(self, name: str, phase: Generator[dict[str, Any], None, T]) -> Generator[dict[str, Any], None, T]:
        """Run one phase, record its wall time, and check for cancel after it."""
        clock = time.monotonic()
        value = yield from phase
        self.timings[name] = time.monotonic() - clock
        _check(self.cancel)
        return value

    def validate(self, device):
        """Headers, voxels, paths, memory, modalities; then the weights."""
        job = self.job
        yield self.progress("validate", 0, 3, "reading inputs")
        pet, t1, labels, self.user_transform = _read_inputs(job)
        _check(self.cancel)
        input_paths = [p for p in (job.pet, job.t1, job.roi, job.transform) if p]
        for message in validation.validate_inputs(pet, t1, job.outputs().values(), pet_name=job.pet,
                                                  t1_name=job.t1 or "T1", inputs=input_paths):
            yield self.warn(message)
        yield self.progress("validate", 2, 3, "loading the model")
        model = _LoadedModel(*_load_model(job.weights, job.options, device))
        yield self.progress("validate", 3, 3, "inputs and model checked")
        return validation.nonnegative_copy(pet), t1, labels, model

    def register(self, pet: sitk.Image, t1: sitk.Image):
        yield self.progress("register", 0, 1, "registering the T1 to the PET")
        registration = yield from _register(pet, t1, self.user_transform, self.progress, self.cancel)
        validation.check_overlap(pet, t1, registration.transform, t1_name=self.job.t1)
        yield self.progress("register", 1, 1, f"registered (NMI {registration.nmi_after:.3f})")
        return registration

    def prepare(self, pet: sitk.Image, t1: sitk.Image | None, registration, grid: ModelGrid):
        yield self.progress("prepare", 0, 1, "resampling to the model grid")
        prepared = prepare_inputs(pet, t1, registration.transform if registration else None, grid)
        yield self.progress("prepare", 1, 1, f"PET scale {prepared.scale:.4g}")
        return prepared

    def check_distribution(self, prepared: PreparedInputs, registration, model: _LoadedModel):
        """Warn, with the measured value and the trained range, about an input unlike the model's training data."""
        profile = input_profile(prepared.pet)
        if registration is not None:
            profile["registration_nmi"] = registration.nmi_after
        ranges = None if model.training is None else model.training.get("input_ranges")
        self.input_profile = profile_for_report(profile, ranges)
        self.noise_level = profile["noise_level"]
        for message in out_of_range_messages(profile, ranges):
            yield self.warn(message)

    def infer(self, model: _LoadedModel, prepared: PreparedInputs, device):
        inference = run_inference(model.network, model.diffusion, prepared.pet, prepared.t1, self.job.options,
                                  device)
        return (yield from _relay(inference, self.progress, self.cancel))

    def restore(self, result: InferenceResult, prepared: PreparedInputs, pet: sitk.Image):
        """The estimate (and its uncertainty) on the input PET grid, in its units."""
        yield self.progress("restore", 0, 1, "restoring the input grid and units")
        enhanced = restore_output(result.volume, prepared, pet)
        uncertainty = None if result.uncertainty is None else _uncertainty_on_input(result.uncertainty, prepared, pet)
        yield self.progress("restore", 1, 1, "restored")
        return enhanced, uncertainty

    def apply_safeguard(self, pet: sitk.Image, enhanced: sitk.Image, uncertainty: sitk.Image | None,
                        model: _LoadedModel):
        """Blend with the input when it is cleaner than the training data, then give the output back the input's
        coarse uptake (enhance/safeguard.py); say so."""
        safeguard = safeguard_for(model.training) if self.job.options.safeguard else None
        if safeguard is None:
            return enhanced, uncertainty
        weight = safeguard.weight(self.noise_level)
        self.safeguard_report = {"weight": round(weight, 3), "engaged": weight < 1.0,
                                 "noise_level": self.noise_level, "noise_off": safeguard.noise_off,
                                 "noise_full": safeguard.noise_full, "anchor_fwhm_mm": None, "anchor_shift_pct": None}
        if weight < 1.0:
            yield self.warn(f"safeguard engaged: the input is cleaner than the model's training data (noise level "
                            f"{self.noise_level:.3g}, full correction from {safeguard.noise_full:.3g}); the output "
                            f"keeps {weight:.0%} of the network's correction")
            enhanced = blend(pet, enhanced, weight)
            uncertainty = None if uncertainty is None else uncertainty * weight
        fwhm = safeguard.anchor_fwhm(self.noise_level)
        if fwhm is not None and weight > 0.0:
            enhanced, shift = anchor_uptake(pet, enhanced, fwhm)
            self.safeguard_report.update(anchor_fwhm_mm=round(fwhm, 2), anchor_shift_pct=round(shift, 3))
            yield self.progress("restore", 1, 1, f"uptake anchor ({fwhm:.0f} mm): the input's coarse uptake kept, "
                                                 f"a {shift:.1f} % correction")
        return enhanced, uncertainty

    def write(self, enhanced: sitk.Image, uncertainty: sitk.Image | None, registration, table):
        """Write every output under a temporary name beside its destination (renamed into place by commit)."""
        job, staged = self.job, self.staged
        yield self.progress("write", 0, 1, "writing outputs")
        sitk.WriteImage(enhanced, str(staged.path_for(job.output)), useCompression=True)
        if uncertainty is not None:
            sitk.WriteImage(uncertainty, str(staged.path_for(job.uncertainty_output)), useCompression=True)
        if job.transform_output and registration is not None:
            sitk.WriteTransform(registration.transform, str(staged.path_for(job.transform_output)))
        if table is not None and job.roi_csv:
            write_roi_csv(table, staged.path_for(job.roi_csv))
        if table is not None and job.roi_json:
            write_roi_json(table, staged.path_for(job.roi_json))

    def report(self, device, model: _LoadedModel, registration, prepared: PreparedInputs,
               result: InferenceResult) -> dict[str, Any]:
        """report.json's content (also the source of the result event)."""
        outputs = {name: path for name, path in self.job.outputs().items()
                   if path and (name != "transform_output" or registration is not None)}
        grid = model.grid
        return {"job": self.job.to_dict(), "device": device_report(device), "model": model.info,
                "registration": None if registration is None else _finite(registration.as_dict()),
                "pet_scale": prepared.scale, "input_profile": self.input_profile, "safeguard": self.safeguard_report,
                "model_grid": {"spacing_mm": grid.spacing_mm, "size_xyz": list(grid.size_xyz)},
                "sampled_slices": result.sampled_slices, "skipped_slices": result.skipped_slices,
                "warnings": self.warnings, "timings_s": {k: round(v, 3) for k, v in self.timings.items()},
                "elapsed_s": round(time.monotonic() - self.started, 3), "outputs": outputs}


def enhance(job: EnhanceJob, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run `job` to completion and return its result event."""
    result: dict[str, Any] = {}
    for event in enhance_events(job, cancel):
        result = event
    return result


def _read_inputs(job: EnhanceJob) -> tuple[sitk.Image, sitk.Image | None, sitk.Image | None, sitk.Transform | None]:
    validation.check_file_header(job.pet, job.pet)
    pet = read_image(job.pet)
    t1 = None
    if job.t1:
        validation.check_file_header(job.t1, job.t1)
        t1 = read_image(job.t1)
    labels = read_image(job.roi) if job.roi else None
    transform = None
    if job.transform:
        if not job.t1:
            raise BadInputError("a T1->PET transform was given without a T1")
        try:
            transform = sitk.ReadTransform(job.transform)
        except RuntimeError as error:
            reason = str(error).strip().splitlines()[-1]
            raise BadInputError(f"cannot read transform {job.transform}: {reason}") from None
    return pet, t1, labels, transform


def _load_model(weights: str | None, options: InferenceOptions, device
                ) -> tuple[Any, Any, ModelGrid, dict, dict | None]:
    """The network on `device`, the respaced diffusion, the model grid it was trained on, a summary and the
    catalogue's training record."""
    path, expected_sha256 = resolve_weights(weights)
    loaded = read_checkpoint(path, expected_sha256, device)  # one read: the sha256 is of the bytes loaded
    model, config, meta = loaded.model, loaded.config, loaded.meta
    trained = meta.get("train_config", {})
    try:
        grid = ModelGrid(spacing_mm=float(trained.get("grid_spacing_mm", ModelGrid.spacing_mm)),
                         size_xyz=tuple(int(n) for n in trained.get("grid_size", ModelGrid.size_xyz)))
        diffusion = trained_process_diffusion(trained, config.variance, options.steps)
    except RespacingError as error:
        raise BadInputError(f"steps={options.steps} is not possible with this model: {error}") from None
    except ValueError as error:
        raise ModelError(f"{path}: unusable training settings in its meta: {error}") from None
    if options.channels_last:
        model = model.to(memory_format=torch.channels_last)
    info = {"path": str(path), "sha256": loaded.sha256, "config": config.to_dict(),
            "trained_steps": meta.get("step")}
    return model, diffusion, grid, _finite(info), training_record(path)


def _in_thread(work: Callable[[Callable[..., None]], T], cancel: threading.Event | None,
               on_tick: Callable[[tuple], dict[str, Any]]) -> Generator[dict[str, Any], None, T]:
    """Run `work(callback)` in a thread, turning each callback call into an event; stop it on cancel or close.

    SimpleITK optimisers call back into Python once per iteration; raising there aborts them, which is how a
    cancel reaches a registration that may otherwise run for seconds.
    """
    ticks: queue.Queue = queue.Queue()
    stop = threading.Event()
    box: dict[str, Any] = {}

    def callback(*args: Any) -> None:
        if stop.is_set():
            raise CancelledError("cancelled by the user")
        ticks.put(args)

    def target() -> None:
        try:
            box["value"] = work(callback)
        except BaseException as error:  # handed to the generator's thread below
            box["error"] = error
        finally:
            ticks.put(None)

    thread = threading.Thread(target=target, name="m2diff-pipeline-step", daemon=True)
    thread.start()
    try:
        while True:
            if cancel is not None and cancel.is_set():
                stop.set()
            try:
                item = ticks.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None:
                break
            yield on_tick(item)
    finally:
        stop.set()
        thread.join()
    if stop.is_set() and cancel is not None and cancel.is_set():
        raise CancelledError("cancelled by the user")
    if "error" in box:
        raise box["error"]
    return box["value"]


def _register(pet, t1, user_transform, progress: _Progress, cancel):
    if user_transform is not None:
        return register_rigid(pet, t1, initial_transform=user_transform, optimize=False)
    # The optimiser's iteration budget (3 levels x 100) is an upper bound; most runs stop well before it.
    budget = 300

    def tick(item: tuple) -> dict[str, Any]:
        iteration, metric, level = item
        return progress("register", min(iteration, budget - 1), budget, f"level {level + 1}/3, MI {metric:.4f}")

    return (yield from _in_thread(lambda callback: register_rigid(pet, t1, progress=callback), cancel, tick))


def _roi_table(pet, enhanced, t1, registration, labels, progress: _Progress, cancel):
    yield progress("roi", 0, 2, "ROI labels")
    if labels is not None:
        names, reference = None, None  # a user labelmap has no names, so no reference region to look up
    else:
        transform = registration.transform if registration is not None else None

        def tick(item: tuple) -> dict[str, Any]:
            return progress("roi", 0, 2, f"atlas registration, iteration {item[0]}")

        labels, names, _ = yield from _in_thread(
            lambda callback: atlas_labels_for_subject(pet, t1, transform, progress=callback), cancel, tick)
        reference = "cerebellum"
    _check(cancel)
    yield progress("roi", 1, 2, "ROI statistics")
    table = roi_table({"input": pet, "enhanced": enhanced}, labels, names, reference_region=reference)
    yield progress("roi", 2, 2, f"{len(table['rows'])} ROIs")
    return table


def _relay(inner: Generator[dict[str, Any], None, T], progress: _Progress,
           cancel: threading.Event | None) -> Generator[dict[str, Any], None, T]:
    """Forward a step generator's progress dicts as events, checking for cancel after each; return its value."""
    try:
        while True:
            _check(cancel)
            try:
                item = next(inner)
            except StopIteration as stop:
                return stop.value
            yield progress(item["phase"], item["step"], item["total"], item["message"])
    finally:
        inner.close()


def _uncertainty_on_input(volume: np.ndarray, prepared: PreparedInputs, pet: sitk.Image) -> sitk.Image:
    """The model-grid std map in PET units on the input grid (0 where the model grid does not reach)."""
    image = sitk.GetImageFromArray((volume * prepared.scale).astype(np.float32))
    image.CopyInformation(prepared.reference)
    return sitk.Resample(image, pet, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def _finite(value: Any) -> Any:
    """NaN/Inf -> None, recursively, so every event and report is strict JSON."""
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
