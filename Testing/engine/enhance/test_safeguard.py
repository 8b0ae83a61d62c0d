"""The safeguard: a clean input is not degraded (the network's correction fades out), and the run says so."""

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

import enhance_subjects as es
from M2DiffSlicer.diffusion.respace import create_diffusion
from M2DiffSlicer.enhance import pipeline
from M2DiffSlicer.enhance.job import EnhanceJob
from M2DiffSlicer.enhance.safeguard import ANCHOR_FWHM_RANGE_MM, ANCHOR_REFERENCE_NOISE, Safeguard, anchor_uptake, \
    blend, safeguard_for
from M2DiffSlicer.imaging.model_grid import ModelGrid


class DoublingModel:
    """x0 = 2 x the LD-PET: a 'correction' as large as the image, so any blend is visible."""

    def __call__(self, x_t, t, ld_pet, t1=None, t1_present=None):
        return {"x0": 2 * ld_pet, "x0_pet": 2 * ld_pet, "x0_mri": None, "var_pet": None, "var_mri": None}


@pytest.fixture
def doubling_model(monkeypatch):
    grid = ModelGrid(spacing_mm=es.TEST_GRID["grid_spacing_mm"], size_xyz=tuple(es.TEST_GRID["grid_size"]))

    def load(weights, options, device):
        return DoublingModel(), create_diffusion(variance="fixed_large", respacing="trailing1"), grid, {"path": "x"}, None

    monkeypatch.setattr(pipeline, "_load_model", load)


def _run(subject, tmp_path, monkeypatch, ramp: Safeguard | None, **fields):
    monkeypatch.setattr(pipeline, "safeguard_for", lambda training: ramp)
    job = EnhanceJob.from_dict({"pet": str(subject["pet"]), "output": str(tmp_path / "out.nii.gz"),
                                "report": str(tmp_path / "report.json"), "steps": 1, **fields})
    events = list(pipeline.enhance_events(job))
    output = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "out.nii.gz")))
    return output, json.loads((tmp_path / "report.json").read_text()), events


def _input(subject) -> np.ndarray:
    return np.clip(sitk.GetArrayFromImage(sitk.ReadImage(str(subject["pet"]), sitk.sitkFloat32)), 0, None)


def test_a_clean_input_comes_back_unchanged_and_the_run_says_why(subject, tmp_path, monkeypatch, doubling_model):
    output, report, events = _run(subject, tmp_path, monkeypatch, Safeguard(noise_off=5.0, noise_full=6.0))
    np.testing.assert_allclose(output, _input(subject), rtol=1e-6, atol=1e-6)
    assert report["safeguard"]["engaged"] and report["safeguard"]["weight"] == 0.0
    assert any("safeguard engaged" in e["message"] for e in events if e["event"] == "warning")


def test_a_noisy_input_gets_the_full_correction(subject, tmp_path, monkeypatch, doubling_model):
    raw, _, _ = _run(subject, tmp_path, monkeypatch, None)
    output, report, events = _run(subject, tmp_path, monkeypatch, Safeguard(noise_off=0.0, noise_full=1e-6))
    np.testing.assert_array_equal(output, raw)
    assert output.max() > 1.5 * _input(subject).max()
    assert report["safeguard"]["weight"] == 1.0 and not report["safeguard"]["engaged"]
    assert not any("safeguard" in e.get("message", "") for e in events if e["event"] == "warning")


def test_no_safeguard_flag_and_uncalibrated_models_use_the_network_as_is(subject, tmp_path, monkeypatch,
                                                                          doubling_model):
    for ramp, flag in ((Safeguard(5.0, 6.0), False), (None, True)):
        output, report, _ = _run(subject, tmp_path, monkeypatch, ramp, safeguard=flag)
        assert report["safeguard"] is None
        assert output.max() > 1.5 * _input(subject).max()


@pytest.mark.parametrize("noise, weight", [(0.0, 0.0), (0.01, 0.0), (0.015, 0.5), (0.02, 1.0), (0.3, 1.0),
                                           (math.nan, 1.0)])
def test_the_weight_ramps_linearly_between_its_ends(noise, weight):
    assert Safeguard(noise_off=0.01, noise_full=0.02).weight(noise) == pytest.approx(weight)


def test_a_ramp_must_rise():
    with pytest.raises(ValueError, match="noise_off < noise_full"):
        Safeguard(0.02, 0.01)


def test_blend_keeps_the_geometry_and_mixes_voxelwise():
    pet = sitk.GetImageFromArray(np.full((4, 5, 6), 2.0, np.float32))
    pet.SetSpacing((1.5, 2.0, 2.5))
    enhanced = sitk.GetImageFromArray(np.full((4, 5, 6), 4.0, np.float32))
    enhanced.CopyInformation(pet)
    mixed = blend(pet, enhanced, 0.25)
    assert mixed.GetSpacing() == pet.GetSpacing()
    np.testing.assert_allclose(sitk.GetArrayFromImage(mixed), 2.5)


def _volume(array: np.ndarray, spacing=(2.0, 2.0, 2.0)) -> sitk.Image:
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing(spacing)
    return image


def test_the_anchor_gives_back_the_inputs_coarse_uptake_and_keeps_the_networks_detail():
    rng = np.random.default_rng(0)
    truth = np.zeros((40, 48, 48), np.float32)
    truth[4:36, 6:42, 6:42] = 1.0
    truth[10:30, 12:36, 12:24] = 1.5  # a hot "lobe"
    pet = truth + rng.normal(0, 0.05, truth.shape).astype(np.float32)
    network = truth.copy()
    network[10:30, 12:36, 12:24] *= 0.9  # the network's 10 % regional bias, no noise
    network[20, 24, 30] += 1.0  # a detail of one voxel the input does not have
    anchored, shift = anchor_uptake(_volume(pet), _volume(network), 8.0)
    out = sitk.GetArrayFromImage(anchored)
    assert anchored.GetSpacing() == (2.0, 2.0, 2.0)
    core = (slice(14, 26), slice(16, 32), slice(14, 22))
    assert abs(out[core].mean() / truth[core].mean() - 1) < 0.02 < abs(network[core].mean() / truth[core].mean() - 1)
    assert out[20, 24, 30] - out[20, 24, 29] > 0.9  # the detail survives
    assert np.std(out[core] - truth[core]) < 0.3 * np.std(pet[core] - truth[core])  # and the noise stays out
    assert 0.5 < shift < 10.0
    assert out.min() == 0.0  # the correction's leak below zero around the box is clamped


def test_the_anchor_clamps_only_below_zero():
    pet = np.zeros((20, 24, 24), np.float32)
    pet[5:15, 6:18, 6:18] = 1.0
    anchored, _ = anchor_uptake(_volume(pet), _volume(1.5 * pet), 8.0)  # a correction of -0.5 leaks outside
    out = sitk.GetArrayFromImage(anchored)
    assert out.min() == 0.0 and out[10, 12, 12] > 0.9


def test_the_anchor_is_physical_millimetres_on_any_voxel_size():
    rng = np.random.default_rng(1)
    pet = rng.random((20, 24, 24)).astype(np.float32)
    anchored = {mm: sitk.GetArrayFromImage(anchor_uptake(_volume(pet, (mm,) * 3), _volume(0 * pet, (mm,) * 3), 8.0)[0])
                for mm in (1.0, 4.0)}
    fine, coarse = anchored[1.0], anchored[4.0]
    assert np.std(fine) < 0.5 * np.std(coarse)  # 8 mm spans more voxels of 1 mm: a stronger average


@pytest.mark.parametrize("noise, fwhm", [(ANCHOR_REFERENCE_NOISE, 10.0), (2 * ANCHOR_REFERENCE_NOISE, 20.0),
                                         (0.1 * ANCHOR_REFERENCE_NOISE, ANCHOR_FWHM_RANGE_MM[0]),
                                         (10 * ANCHOR_REFERENCE_NOISE, ANCHOR_FWHM_RANGE_MM[1]),
                                         (math.nan, None)])
def test_the_anchor_grows_with_the_noise_as_calibrated_within_its_range(noise, fwhm):
    assert Safeguard(0.0, 0.001, anchor_fwhm_mm=10.0, anchor_power=1.0).anchor_fwhm(noise) == fwhm
    assert Safeguard(0.0, 0.001).anchor_fwhm(noise) is None


def test_the_catalogue_record_carries_the_anchor_and_older_records_have_none():
    record = {"safeguard": {"noise_off": 0.0, "noise_full": 0.001, "anchor_fwhm_mm": 9.0, "anchor_power": 1.25}}
    assert safeguard_for(record) == Safeguard(0.0, 0.001, 9.0, 1.25)
    assert safeguard_for({"safeguard": {"noise_off": 0.0, "noise_full": 0.001}}).anchor_fwhm_mm is None
    with pytest.raises(ValueError, match="anchor_fwhm_mm"):
        Safeguard(0.0, 0.001, anchor_fwhm_mm=0.0)


def test_the_pipeline_anchors_a_biased_network_to_the_inputs_uptake_and_reports_it(subject, tmp_path, monkeypatch,
                                                                                   doubling_model):
    output, report, _ = _run(subject, tmp_path, monkeypatch, Safeguard(0.0, 1e-6, anchor_fwhm_mm=8.0))
    pet = _input(subject)
    head = pet > 0.1 * np.percentile(pet, 99.5)
    assert abs(output[head].mean() / pet[head].mean() - 1) < 0.1  # the doubling is undone at coarse scale
    assert report["safeguard"]["anchor_fwhm_mm"] == 8.0 and report["safeguard"]["anchor_shift_pct"] > 50
