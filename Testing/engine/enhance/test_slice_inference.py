"""Multi-orientation inference: slice stacking, empty-slice skipping, seeding, fusion, uncertainty, devices."""

import numpy as np
import pytest
import torch

from M2DiffSlicer.model.config import model_config
from M2DiffSlicer.model.unet import build_model
from M2DiffSlicer.imaging.orientation import Orientation
from M2DiffSlicer.enhance.job import InferenceOptions
from M2DiffSlicer.enhance.slice_inference import resolve_device, run_inference, sampled_slice_indices, total_steps
from M2DiffSlicer.diffusion.respace import create_diffusion


class EchoModel:
    """x0 = the LD-PET (and, for the MRI decoder, LD-PET + `gap`): a network whose answer is known."""

    def __init__(self, gap: float = 0.0):
        self.gap = gap
        self.batch_shapes = []

    def __call__(self, x_t, t, ld_pet, t1=None, t1_present=None):
        self.batch_shapes.append(tuple(ld_pet.shape))
        x0_mri = None if t1 is None else ld_pet + self.gap
        x0 = ld_pet if t1 is None else 0.5 * (ld_pet + x0_mri)
        return {"x0": x0, "x0_pet": ld_pet, "x0_mri": x0_mri, "var_pet": None, "var_mri": None}


def _ball(shape=(32, 32, 32), radius=10.0):
    grid = np.indices(shape, dtype=np.float32)
    r2 = sum((g - (n - 1) / 2) ** 2 for g, n in zip(grid, shape))
    return np.where(r2 < radius**2, 1.0 + 0.02 * grid[0], 0.0).astype(np.float32)


def _run(model, pet, t1=None, **kwargs):
    options = InferenceOptions(device="cpu", **kwargs)
    diffusion = create_diffusion(variance="fixed_large", respacing=f"trailing{options.steps}")
    gen = run_inference(model, diffusion, pet, t1, options, torch.device("cpu"))
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_restacked_orientations_put_every_slice_back_in_place():
    pet = _ball()
    _, result = _run(EchoModel(), pet, steps=2, batch_size=7, destripe_sigma=0)
    for orientation in Orientation:
        np.testing.assert_allclose(result.per_orientation[orientation], pet, atol=1e-6)
    np.testing.assert_allclose(result.volume, pet, atol=1e-6)


def test_empty_slices_are_skipped_and_keep_the_ld_pet():
    pet = _ball()
    model = EchoModel()
    _, result = _run(model, pet, steps=1, batch_size=64, orientations=("axial",), destripe_sigma=0)
    sampled = sampled_slice_indices(pet, Orientation.AXIAL)
    assert result.sampled_slices == {"axial": len(sampled)}
    assert result.skipped_slices == {"axial": 32 - len(sampled)}
    assert 0 < len(sampled) < 32
    assert model.batch_shapes == [(len(sampled), 1, 32, 32)]


def test_one_progress_event_per_batch_and_step():
    pet = _ball()
    options = dict(steps=3, batch_size=8)
    events, _ = _run(EchoModel(), pet, **options)
    assert len(events) == total_steps(pet, InferenceOptions(**options)) == events[-1]["total"]
    assert [e["step"] for e in events] == list(range(1, len(events) + 1))
    assert [e["phase"] for e in events].count("fuse") == 3
    assert events[-1]["phase"] == "fuse"


def test_same_seed_gives_the_same_volume_and_another_seed_differs():
    torch.manual_seed(0)
    config = model_config("tiny")
    model = build_model(config).eval()
    with torch.no_grad():  # untrained output layers are zero, which would hide the noise; randomise them
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.1)
    pet = _ball()
    t1 = 0.5 * pet
    diffusion = create_diffusion(variance=config.variance, respacing="trailing2")

    def volume(seed):
        options = InferenceOptions(steps=2, seed=seed, orientations=("coronal",), device="cpu")
        gen = run_inference(model, diffusion, pet, t1, options, torch.device("cpu"))
        while True:
            try:
                next(gen)
            except StopIteration as stop:
                return stop.value.volume

    a, b, c = volume(3), volume(3), volume(4)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).max() > 1e-4


def test_uncertainty_is_the_spread_of_decoders_and_orientations():
    pet = _ball()
    _, result = _run(EchoModel(gap=0.2), pet, 0.5 * pet, steps=1, destripe_sigma=0, uncertainty=True)
    # The orientations agree inside the head, and two decoders 0.2 apart have a standard deviation of 0.1.
    inside = pet > 0.5
    np.testing.assert_allclose(result.uncertainty[inside], 0.1, atol=1e-5)


def test_no_uncertainty_unless_asked():
    _, result = _run(EchoModel(), _ball(), steps=1)
    assert result.uncertainty is None


def test_cuda_request_without_gpu_falls_back_to_cpu_with_a_warning(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    device, warning = resolve_device("cuda")
    assert device.type == "cpu" and "CUDA" in warning
    assert resolve_device("auto") == (torch.device("cpu"), None)


@pytest.mark.parametrize("kwargs, name", [
    ({"steps": 0}, "steps"), ({"batch_size": 0}, "batch_size"), ({"device": "tpu"}, "device"),
    ({"orientations": ("axial", "axial")}, "orientations"), ({"orientations": ("oblique",)}, "orientations"),
    ({"threads": 0}, "threads"),
])
def test_bad_options_raise_value_error_naming_the_option(kwargs, name):
    with pytest.raises(ValueError, match=name):
        InferenceOptions(**kwargs)
