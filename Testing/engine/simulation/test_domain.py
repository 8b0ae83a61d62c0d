"""Domain randomisation ranges: draws stay in range, are recorded, FIXED changes nothing, today is inside the ranges."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from M2DiffSlicer.simulation import domain as dom
from M2DiffSlicer.simulation.acquisition import recon_grid, sinogram_bins
from M2DiffSlicer.subject_files import ld_name
from M2DiffSlicer.simulation.anatomy import Grid
from M2DiffSlicer.simulation.subject import SimulationConfig

BASE = SimulationConfig()
SEEDS = range(1000, 1300)


@pytest.fixture(scope="module")
def draws():
    """(config, drawn values) of 300 randomised subjects: cheap, no simulation."""
    return [dom.draw_subject_config(seed, dom.RANDOMISED, BASE) for seed in SEEDS]


def _values(draws, read):
    return np.asarray([read(config, drawn) for config, drawn in draws], dtype=float)


# (what to read from the subject's config, the RANDOMISED range it must stay in, the drawn-record key)
RANGES = {
    "psf_inplane": (lambda c: c.psf_fwhm_mm, dom.RANDOMISED.psf_inplane_fwhm_mm, "psf_inplane_fwhm_mm"),
    "psf_axial": (lambda c: c.psf_axial_fwhm_mm, dom.RANDOMISED.psf_axial_fwhm_mm, "psf_axial_fwhm_mm"),
    "iterations": (lambda c: c.iterations, dom.RANDOMISED.iterations, "iterations"),
    "post_filter": (lambda c: c.post_filter_mm, dom.RANDOMISED.post_filter_mm, "post_filter_mm"),
    "random_drf": (lambda c: c.drfs[-1], dom.RANDOMISED.random_drf, "random_drf"),
    "scatter": (lambda c: c.scatter_fraction, dom.RANDOMISED.scatter_fraction, "scatter_fraction"),
    "randoms": (lambda c: c.randoms_fraction, dom.RANDOMISED.randoms_fraction, "randoms_fraction"),
    "mu_error": (lambda c: c.mu_error, dom.RANDOMISED.mu_error, "mu_error"),
    "voxel_xy": (lambda c: c.pet_spacing[0], dom.RANDOMISED.voxel_xy_mm, "voxel_xy_mm"),
    "voxel_z": (lambda c: c.pet_spacing[2], dom.RANDOMISED.voxel_z_mm, "voxel_z_mm"),
    "body_uptake": (lambda c: c.body.uptake, dom.RANDOMISED.body_uptake, "body_uptake"),
    "neck_length": (lambda c: c.body.neck_length_mm, dom.RANDOMISED.neck_length_mm, "neck_length_mm"),
    "t1_voxel_xy": (lambda c: c.t1.voxel_mm[0], dom.RANDOMISED.t1_voxel_mm, "t1_voxel_xy_mm"),
    "t1_voxel_z": (lambda c: c.t1.voxel_mm[2], dom.RANDOMISED.t1_voxel_mm, "t1_voxel_z_mm"),
    "t1_neck": (lambda c: c.t1.neck_mm, dom.RANDOMISED.t1_neck_mm, "t1_neck_mm"),
}


@pytest.mark.parametrize("name", sorted(RANGES))
def test_every_drawn_parameter_stays_in_its_range_spans_it_and_is_recorded(draws, name):
    read, (low, high), key = RANGES[name]
    values = _values(draws, lambda config, drawn: read(config))
    assert values.min() >= low and values.max() <= high
    # 300 draws cover most of the range (not a degenerate draw stuck at one value).
    assert values.min() < low + 0.15 * (high - low) and values.max() > high - 0.15 * (high - low)
    np.testing.assert_array_equal(values, _values(draws, lambda config, drawn: drawn[key]))


def test_continuous_drf_is_log_uniform_and_joins_the_drf_list(draws):
    drfs = _values(draws, lambda config, drawn: drawn["random_drf"])
    # Log-uniform on 2-200: the median is near the geometric mean (20), far below the arithmetic mean (101).
    assert 12 < np.median(drfs) < 32
    assert all(config.drfs == BASE.drfs + (drawn["random_drf"],) for config, drawn in draws)


def test_choices_symmetric_draws_and_field_strengths_stay_in_their_sets(draws):
    for config, drawn in draws:
        assert config.subsets in dom.RANDOMISED.subsets and config.views % config.subsets == 0
        assert np.all(np.abs(config.mu_shift_mm) <= dom.RANDOMISED.mu_shift_mm)
        assert np.all(np.abs(config.tilt_deg) <= np.asarray(dom.RANDOMISED.tilt_deg))
        assert config.tilt_deg == drawn["tilt_deg"] and config.mu_shift_mm == drawn["mu_shift_mm"]
        assert np.all(np.abs(np.subtract(config.pet_centre_mni[:2], BASE.pet_centre_mni[:2]))
                      <= dom.RANDOMISED.head_offset_mm)
        strength = dom.FIELD_STRENGTHS[drawn["t1_field_strength_t"]]
        for field, bounds in dataclasses.asdict(strength).items():
            assert bounds[0] <= getattr(config.t1, field) <= bounds[1]
        assert config.true_counts == dom.RANDOMISED.true_counts
    strengths = {drawn["t1_field_strength_t"] for _, drawn in draws}
    defaced = np.mean([drawn["t1_defaced"] for _, drawn in draws])
    assert strengths == {1.5, 3.0} and 0.2 < defaced < 0.4


def test_matrices_stay_within_the_caps_and_the_fov_covers_the_brain_when_it_can(draws):
    caps = np.asarray([dom.MAX_MATRIX_XY, dom.MAX_MATRIX_XY, dom.MAX_PLANES])
    for config, drawn in draws:
        size, spacing = np.asarray(config.pet_size), np.asarray(config.pet_spacing)
        assert size[0] == size[1] <= dom.MAX_MATRIX_XY and size[2] <= dom.MAX_PLANES
        fov = np.asarray([drawn["fov_xy_mm"], drawn["fov_xy_mm"], drawn["fov_z_mm"]])
        assert dom.RANDOMISED.fov_xy_mm[0] <= fov[0] <= dom.RANDOMISED.fov_xy_mm[1]
        assert dom.RANDOMISED.fov_z_mm[0] <= fov[2] <= dom.RANDOMISED.fov_z_mm[1]
        assert np.all(np.abs(size * spacing - np.minimum(fov, caps * spacing)) <= spacing / 2 + 1e-9)
        half = size[2] * spacing[2] / 2.0
        if 2 * half >= dom.BRAIN_Z_MM[1] - dom.BRAIN_Z_MM[0]:
            assert config.pet_centre_mni[2] - half <= dom.BRAIN_Z_MM[0] + 1e-6
            assert config.pet_centre_mni[2] + half >= dom.BRAIN_Z_MM[1] - 1e-6


def test_today_is_one_point_inside_every_randomised_range():
    today = {"psf_inplane_fwhm_mm": BASE.psf_fwhm_mm, "psf_axial_fwhm_mm": BASE.psf_fwhm_mm,
             "iterations": BASE.iterations, "post_filter_mm": BASE.post_filter_mm,
             "scatter_fraction": BASE.scatter_fraction, "randoms_fraction": BASE.randoms_fraction,
             "mu_error": BASE.mu_error, "voxel_xy_mm": BASE.pet_spacing[0], "voxel_z_mm": BASE.pet_spacing[2],
             "fov_xy_mm": BASE.pet_size[0] * BASE.pet_spacing[0], "fov_z_mm": BASE.pet_size[2] * BASE.pet_spacing[2],
             "t1_voxel_mm": BASE.anatomy_mm, "t1_neck_mm": BASE.t1.neck_mm}
    for name, value in today.items():
        low, high = getattr(dom.RANDOMISED, name)
        assert low <= value <= high, name
    assert dom.RANDOMISED.true_counts[0] <= BASE.true_counts[0] < BASE.true_counts[1] <= dom.RANDOMISED.true_counts[1]
    assert min(BASE.drfs) >= dom.RANDOMISED.random_drf[0] and max(BASE.drfs) <= dom.RANDOMISED.random_drf[1]
    assert BASE.subsets in dom.RANDOMISED.subsets
    one_five = dom.FIELD_STRENGTHS[1.5]
    for field, bounds in dataclasses.asdict(one_five).items():
        assert bounds[0] <= getattr(BASE.t1, field) <= bounds[1], field


def test_fixed_domain_returns_the_base_configuration_without_drawing():
    assert dom.is_fixed(dom.FIXED) and dom.is_fixed(dom.FIXED.reduced())
    assert dom.draw_subject_config(5, dom.FIXED, BASE) == (BASE, {})
    assert not dom.is_fixed(dom.RANDOMISED)


def test_same_seed_draws_the_same_configuration_and_another_seed_another():
    first, second = (dom.draw_subject_config(7, dom.RANDOMISED, BASE) for _ in range(2))
    assert first == second
    assert dom.draw_subject_config(8, dom.RANDOMISED, BASE)[1] != first[1]


def test_reduced_domain_keeps_the_ranges_but_coarse_voxels():
    config, drawn = dom.draw_subject_config(3, dom.RANDOMISED.reduced(), SimulationConfig.reduced())
    assert 3.5 <= config.pet_spacing[0] <= 4.5 and 2.0 <= config.t1.voxel_mm[2] <= 3.0
    assert dom.RANDOMISED.reduced().psf_inplane_fwhm_mm == dom.RANDOMISED.psf_inplane_fwhm_mm


def test_held_out_configurations_are_named_and_unknown_names_are_rejected():
    sharp = dom.held_out_overrides("sharp", "brain")
    assert (sharp["psf_fwhm_mm"], sharp["iterations"], sharp["post_filter_mm"]) == (3.0, 6, 2.0)
    assert sharp["held_out"] == "scanner=sharp,fov=brain"
    clinical = SimulationConfig(**dom.held_out_overrides("smooth", "clinical"))
    assert (clinical.pet_size, clinical.pet_spacing) == ((180, 180, 110), (1.6, 1.6, 2.0))
    assert clinical.body is not None and clinical.psf_fwhm_mm == 6.0 and clinical.post_filter_mm == 5.0
    assert dom.held_out_overrides()["held_out"] is None
    with pytest.raises(ValueError, match="scanner"):
        dom.held_out_overrides("blurry")
    with pytest.raises(ValueError, match="fov"):
        dom.held_out_overrides("default", "body")


@pytest.mark.parametrize("kwargs, match", [({"psf_axial_fwhm_mm": (7.0, 2.5)}, "low <= high"),
                                           ({"random_drf": (0.5, 10.0)}, "random_drf"),
                                           ({"t1_field_strengths": (7.0,)}, "t1_field_strengths")])
def test_domain_rejects_inverted_ranges_doses_below_one_and_unknown_field_strengths(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dom.DomainConfig(**kwargs)


def _centre_span(grid: Grid) -> np.ndarray:
    """mm between the first and last voxel centres along x, y, z."""
    return np.asarray(grid.spacing) * (np.asarray(grid.size) - 1)


@pytest.mark.parametrize("drf, name", [(20, "ld_drf020"), (100, "ld_drf100"), (1, "ld_drf001"),
                                       (37.42, "ld_drf037p42"), (137.5, "ld_drf137p50")])
def test_ld_image_names_keep_todays_integer_names(drf, name):
    assert ld_name(drf) == name


def test_reconstruction_grid_is_the_pet_grid_when_coarse_enough_else_a_covering_2mm_grid():
    coarse = Grid(size=(112, 112, 80), spacing=(2.0, 2.0, 2.0), origin=(-111.0, -93.0, -64.0))
    assert recon_grid(coarse, 2.0) is coarse
    fine = Grid(size=(180, 180, 110), spacing=(1.6, 1.6, 2.0), origin=(-143.2, -135.2, -119.0))
    native = recon_grid(fine, 2.0)
    assert native.spacing == (2.0, 2.0, 2.0)
    np.testing.assert_allclose(native.centre(), fine.centre())
    assert np.all(_centre_span(native) >= _centre_span(fine))
    assert sinogram_bins(112) == 128
