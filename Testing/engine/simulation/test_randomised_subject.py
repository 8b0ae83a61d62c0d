"""Randomised subjects: both ends of every range give valid images, the meta records the draw, FIXED is today."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.imaging import validation
from M2DiffSlicer.simulation import domain as dom
from M2DiffSlicer.subject_files import ld_name
from M2DiffSlicer.simulation.atrophy import AtrophyConfig
from M2DiffSlicer.simulation.body import BodyConfig
from M2DiffSlicer.simulation.subject import SimulationConfig, simulate_subject, write_subject

# Today's configuration on the reduced grid (seed 8, DRF 20/100), recorded once from the simulator before domain
# randomisation existed (the arrays were also checked identical by hash); never tune these.
GOLDEN_BRAIN_MEANS = {"sd": 19546.627504652446, "ld_drf020": 19541.935592416772, "ld_drf100": 19561.07746392744}
GOLDEN_T1_MEAN, GOLDEN_TRUTH_MEAN, GOLDEN_BRAIN_VOXELS = 290.6767897602697, 20130.601217606058, 30310


def _pinned(end: int) -> dom.DomainConfig:
    """RANDOMISED with every range collapsed to its low (end 0) or high (end 1) bound; FOVs kept small.

    Symmetric ranges (head offset, tilt, mu shift) become 0 at the low end and keep their full span at the high end.
    """
    pins = {}
    for field in dataclasses.fields(dom.RANDOMISED):
        value = getattr(dom.RANDOMISED, field.name)
        if isinstance(value, tuple) and len(value) == 2 and field.name != "t1_field_strengths":
            pins[field.name] = (value[end], value[end])
    low, high = dom.RANDOMISED.subsets[0], dom.RANDOMISED.subsets[-1]
    symmetric = {"head_offset_mm": 0.0, "mu_shift_mm": 0.0, "tilt_deg": (0.0, 0.0, 0.0)} if end == 0 else {}
    atrophy = AtrophyConfig(age_years=(55.0, 55.0)) if end == 0 else AtrophyConfig(age_years=(85.0, 85.0),
                                                                                   ad=(0.08, 0.08))
    # 1 mm voxels over a 220 x 150 mm FOV would cost ~20 s; the low end keeps 1 mm voxels on a smaller FOV.
    small_fov = {"fov_xy_mm": (150.0, 150.0), "fov_z_mm": (100.0, 100.0)} if end == 0 else {}
    return dataclasses.replace(dom.RANDOMISED, name=f"pinned-{end}", subsets=((low, high)[end],),
                               t1_field_strengths=((1.5, 3.0)[end],), deface_probability=float(end),
                               atrophy=atrophy, **{**pins, **symmetric, **small_fov})


@pytest.fixture(scope="module", params=[0, 1], ids=["low_end", "high_end"])
def extreme(request):
    domain = _pinned(request.param)
    config = SimulationConfig.reduced(group="AD" if request.param else "CN")
    return request.param, domain, simulate_subject(21, config, domain)


def test_fixed_preset_reproduces_todays_reduced_subject():
    subject = simulate_subject(8, SimulationConfig.reduced(drfs=(20, 100)), dom.FIXED)
    brain = subject.brain_pet
    assert int(brain.sum()) == GOLDEN_BRAIN_VOXELS
    assert set(subject.pets) == set(GOLDEN_BRAIN_MEANS)
    for name, mean in GOLDEN_BRAIN_MEANS.items():
        assert float(subject.pets[name][brain].astype(np.float64).mean()) == pytest.approx(mean, rel=1e-6)
    assert float(subject.t1.astype(np.float64).mean()) == pytest.approx(GOLDEN_T1_MEAN, rel=1e-6)
    assert float(subject.truth[brain].astype(np.float64).mean()) == pytest.approx(GOLDEN_TRUTH_MEAN, rel=1e-6)
    assert subject.meta["domain"] == {"name": "fixed", "drawn": {}} and subject.meta["anatomy"] == {}


def test_extreme_pet_images_are_finite_and_follow_the_truth(extreme):
    end, domain, subject = extreme
    brain, truth = subject.brain_pet, subject.truth[subject.brain_pet]
    assert brain.sum() > 1000
    for name, image in subject.pets.items():
        assert image.shape == subject.pet_grid.shape and np.isfinite(image).all(), name
        assert 0.7 < image[brain].mean() / truth.mean() < 1.4, name
    assert np.corrcoef(subject.pets["sd"][brain], truth)[0, 1] > 0.75
    drf = subject.meta["domain"]["drawn"]["random_drf"]
    assert drf == domain.random_drf[end]
    ld = subject.pets[next(name for name, value in subject.meta["drfs"].items() if value == drf)]
    assert np.std((ld - subject.pets["sd"])[brain]) > 0


def test_extreme_t1_is_finite_on_its_own_grid_and_passes_the_t1_check(extreme):
    end, domain, subject = extreme
    t1 = subject.t1
    assert t1.shape == subject.t1_grid.shape and np.isfinite(t1).all() and t1.min() >= 0
    assert subject.t1_grid.spacing[0] == pytest.approx(domain.t1_voxel_mm[end])
    image = sitk.GetImageFromArray(t1)
    image.SetSpacing(subject.t1_grid.spacing)
    assert validation.t1_score(image) > validation.T1_ABOVE + 0.1


def test_extreme_meta_records_the_draw_and_the_config_it_produced(extreme, tmp_path):
    end, domain, subject = extreme
    meta = json.loads(json.dumps(subject.meta))
    drawn, config = meta["domain"]["drawn"], meta["config"]
    assert meta["domain"]["name"] == domain.name
    assert config["psf_fwhm_mm"] == drawn["psf_inplane_fwhm_mm"] == domain.psf_inplane_fwhm_mm[end]
    assert config["psf_axial_fwhm_mm"] == drawn["psf_axial_fwhm_mm"] == domain.psf_axial_fwhm_mm[end]
    assert config["iterations"] == domain.iterations[end] and config["subsets"] == domain.subsets[0]
    assert config["post_filter_mm"] == domain.post_filter_mm[end] and config["mu_error"] == domain.mu_error[end]
    assert config["pet_spacing"][0] == domain.voxel_xy_mm[end] and config["pet_spacing"][2] == domain.voxel_z_mm[end]
    assert config["body"]["uptake"] == domain.body_uptake[end]
    assert config["t1"]["deface"] is bool(end) and config["t1"]["neck_mm"] == domain.t1_neck_mm[end]
    assert meta["anatomy"]["age_years"] == domain.atrophy.age_years[end]
    assert meta["drfs"][ld_name(domain.random_drf[end])] == domain.random_drf[end]
    folder = write_subject(subject, tmp_path / "sub")
    names = {f"pet_{name}.nii.gz" for name in subject.pets}
    assert names <= {path.name for path in folder.iterdir()}


def test_pet_with_a_body_sees_the_warm_neck_below_the_head():
    # FOV centred low (z = -40 mm, 160 mm tall) so its lowest planes lie well below the template's bottom (-78 mm,
    # +-10 mm with the misalignment), where only the neck/shoulder block can be active.
    config = SimulationConfig.reduced(body=BodyConfig(), pet_centre_mni=(0.0, 18.0, -40.0), drfs=())
    with_body = simulate_subject(4, config)
    without = simulate_subject(4, dataclasses.replace(config, body=None))
    z_mm = with_body.pet_grid.origin[2] + with_body.pet_grid.spacing[2] * np.arange(with_body.pet_grid.size[2])
    low = z_mm < -100.0
    assert low.sum() >= 3 and without.truth[low].max() == 0
    neck = with_body.truth[low]
    expected = config.body.uptake * config.activity.wm_bq_ml * with_body.meta["activity"]["global_scale"]
    assert np.percentile(neck[neck > 0], 90) == pytest.approx(expected, rel=0.05)
    assert with_body.pets["sd"][low].mean() > 0.5 * neck.mean()


def test_attenuation_map_overestimate_raises_the_reconstructed_uptake():
    config = SimulationConfig.reduced(drfs=())
    plain = simulate_subject(5, config)
    over = simulate_subject(5, dataclasses.replace(config, mu_error=0.10))
    brain = plain.brain_pet
    ratio = over.pets["sd"][brain].mean() / plain.pets["sd"][brain].mean()
    assert 1.05 < ratio < 1.4
