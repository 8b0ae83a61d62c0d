"""Anatomy and T1 variety: atrophy enlarges the ventricles, the neck block's shape, the T1 grid, neck and defacing."""

from __future__ import annotations

import numpy as np
import pytest

from M2DiffSlicer.simulation import activity as act
from M2DiffSlicer.simulation import mri
from M2DiffSlicer.simulation.anatomy import Grid, load_template
from M2DiffSlicer.simulation.atrophy import AtrophyConfig, atrophied, draw_atrophy
from M2DiffSlicer.simulation.body import BodyConfig, body_fraction


@pytest.fixture(scope="module")
def template():
    return load_template(3.0)


def _ventricle_ml(anatomy) -> float:
    return float((anatomy.regions == act.VENTRICLE).sum() * np.prod(anatomy.grid.spacing) / 1000.0)


def test_atrophy_enlarges_the_ventricles_and_thins_grey_matter_monotonically(template):
    config = AtrophyConfig()
    brains = [atrophied(template, a, config) for a in (0.0, 0.1, 0.2)]
    ventricles = [_ventricle_ml(b) for b in brains]
    grey = [float(b.gm.sum()) for b in brains]
    assert ventricles[0] < ventricles[1] < ventricles[2] and ventricles[2] > 1.5 * ventricles[0]
    assert grey[0] > grey[1] > grey[2]
    inside = brains[2].brain > 0.99
    np.testing.assert_allclose((brains[2].gm + brains[2].wm + brains[2].csf)[inside], 1.0, atol=0.02)
    assert brains[0] is template


@pytest.mark.parametrize("group, low, high", [("CN", 0.015, 0.105), ("MCI", 0.025, 0.145), ("AD", 0.045, 0.185)])
def test_atrophy_draw_grows_with_age_and_disease_and_stays_in_range(group, low, high):
    rng = np.random.default_rng(0)
    draws = [draw_atrophy(rng, act.Group(group), AtrophyConfig()) for _ in range(200)]
    ages = np.array([d["age_years"] for d in draws])
    atrophy = np.array([d["atrophy"] for d in draws])
    assert ages.min() >= 55 and ages.max() <= 85
    assert atrophy.min() >= low - 1e-9 and atrophy.max() <= high + 1e-9
    assert np.corrcoef(ages, atrophy)[0, 1] > 0.5


def test_neck_block_lies_below_the_template_and_widens_into_shoulders():
    body = BodyConfig(neck_length_mm=50.0)
    points = np.array([[0.0, 0.0, 0.0, 150.0, 150.0, 300.0],      # x
                       [20.0, 20.0, 20.0, 20.0, 20.0, 20.0],      # y (neck centre)
                       [-70.0, -90.0, -140.0, -90.0, -140.0, -140.0]])  # z
    fraction = body_fraction(points, top_z_mm=-78.0, config=body)
    np.testing.assert_array_equal(fraction, [0.0, 1.0, 1.0, 0.0, 1.0, 0.0])


def test_t1_output_grid_has_the_voxel_size_the_neck_and_a_defaced_face(template):
    config = mri.T1Config(voxel_mm=(1.2, 1.2, 1.4), neck_mm=30.0, deface=True)
    image = mri.t1_image(template, np.random.default_rng(0), config)
    assert image.grid.spacing == (1.2, 1.2, 1.4)
    bottom = template.grid.origin[2] - template.grid.spacing[2] / 2
    assert image.grid.origin[2] == pytest.approx(bottom - 30.0 + 0.7)
    assert image.t1.shape == image.grid.shape == image.brain.shape == image.regions.shape
    neck_planes = image.t1[: int(25 / 1.4)]
    assert (neck_planes > 0).mean() > 0.1          # the neck is there ...
    face = mri._face_mask(template, image.grid)
    assert face.sum() > 1000 and np.all(image.t1[face] == 0)   # ... the face is gone ...
    assert np.all(image.t1[image.brain > 0.5] > 0)               # ... and the brain untouched


def test_default_t1_config_keeps_the_anatomy_grid(template):
    image = mri.t1_image(template, np.random.default_rng(0))
    assert image.grid is template.grid


@pytest.mark.parametrize("kwargs", [{"voxel_mm": (0.3, 1.0, 1.0)}, {"neck_mm": -1.0}, {"contrast_scale": 0.0}])
def test_t1_config_rejects_bad_voxels_neck_and_contrast(kwargs):
    with pytest.raises(ValueError):
        mri.T1Config(**kwargs)


def test_output_grid_covers_the_anatomy_extent():
    grid = Grid(size=(10, 12, 8), spacing=(3.0, 3.0, 3.0), origin=(0.0, 0.0, 0.0))
    out = mri.output_grid(grid, mri.T1Config(voxel_mm=(1.0, 1.0, 1.0)))
    assert out.size == (30, 36, 24) and out.origin == (-1.0, -1.0, -1.0)
