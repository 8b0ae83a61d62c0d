"""Model-grid preparation: geometry, normalisation and exact restoration onto the input grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging.model_grid import ModelGrid, pet_scale, prepare_inputs, prepare_target, restore_output

GRID = ModelGrid(spacing_mm=4.0, size_xyz=(48, 48, 48))


def _oblique_pet(value_scale: float = 3000.0) -> sitk.Image:
    """An ellipsoid 'head' with a hot core on an anisotropic, rotated grid."""
    size = (50, 60, 40)
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]].astype(np.float32)
    head = ((x - 25) / 20) ** 2 + ((y - 30) / 24) ** 2 + ((z - 20) / 16) ** 2 < 1
    core = ((x - 25) / 8) ** 2 + ((y - 30) / 8) ** 2 + ((z - 20) / 6) ** 2 < 1
    image = sitk.GetImageFromArray((head * 1.0 + core * 3.0).astype(np.float32) * value_scale)
    image.SetSpacing((2.5, 2.0, 3.3))
    image.SetOrigin((-60.0, 14.0, -70.0))
    rotation = sitk.VersorTransform((0.0, 0.0, 1.0), 0.3)
    image.SetDirection(rotation.GetMatrix())
    return image


def test_model_grid_rejects_sides_not_divisible_by_16():
    with pytest.raises(ValueError, match="divisible by 16"):
        ModelGrid(size_xyz=(96, 100, 96))


def test_prepared_pet_is_on_the_model_grid_and_normalised_to_unit_head_mean():
    prepared = prepare_inputs(_oblique_pet(), grid=GRID)
    assert prepared.pet.shape == (48, 48, 48)
    assert prepared.reference.GetSpacing() == (4.0, 4.0, 4.0)
    assert prepared.t1 is None
    assert pet_scale(prepared.pet) == pytest.approx(1.0, rel=1e-5)


def test_the_scale_follows_the_input_units():
    low = prepare_inputs(_oblique_pet(1.0), grid=GRID)
    high = prepare_inputs(_oblique_pet(1000.0), grid=GRID)
    assert high.scale == pytest.approx(1000.0 * low.scale, rel=1e-4)
    np.testing.assert_allclose(high.pet, low.pet, atol=1e-4)


def test_restore_returns_the_exact_input_grid_and_units():
    pet = _oblique_pet()
    prepared = prepare_inputs(pet, grid=GRID)
    restored = restore_output(prepared.pet, prepared, pet)
    assert restored.GetSize() == pet.GetSize()
    assert restored.GetSpacing() == pet.GetSpacing()
    assert restored.GetOrigin() == pet.GetOrigin()
    assert restored.GetDirection() == pet.GetDirection()
    original = sitk.GetArrayFromImage(pet)
    back = sitk.GetArrayFromImage(restored)
    z, y, x = np.mgrid[: original.shape[0], : original.shape[1], : original.shape[2]]
    core_centre = ((x - 25) / 4) ** 2 + ((y - 30) / 4) ** 2 + ((z - 20) / 3) ** 2 < 1
    # Resampling blurs edges only: the centre of the hot core comes back in the input's units.
    assert back[core_centre].mean() == pytest.approx(original[core_centre].mean(), rel=0.05)


def test_voxels_outside_the_model_grid_keep_the_input_values():
    pet = _oblique_pet()
    small_grid = ModelGrid(spacing_mm=2.0, size_xyz=(16, 16, 16))
    prepared = prepare_inputs(pet, grid=small_grid)
    restored = sitk.GetArrayFromImage(restore_output(np.zeros_like(prepared.pet), prepared, pet))
    original = sitk.GetArrayFromImage(pet)
    outside = restored != 0
    assert outside.any() and (restored == 0).any()
    np.testing.assert_array_equal(restored[outside], original[outside])


def test_t1_is_aligned_through_the_resampling_transform():
    pet = _oblique_pet()
    shift = sitk.TranslationTransform(3, (10.0, -6.0, 4.0))  # PET point -> T1 point
    moved = sitk.Image(pet)
    moved.SetOrigin(tuple(o + d for o, d in zip(pet.GetOrigin(), (10.0, -6.0, 4.0))))
    aligned = prepare_inputs(pet, moved, shift, grid=GRID)
    unaligned = prepare_inputs(pet, moved, None, grid=GRID)
    pet_pattern = aligned.pet / aligned.pet.max()

    def mismatch(t1_array):
        return float(np.abs(t1_array / t1_array.max() - pet_pattern).mean())

    assert mismatch(aligned.t1) < 0.2 * mismatch(unaligned.t1)


def test_target_uses_the_low_dose_scale():
    pet = _oblique_pet()
    prepared = prepare_inputs(pet, grid=GRID)
    target = prepare_target(sitk.Cast(pet, sitk.sitkFloat32) * 2.0, prepared)
    np.testing.assert_allclose(target, 2.0 * prepared.pet, rtol=1e-4, atol=1e-5)


def test_an_all_zero_pet_is_rejected():
    with pytest.raises(BadInputError):
        pet_scale(np.zeros((4, 4, 4)))


def _head_and_neck(spacing: tuple[float, float, float], size_xyz: tuple[int, int, int], brain_centre_mm,
                   neck: bool, noise: float = 0.25) -> sitk.Image:
    """An FDG-like phantom in mm coordinates: brain (grey matter 4, white matter 1) inside a warm scalp, and
    optionally a large neck/shoulder block below and behind it (uptake 0.5: muscle at SUV ~1 against grey
    matter at ~8)."""
    grid = sitk.Image(list(size_xyz), sitk.sitkFloat32)
    grid.SetSpacing(spacing)
    grid.SetOrigin([-(n - 1) * s / 2 for n, s in zip(size_xyz, spacing)])
    z, y, x = np.meshgrid(*[np.arange(n) * s - (n - 1) * s / 2 for n, s in zip(size_xyz[::-1], spacing[::-1])],
                          indexing="ij")
    bx, by, bz = brain_centre_mm
    radius = ((x - bx) / 70) ** 2 + ((y - by) / 85) ** 2 + ((z - bz) / 60) ** 2
    activity = np.where(radius < 1, np.where(radius > 0.55, 4.0, 1.0), 0.0)
    activity += 0.35 * ((radius >= 1) & (radius < 1.3))  # scalp
    if neck:
        activity += 0.5 * ((np.abs(x - bx) < 80) & (np.abs(y - by - 20) < 60) & (z < bz - 75))
    noisy = np.random.default_rng(0).normal(activity, noise * np.sqrt(activity + 0.05))
    image = sitk.GetImageFromArray(noisy.astype(np.float32))
    image.CopyInformation(grid)
    return image


def test_the_model_grid_is_centred_on_the_brain_not_on_a_warm_neck_and_shoulders():
    from M2DiffSlicer.imaging.model_grid import brain_centre

    spacing = (1.6, 1.6, 2.0)
    brain = (12.8, -17.6, 40.0)  # off-centre and high in the field of view, on the voxel lattice
    clinical = _head_and_neck(spacing, (180, 180, 110), brain, neck=True)
    found = np.asarray(brain_centre(clinical))
    assert np.abs(found - brain).max() < 3.0  # mm; the centre of all activity lies ~30 mm lower
    # The same head on a brain-sized grid of the same voxels, no neck: the network sees the same brain
    # (same place on the model grid, same normalisation); noise-free so that only the field of view differs.
    brain_sized = _head_and_neck(spacing, (120, 140, 96), (0.0, 0.0, 0.0), neck=False, noise=0.0)
    assert np.abs(np.asarray(brain_centre(brain_sized))).max() < 3.0
    on_clinical = prepare_inputs(_head_and_neck(spacing, (180, 180, 110), brain, neck=True, noise=0.0)).pet
    on_brain_grid = prepare_inputs(brain_sized).pet
    inside = on_brain_grid > 0.5
    assert np.abs(on_clinical[inside] - on_brain_grid[inside]).mean() < 0.01 * on_brain_grid[inside].mean()


def _noisy_head(spacing: tuple[float, float, float], direction: tuple[float, ...], origin_mm: float) -> sitk.Image:
    """A noisy ellipsoid head at an origin off any 2 mm lattice the brain centre would give."""
    size = (48, 48, 48)
    z, y, x = np.mgrid[: size[2], : size[1], : size[0]].astype(np.float32)
    head = ((x - 22.3) / 15) ** 2 + ((y - 25.1) / 18) ** 2 + ((z - 23.6) / 14) ** 2 < 1
    noise = np.random.default_rng(4).normal(1.0, 0.3, head.shape).astype(np.float32)
    image = sitk.GetImageFromArray(np.clip(head * noise, 0.0, None) * 100.0)
    image.SetSpacing(spacing)
    image.SetOrigin((origin_mm, -origin_mm, 0.5 * origin_mm))
    image.SetDirection(direction)
    return image


@pytest.mark.parametrize("direction", [(1, 0, 0, 0, 1, 0, 0, 0, 1), (-1, 0, 0, 0, -1, 0, 0, 0, 1),
                                       (0, 1, 0, 1, 0, 0, 0, 0, -1)])
def test_a_pet_at_the_model_spacing_goes_to_the_model_grid_and_back_unchanged(direction):
    pet = _noisy_head((2.0, 2.0, 2.0), direction, origin_mm=-47.3)
    grid = ModelGrid(spacing_mm=2.0, size_xyz=(48, 48, 48))
    prepared = prepare_inputs(pet, grid=grid)
    restored = sitk.GetArrayFromImage(restore_output(prepared.pet, prepared, pet))
    original = sitk.GetArrayFromImage(pet)
    inside = restored > 0
    assert inside.sum() > 10_000
    # Voxel for voxel (float rounding only), noise and all: no interpolation between voxels either way.
    np.testing.assert_allclose(restored, original, rtol=1e-5, atol=1e-3)


def test_only_axes_at_the_model_spacing_are_moved_onto_the_input_voxels():
    from M2DiffSlicer.imaging.model_grid import on_input_lattice

    pet = _noisy_head((1.6, 1.6, 2.0), (1, 0, 0, 0, 1, 0, 0, 0, 1), origin_mm=-47.3)
    origin = np.array([-40.55, 12.31, 7.77])
    snapped = on_input_lattice(origin, pet, 2.0)
    assert snapped[:2].tolist() == origin[:2].tolist()  # 1.6 mm axes: nothing to line up with
    steps_from_input_origin = (snapped[2] - pet.GetOrigin()[2]) / 2.0
    assert steps_from_input_origin == pytest.approx(round(steps_from_input_origin), abs=1e-9)
    assert abs(snapped[2] - origin[2]) <= 1.0
