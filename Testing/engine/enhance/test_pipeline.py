"""The enhance job end to end (in-process): exact input grid and units, events, and every bad input."""

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

import enhance_subjects as es
from M2DiffSlicer.enhance import pipeline
from M2DiffSlicer.errors import BadInputError, ModelError, OutOfMemoryError, exit_code_for
from M2DiffSlicer.enhance.job import EnhanceJob, InferenceOptions
from M2DiffSlicer.enhance.pipeline import enhance, enhance_events
from M2DiffSlicer.imaging.model_grid import ModelGrid
from M2DiffSlicer.diffusion.respace import create_diffusion


class EchoModel:
    """x0 = the LD-PET: the enhanced image must then reproduce the input, which pins down grid and units."""

    def __call__(self, x_t, t, ld_pet, t1=None, t1_present=None):
        return {"x0": ld_pet, "x0_pet": ld_pet, "x0_mri": None, "var_pet": None, "var_mri": None}


@pytest.fixture
def echo_model(monkeypatch):
    grid = ModelGrid(spacing_mm=es.TEST_GRID["grid_spacing_mm"], size_xyz=tuple(es.TEST_GRID["grid_size"]))

    def load(weights, options, device):
        diffusion = create_diffusion(variance="fixed_large", respacing=f"trailing{options.steps}")
        return EchoModel(), diffusion, grid, {"path": "echo"}, None

    monkeypatch.setattr(pipeline, "_load_model", load)


def _job(subject, out: Path, **kwargs) -> EnhanceJob:
    fields = dict(pet=str(subject["pet"]), output=str(out / "enhanced.nii.gz"), weights=str(subject["weights"]),
                  steps=1, batch_size=32)
    fields.update(kwargs)
    return EnhanceJob.from_dict(fields)


def test_output_lies_exactly_on_the_input_grid_in_input_units(subject, tmp_path, echo_model):
    enhance(_job(subject, tmp_path))
    pet = sitk.ReadImage(str(subject["pet"]))
    out = sitk.ReadImage(str(tmp_path / "enhanced.nii.gz"))
    assert out.GetSize() == pet.GetSize()
    assert out.GetSpacing() == pet.GetSpacing()
    assert out.GetOrigin() == pet.GetOrigin()
    assert out.GetDirection() == pet.GetDirection()
    pet_array, out_array = sitk.GetArrayFromImage(pet), sitk.GetArrayFromImage(out)
    head = pet_array > 0.3 * pet_array.max()
    # An echoing model returns the LD-PET: only the 6 mm test grid's resampling blur separates them.
    assert abs(out_array[head].mean() / pet_array[head].mean() - 1) < 0.05
    assert np.corrcoef(out_array[head], pet_array[head])[0, 1] > 0.9


def test_job_with_a_real_tiny_model_writes_every_output_and_nothing_else(subject, tmp_path):
    job = _job(subject, tmp_path, t1=str(subject["t1"]), steps=2, uncertainty_output=str(tmp_path / "u.nii.gz"),
               transform_output=str(tmp_path / "t1_to_pet.tfm"), roi_csv=str(tmp_path / "roi.csv"),
               roi_json=str(tmp_path / "roi.json"), report=str(tmp_path / "report.json"))
    events = list(enhance_events(job))
    assert events[0]["event"] == "start" and events[-1]["event"] == "result"
    fractions = [e["fraction"] for e in events if e["event"] == "progress"]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert sorted(os.listdir(tmp_path)) == ["enhanced.nii.gz", "report.json", "roi.csv", "roi.json",
                                            "t1_to_pet.tfm", "u.nii.gz"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["registration"]["iterations"] > 0 and report["pet_scale"] > 0
    assert sitk.ReadImage(str(tmp_path / "u.nii.gz")).GetSize() == sitk.ReadImage(str(subject["pet"])).GetSize()
    roi = json.loads((tmp_path / "roi.json").read_text())
    assert roi["images"] == ["input", "enhanced"] and roi["reference_region"] == "cerebellum"
    assert any(row["name"] == "Frontal lobe L" and row["voxels"] > 0 for row in roi["rows"])


def test_cuda_request_without_gpu_warns_and_runs_on_the_cpu(subject, tmp_path, echo_model, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    events = list(enhance_events(_job(subject, tmp_path, device="cuda")))
    assert events[0]["event"] == "start" and events[0]["device"] == "cpu"
    assert events[1]["event"] == "warning" and "CUDA" in events[1]["message"]
    assert events[-1]["event"] == "result"


def test_job_json_round_trip_and_unknown_fields_are_rejected(subject, tmp_path):
    job = _job(subject, tmp_path, t1="t1.nii.gz", orientations=["axial"], roi_csv="r.csv")
    assert EnhanceJob.from_json(job.to_json()) == job
    with pytest.raises(BadInputError, match="unknown job field"):
        EnhanceJob.from_dict({**job.to_dict(), "stpes": 3})
    with pytest.raises(BadInputError, match="steps"):
        EnhanceJob.from_dict({**job.to_dict(), "steps": 0})


def _write(image: sitk.Image, path: Path) -> str:
    sitk.WriteImage(image, str(path))
    return str(path)


def _pet(subject) -> sitk.Image:
    return sitk.ReadImage(str(subject["pet"]))


def _from_array(array, like=None, spacing=(3.0, 3.0, 3.0)):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    if like is not None:
        image.CopyInformation(like)
    else:
        image.SetSpacing(spacing[: image.GetDimension()])
    return image


def _bad_pet_4d(subject, folder):
    frame = sitk.GetArrayFromImage(_pet(subject))
    return {"pet": _write(sitk.GetImageFromArray(np.stack([frame, frame]), isVector=False), folder / "pet4d.nii.gz")}


def _bad_pet_2d(subject, folder):
    return {"pet": _write(_from_array(sitk.GetArrayFromImage(_pet(subject))[30], spacing=(3.0, 3.0)),
                          folder / "pet2d.nii.gz")}


def _bad_pet_constant(subject, folder):
    return {"pet": _write(_from_array(np.full((40, 48, 40), 7.0)), folder / "constant.nii.gz")}


def _bad_pet_empty(subject, folder):
    return {"pet": _write(_from_array(np.zeros((40, 48, 40))), folder / "empty.nii.gz")}


def _bad_pet_nan(subject, folder):
    array = sitk.GetArrayFromImage(_pet(subject))
    array[20, 20, 20] = np.nan
    # NRRD keeps the NaN for the value check; NIfTI NaN (zeroed by ITK's reader) is caught by read_image itself.
    return {"pet": _write(_from_array(array, _pet(subject)), folder / "nan.nrrd")}


def _bad_pet_absurd_spacing(subject, folder):
    image = _pet(subject)
    image.SetSpacing((30.0, 30.0, 30.0))
    return {"pet": _write(image, folder / "spacing.nii.gz")}


def _bad_swapped(subject, folder):
    return {"pet": str(subject["t1"]), "t1": str(subject["pet"])}


def _bad_t1_slab(subject, folder):
    # A header offset alone is undone by the centre-of-mass start of registration; a T1 that images only a
    # 16 mm slab of the head cannot cover it whatever the alignment.
    t1 = sitk.ReadImage(str(subject["t1"]))
    size = list(t1.GetSize())
    return {"t1": _write(sitk.RegionOfInterest(t1, [size[0], size[1], 8], [0, 0, size[2] // 2]),
                         folder / "t1_slab.nii.gz")}


def _bad_too_large(subject, folder):
    (folder / "huge.raw").write_bytes(b"")
    (folder / "huge.nhdr").write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4000 4000 4000\n"
                                      "spacings: 1 1 1\nencoding: raw\nendian: little\ndata file: huge.raw\n")
    return {"pet": str(folder / "huge.nhdr")}


def _bad_weights_missing(subject, folder):
    return {"weights": str(folder / "no-such-model.pt")}


def _bad_weights_corrupt(subject, folder):
    (folder / "corrupt.pt").write_bytes(b"PK\x03\x04 this is not a checkpoint")
    return {"weights": str(folder / "corrupt.pt")}


def _bad_output_folder(subject, folder):
    return {"output": str(folder / "missing-folder" / "enhanced.nii.gz")}


BAD_INPUTS = [
    (_bad_pet_4d, BadInputError), (_bad_pet_2d, BadInputError), (_bad_pet_constant, BadInputError),
    (_bad_pet_empty, BadInputError), (_bad_pet_nan, BadInputError), (_bad_pet_absurd_spacing, BadInputError),
    (_bad_swapped, BadInputError), (_bad_t1_slab, BadInputError), (_bad_too_large, OutOfMemoryError),
    (_bad_weights_missing, ModelError), (_bad_weights_corrupt, ModelError), (_bad_output_folder, BadInputError),
]


@pytest.mark.parametrize("make, error", BAD_INPUTS, ids=[m.__name__[5:] for m, _ in BAD_INPUTS])
def test_bad_input_fails_with_its_error_leaving_inputs_untouched_and_no_output(subject, tmp_path, make, error):
    inputs = tmp_path / "in"
    out = tmp_path / "out"
    inputs.mkdir()
    out.mkdir()
    fields = {"t1": str(subject["t1"]), **make(subject, inputs)}
    job = _job(subject, out, **{"output": str(out / "enhanced.nii.gz"), "roi_csv": str(out / "roi.csv"), **fields})
    given = [Path(p) for p in (job.pet, job.t1, job.weights) if p and Path(p).is_file()]
    before = {p: es.digest(p) for p in given}
    with pytest.raises(error) as raised:
        list(enhance_events(job))
    assert exit_code_for(raised.value) == error.exit_code
    assert {p: es.digest(p) for p in given} == before
    assert os.listdir(out) == []


def test_negative_voxels_are_a_warning_not_an_error(subject, tmp_path, echo_model):
    array = sitk.GetArrayFromImage(_pet(subject))
    array[:3] = -5.0
    pet = _write(_from_array(array, _pet(subject)), tmp_path / "negative.nii.gz")
    out = tmp_path / "out"
    out.mkdir()
    events = list(enhance_events(_job(subject, out, pet=pet)))
    assert any(e["event"] == "warning" and "negative" in e["message"] for e in events)
    assert events[-1]["event"] == "result"
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out / "enhanced.nii.gz"))).min() >= 0


def test_closing_the_event_generator_midway_leaves_no_files(subject, tmp_path):
    events = enhance_events(_job(subject, tmp_path, steps=3, report=str(tmp_path / "report.json")))
    for event in events:
        if event["event"] == "progress" and event["phase"] == "infer":
            break
    events.close()
    assert os.listdir(tmp_path) == []


def test_more_steps_than_the_trained_schedule_is_a_bad_input(subject, tmp_path):
    with pytest.raises(BadInputError, match="steps=2000"):
        list(enhance_events(_job(subject, tmp_path, steps=2000)))
    assert os.listdir(tmp_path) == []


def test_a_signal_during_the_final_renames_waits_until_every_output_is_in_place(tmp_path, monkeypatch):
    # The worker's handler raises on a second SIGTERM; arriving between two renames it must not mix old and new.
    class SecondCancel(Exception):
        pass

    def raise_second_cancel(signum, frame):
        raise SecondCancel

    staged = pipeline._StagedOutputs()
    destinations = [tmp_path / "enhanced.nii.gz", tmp_path / "roi.csv"]
    for destination in destinations:
        destination.write_text("old")
        staged.path_for(destination).write_text("new")
    real_replace = os.replace

    def replace_then_signal(source, destination):
        real_replace(source, destination)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(pipeline.os, "replace", replace_then_signal)
    previous = signal.signal(signal.SIGTERM, raise_second_cancel)
    try:
        with pytest.raises(SecondCancel):
            staged.commit()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert [d.read_text() for d in destinations] == ["new", "new"]


def test_a_model_trained_on_a_truncated_process_is_sampled_on_it(tmp_path):
    """meta["train_config"]["truncate_at"] decides where sampling starts; more steps than the process has is a
    bad input."""
    from M2DiffSlicer.model.checkpoint import save_checkpoint
    from M2DiffSlicer.model.config import model_config
    from M2DiffSlicer.model.unet import build_model

    config = model_config("tiny")
    weights = tmp_path / "truncated.pt"
    save_checkpoint(weights, build_model(config), config,
                    meta={"step": 0, "train_config": dict(es.TEST_GRID, truncate_at=80)})
    _, diffusion, _, _, _ = pipeline._load_model(str(weights), InferenceOptions(steps=2), torch.device("cpu"))
    assert diffusion.timestep_map == [39, 79]
    _, whole, _, _, _ = pipeline._load_model(str(es.tiny_checkpoint(tmp_path / "whole.pt")), InferenceOptions(steps=2),
                                          torch.device("cpu"))
    assert whole.timestep_map == [499, 999]
    with pytest.raises(BadInputError, match="steps=81"):
        pipeline._load_model(str(weights), InferenceOptions(steps=81), torch.device("cpu"))
