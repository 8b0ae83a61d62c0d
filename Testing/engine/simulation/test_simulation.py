"""Simulator: projector maths, noise scaling with dose, regional uptake, AD grading, reproducibility, transform."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.simulation import activity
from M2DiffSlicer.simulation.projector import Geometry, Projector
from M2DiffSlicer.simulation.subject import SimulationConfig, simulate_subject, write_subject

GEOMETRY = Geometry(nx=48, ny=40, pixel_mm=2.0, views=32, bins=56, bin_mm=2.0)


@pytest.fixture(scope="module")
def cn_subject():
    return simulate_subject(3, SimulationConfig.reduced(noise_free=True, group="CN"))


@pytest.mark.parametrize("subset", [None, 0, 3])
def test_forward_and_back_projection_are_adjoint(subset):
    projector = Projector(GEOMETRY, subsets=4)
    rng = np.random.default_rng(0)
    image = rng.random((3, GEOMETRY.ny, GEOMETRY.nx))
    views = GEOMETRY.views if subset is None else GEOMETRY.views // 4
    sinogram = rng.random((3, views, GEOMETRY.bins))
    lhs = np.sum(projector.forward(image, subset) * sinogram)
    rhs = np.sum(image * projector.back(sinogram, subset))
    assert lhs == pytest.approx(rhs, rel=1e-5)


def test_projection_of_a_gaussian_blob_matches_its_analytic_line_integral():
    g = Geometry(nx=96, ny=96, pixel_mm=1.0, views=12, bins=96, bin_mm=1.0)
    axis = np.arange(96) - 47.5
    sigma = 6.0
    blob = np.exp(-(axis[None, :] ** 2 + axis[:, None] ** 2) / (2 * sigma ** 2))[None]
    expected = np.sqrt(2 * np.pi) * sigma * np.exp(-axis ** 2 / (2 * sigma ** 2))
    sinogram = Projector(g).forward(blob)[0]
    assert np.abs(sinogram - expected).max() < 0.01 * expected.max()


def test_ld_noise_variance_grows_in_proportion_to_the_dose_reduction_factor(cn_subject):
    noise_free, brain = cn_subject.pets["noise_free"], cn_subject.brain_pet
    variance = {name: np.var((cn_subject.pets[name] - noise_free)[brain]) for name in ("sd", "ld_drf020", "ld_drf100")}
    assert variance["ld_drf020"] / variance["sd"] == pytest.approx(20, rel=0.2)
    assert variance["ld_drf100"] / variance["ld_drf020"] == pytest.approx(5, rel=0.2)


def test_sd_regional_suvr_follows_the_cn_table_ratios(cn_subject):
    target, measured = cn_subject.meta["target_suvr"], cn_subject.meta["regional_suvr"]["sd"]
    names, table = activity.cn_table()
    # target_suvr of a CN subject is one real control's row divided by its pons value.
    row = np.asarray([target[n] for n in names]) * table[:, names.index("pons")][:, None]
    assert np.any(np.all(np.isclose(row, table, rtol=1e-6), axis=1))
    errors = np.asarray([measured[n] / target[n] - 1 for n in measured])
    assert np.median(np.abs(errors)) < 0.03
    assert np.abs(errors).max() < 0.15


def test_ad_severity_lowers_precuneus_and_posterior_cingulate_suvr_monotonically():
    def posterior_suvr(severity):
        meta = simulate_subject(11, SimulationConfig.reduced(group="AD", severity=severity, drfs=())).meta
        sd = meta["regional_suvr"]["sd"]
        return np.mean([sd[f"{r}_{side}"] for r in ("precuneus", "posterior_cingulate_cortex")
                        for side in ("left", "right")])

    values = [posterior_suvr(s) for s in (0.0, 0.15, 0.35)]
    assert values[0] > values[1] > values[2]


def test_same_seed_gives_an_identical_subject():
    config = SimulationConfig.reduced(drfs=(100,))
    first, second = simulate_subject(5, config), simulate_subject(5, config)
    assert json.dumps(first.meta, sort_keys=True) == json.dumps(second.meta, sort_keys=True)
    for name in first.pets:
        np.testing.assert_array_equal(first.pets[name], second.pets[name])
    np.testing.assert_array_equal(first.t1, second.t1)
    assert not np.array_equal(first.t1, simulate_subject(6, config).t1)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.sum(a & b) / max(np.sum(a) + np.sum(b), 1)


def test_saved_transform_maps_t1_frame_rois_onto_the_pet_frame_rois(tmp_path):
    folder = write_subject(simulate_subject(8, SimulationConfig.reduced(drfs=(20, 100))), tmp_path / "sub-0008")
    expected = {"t1.nii.gz", "t1_brain.nii.gz", "pet_sd.nii.gz", "pet_ld_drf020.nii.gz", "pet_ld_drf100.nii.gz",
                "roi_pet.nii.gz", "roi_t1.nii.gz", "brain_pet.nii.gz", "t1_to_pet.tfm", "meta.json"}
    assert expected == {p.name for p in folder.iterdir()}
    roi_t1 = sitk.ReadImage(str(folder / "roi_t1.nii.gz"))
    roi_pet = sitk.ReadImage(str(folder / "roi_pet.nii.gz"))
    transform = sitk.ReadTransform(str(folder / "t1_to_pet.tfm"))

    def mean_dice(tfm):
        moved = sitk.GetArrayFromImage(sitk.Resample(roi_t1, roi_pet, tfm, sitk.sitkNearestNeighbor, 0))
        fixed = sitk.GetArrayFromImage(roi_pet)
        lobes = [activity.region_ids(name) for name in ("precuneus", "lateral_temporal_cortex", "thalamus",
                                                         "cerebellar_cortex", "putamen")]
        return np.mean([_dice(np.isin(moved, ids), np.isin(fixed, ids)) for ids in lobes])

    aligned, unaligned = mean_dice(transform), mean_dice(sitk.Transform())
    assert aligned > 0.85
    assert aligned > unaligned + 0.05


def test_configuration_rejects_an_unknown_group():
    with pytest.raises(ValueError, match="group"):
        SimulationConfig(group="FTD")
