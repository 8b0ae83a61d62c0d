"""Slice dataset: subject preparation and caching, orientations, empty-slice skipping, T1 dropout, determinism."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from M2DiffSlicer.training import data as dataset_module
from M2DiffSlicer.subject_files import ld_file
from M2DiffSlicer.training.data import (
    CacheDtype,
    SliceDataset,
    amplify_noise,
    find_subjects,
    load_subject,
    low_dose_levels,
    random_patch,
)
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging.model_grid import ModelGrid
from M2DiffSlicer.imaging.orientation import Orientation

# 8 mm voxels keep every test volume at 16 x 32 x 16 (x, y, z): axial 32 x 16, coronal 16 x 16, sagittal 16 x 32.
TINY_GRID = ModelGrid(spacing_mm=8.0, size_xyz=(16, 32, 16))
SLICE_SHAPES = {Orientation.AXIAL: (32, 16), Orientation.CORONAL: (16, 16), Orientation.SAGITTAL: (16, 32)}


def true_transform(index: int) -> sitk.Euler3DTransform:
    """The rigid T1->PET map of synthetic subject `index` (ITK resampling convention)."""
    transform = sitk.Euler3DTransform()
    transform.SetCenter((0.0, 0.0, 0.0))
    transform.SetRotation(0.1 + 0.05 * index, -0.15, 0.2)
    transform.SetTranslation((18.0, -12.0 - 4 * index, 10.0))
    return transform


def _head(shape_zyx, spacing, origin, semi_axes_xyz, centre_xyz):
    z, y, x = np.indices(shape_zyx, dtype=np.float32)
    px, py, pz = (origin[0] + x * spacing[0], origin[1] + y * spacing[1], origin[2] + z * spacing[2])
    r = sum(((p - c) / a) ** 2 for p, c, a in zip((px, py, pz), centre_xyz, semi_axes_xyz))
    return r, px


def write_subjects(root: Path, count: int = 3, drfs=(20, 100)) -> list[Path]:
    """Write `count` tiny subject folders: an ellipsoid head with a hot rim and a lateralised lesion.

    The T1 lives in its own frame: sitk.Resample(t1, pet, true_transform(i)) puts it on the PET.
    """
    folders = []
    for i in range(count):
        rng = np.random.default_rng(i)
        folder = root / f"sub-{i + 1:04d}"
        folder.mkdir(parents=True)
        spacing, origin, shape = (4.0, 4.0, 4.5), (-80.0, -96.0, -81.0), (36, 48, 40)
        r, px = _head(shape, spacing, origin, (50 + 3 * i, 70, 50), (5.0 * i, 0.0, 0.0))
        activity = np.where(r < 1, 1.0 + 2.0 * (r > 0.6) + 1.5 * (np.abs(px - 25) < 10) * (r < 0.5), 0.0) * 5000
        sd = sitk.GetImageFromArray(activity.astype(np.float32))
        sd.SetSpacing(spacing)
        sd.SetOrigin(origin)
        sd = sitk.SmoothingRecursiveGaussian(sd, 3.0)
        sitk.WriteImage(sd, str(folder / "pet_sd.nii.gz"))
        for drf in drfs:
            noisy = sitk.GetArrayFromImage(sd) + rng.normal(0.0, 100.0 * np.sqrt(drf), shape).astype(np.float32)
            ld = sitk.GetImageFromArray(noisy.astype(np.float32))
            ld.CopyInformation(sd)
            sitk.WriteImage(ld, str(folder / ld_file(drf)))
        anatomy = sitk.GetImageFromArray(np.where(r < 1, 300.0 + 500.0 * (r < 0.6), 0.0).astype(np.float32))
        anatomy.CopyInformation(sd)
        transform = true_transform(i)
        t1 = sitk.Resample(anatomy, [48, 56, 48], transform.GetInverse(), sitk.sitkLinear,
                           (-96.0, -110.0, -96.0), (4.0, 4.0, 4.0), np.eye(3).ravel().tolist(), 0.0)
        sitk.WriteImage(t1, str(folder / "t1.nii.gz"))
        sitk.WriteTransform(transform, str(folder / "t1_to_pet.tfm"))
        folders.append(folder)
    return folders


@pytest.fixture(scope="module")
def subject_dirs(tmp_path_factory) -> list[Path]:
    return write_subjects(tmp_path_factory.mktemp("subjects"))


@pytest.fixture(scope="module")
def tiny_dataset(subject_dirs, tmp_path_factory) -> SliceDataset:
    return SliceDataset.from_folders(subject_dirs, [100], TINY_GRID, tmp_path_factory.mktemp("cache"))


def test_find_subjects_lists_sub_folders_sorted_and_rejects_an_empty_folder(subject_dirs, tmp_path):
    assert find_subjects(subject_dirs[0].parent) == subject_dirs
    with pytest.raises(BadInputError, match="no subject folders"):
        find_subjects(tmp_path)


def test_prepared_volumes_are_on_the_model_grid_in_network_units(subject_dirs):
    subject = load_subject(subject_dirs[0], 100, TINY_GRID)
    assert subject.volumes.shape == (3, 32 // 2, 32, 16)
    ld, sd, t1 = subject.volumes
    head = sd > 0.5
    # The LD scale is the LD head mean, so both PET volumes have a head mean near 1 network unit.
    assert 0.7 < sd[head].mean() < 1.6
    assert abs(ld[head].mean() - sd[head].mean()) < 0.1
    assert 0.2 < t1.max() < 1.5


def test_t1_is_aligned_to_the_pet_through_the_saved_transform(subject_dirs, monkeypatch):
    aligned = load_subject(subject_dirs[1], 100, TINY_GRID).volumes
    pet_head, t1_head = aligned[1] > 0.3, aligned[2] > 0.1
    dice = 2 * (pet_head & t1_head).sum() / (pet_head.sum() + t1_head.sum())
    # Without the transform the same T1 lands ~25 mm and ~15 degrees away: a clearly worse overlap.
    monkeypatch.setattr(dataset_module.sitk, "ReadTransform", lambda path: sitk.Transform())
    unaligned = load_subject(subject_dirs[1], 100, TINY_GRID).volumes
    t1_off = unaligned[2] > 0.1
    dice_off = 2 * (pet_head & t1_off).sum() / (pet_head.sum() + t1_off.sum())
    assert dice > 0.85
    assert dice_off < dice - 0.1


def test_cached_volumes_are_reused_and_rebuilt_when_a_source_changes(subject_dirs, tmp_path, monkeypatch):
    first = load_subject(subject_dirs[0], 20, TINY_GRID, tmp_path, CacheDtype.FLOAT16)
    assert first.volumes.dtype == np.float16
    assert len(list(tmp_path.glob("*.npy"))) == 1

    def no_preparation(*args):
        raise AssertionError("prepared again despite a valid cache")

    with monkeypatch.context() as patch:
        patch.setattr(dataset_module, "_prepare", no_preparation)
        cached = load_subject(subject_dirs[0], 20, TINY_GRID, tmp_path, CacheDtype.FLOAT16)
    np.testing.assert_array_equal(cached.volumes, first.volumes)
    assert cached.scale == first.scale

    sd_path = subject_dirs[0] / "pet_sd.nii.gz"
    stat = sd_path.stat()
    os.utime(sd_path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    calls = []
    real_prepare = dataset_module._prepare
    monkeypatch.setattr(dataset_module, "_prepare", lambda *a: calls.append(1) or real_prepare(*a))
    load_subject(subject_dirs[0], 20, TINY_GRID, tmp_path, CacheDtype.FLOAT16)
    assert calls == [1]


def test_a_missing_file_in_a_subject_folder_is_a_bad_input(subject_dirs):
    with pytest.raises(BadInputError, match="pet_ld_drf050"):
        load_subject(subject_dirs[0], 50, TINY_GRID)


@pytest.mark.parametrize("orientation", list(Orientation))
def test_batches_hold_one_orientation_with_its_slice_shape(tiny_dataset, orientation):
    refs = tiny_dataset.slices[orientation][:5]
    target, cond = tiny_dataset.collate(refs)
    shape = (5, 1, *SLICE_SHAPES[orientation])
    assert target.shape == shape and cond["ld_pet"].shape == shape and cond["t1"].shape == shape
    assert cond["t1_present"].shape == (5,) and cond["t1_present"].dtype == torch.bool
    assert target.dtype == cond["ld_pet"].dtype == cond["t1"].dtype == torch.float32
    ref = refs[2]
    expected = orientation.take(tiny_dataset.subjects[ref.volume].volumes, ref.index)
    np.testing.assert_array_equal(target[2, 0].numpy(), expected[1])
    np.testing.assert_array_equal(cond["ld_pet"][2, 0].numpy(), expected[0])


def test_near_empty_slices_are_skipped_in_every_orientation(tiny_dataset):
    volume = np.asarray(tiny_dataset.subjects[0].volumes[1])
    for orientation in Orientation:
        kept = {r.index for r in tiny_dataset.slices[orientation] if r.volume == 0}
        dropped = set(range(volume.shape[orientation.axis])) - kept
        assert dropped, orientation
        for k in dropped:
            assert (orientation.take(volume, k) > 0.1).mean() < 0.01, (orientation, k)


def test_an_epoch_mixes_orientations_but_never_within_a_batch(tiny_dataset):
    batches = tiny_dataset.epoch_batches(batch_size=4, seed=0, epoch=0)
    assert all(len(b) == 4 for b in batches)
    assert all(len({r.orientation for r in b}) == 1 for b in batches)
    order = [b[0].orientation for b in batches]
    assert set(order) == set(Orientation)
    # Interleaved, not grouped: the orientation changes more often than the 2 changes of a grouped order.
    assert sum(a != b for a, b in zip(order, order[1:])) > 2
    full = sum(len(refs) // 4 for refs in tiny_dataset.slices.values())
    assert len(batches) == full


def test_epoch_order_depends_only_on_seed_and_epoch(tiny_dataset):
    a = tiny_dataset.epoch_batches(4, seed=3, epoch=1)
    assert a == tiny_dataset.epoch_batches(4, seed=3, epoch=1)
    assert a != tiny_dataset.epoch_batches(4, seed=3, epoch=2)
    assert a != tiny_dataset.epoch_batches(4, seed=4, epoch=1)


def test_unshuffled_batches_cover_every_slice_once(tiny_dataset):
    batches = tiny_dataset.epoch_batches(7, seed=0, epoch=0, shuffle=False)
    refs = [r for b in batches for r in b]
    assert len(refs) == len(set(refs)) == len(tiny_dataset)


def test_t1_dropout_drops_about_the_requested_fraction_and_zeroes_the_t1(tiny_dataset):
    refs = tiny_dataset.slices[Orientation.CORONAL]
    rng = np.random.default_rng(0)
    present = []
    for _ in range(2000 // len(refs) + 1):
        _, cond = tiny_dataset.collate(refs, rng, t1_dropout=0.3)
        present.append(cond["t1_present"].numpy())
        absent = ~cond["t1_present"]
        assert (cond["t1"][absent] == 0).all()
        assert (cond["t1"][~absent].flatten(1).amax(dim=1) > 0).all()
    fraction_dropped = 1.0 - np.concatenate(present).mean()
    assert abs(fraction_dropped - 0.3) < 0.05  # > 4 binomial standard deviations at n >= 2000


def test_collate_is_deterministic_for_a_seeded_generator(tiny_dataset):
    refs = tiny_dataset.slices[Orientation.AXIAL][:6]
    first = tiny_dataset.collate(refs, np.random.default_rng(5), t1_dropout=0.5, flip=True)
    second = tiny_dataset.collate(refs, np.random.default_rng(5), t1_dropout=0.5, flip=True)
    assert (first[0] == second[0]).all()
    assert all((first[1][k] == second[1][k]).all() for k in first[1])


def test_flip_mirrors_left_right_and_leaves_sagittal_slices_alone(tiny_dataset):
    axial = tiny_dataset.slices[Orientation.AXIAL][:16]
    plain, plain_cond = tiny_dataset.collate(axial)
    flipped, cond = tiny_dataset.collate(axial, np.random.default_rng(1), flip=True)
    mirrored = [(f == p.flip(-1)).all().item() and not (f == p).all().item() for f, p in zip(flipped, plain)]
    unchanged = [(f == p).all().item() for f, p in zip(flipped, plain)]
    assert all(m or u for m, u in zip(mirrored, unchanged))
    assert 0 < sum(mirrored) < len(axial)
    mirrored = torch.tensor(mirrored)
    assert (cond["ld_pet"][mirrored] == plain_cond["ld_pet"][mirrored].flip(-1)).all()

    sagittal = tiny_dataset.slices[Orientation.SAGITTAL][:8]
    assert (tiny_dataset.collate(sagittal, np.random.default_rng(1), flip=True)[0]
            == tiny_dataset.collate(sagittal)[0]).all()


def test_noise_gain_scales_each_samples_deviation_from_the_sd_pet_within_the_range(tiny_dataset):
    refs = tiny_dataset.slices[Orientation.AXIAL][:16]
    plain_target, plain = tiny_dataset.collate(refs)
    target, cond = tiny_dataset.collate(refs, np.random.default_rng(2), noise_gain=3.0)
    assert (target == plain_target).all()  # the SD-PET target and the T1 are untouched
    assert (cond["t1"] == plain["t1"]).all()
    deviation, amplified = plain["ld_pet"] - plain_target, cond["ld_pet"] - plain_target
    keep = (cond["ld_pet"] > 0) & (deviation.abs() > 1e-3)  # away from the clamp at 0 and from exact agreement
    gains = [float((amplified[i][keep[i]] / deviation[i][keep[i]]).median()) for i in range(len(refs))]
    assert all(1.0 <= g <= 3.0 + 1e-4 for g in gains)
    assert max(gains) - min(gains) > 0.5  # drawn per sample, not once per batch


def test_amplified_noise_stays_non_negative_and_a_gain_below_one_is_refused(tiny_dataset):
    ld = np.array([[[0.0, 0.5, 2.0]]], np.float32)
    sd = np.array([[[0.5, 0.5, 1.0]]], np.float32)
    assert amplify_noise(ld, sd, np.log([2.0])).tolist() == [[[0.0, 0.5, 3.0]]]
    refs = tiny_dataset.slices[Orientation.AXIAL][:2]
    with pytest.raises(ValueError, match="noise_gain"):
        tiny_dataset.collate(refs, np.random.default_rng(0), noise_gain=0.5)
    with pytest.raises(ValueError, match="rng is required"):
        tiny_dataset.collate(refs, noise_gain=2.0)


def test_a_list_of_drfs_adds_one_volume_set_per_drf(subject_dirs, tmp_path):
    both = SliceDataset.from_folders(subject_dirs[:2], [20, 100], TINY_GRID, tmp_path)
    assert [(s.name, s.drf) for s in both.subjects] == [
        ("sub-0001", 20), ("sub-0001", 100), ("sub-0002", 20), ("sub-0002", 100)
    ]
    np.testing.assert_allclose(both.subjects[0].volumes[1], both.subjects[1].volumes[1], atol=0.05)
    head = both.subjects[1].volumes[1] > 0.5
    error = [np.abs(s.volumes[0] - s.volumes[1])[head].mean() for s in both.subjects[:2]]
    assert error[1] > 1.5 * error[0]  # DRF 100 is noisier than DRF 20


def test_every_dose_reads_the_levels_meta_json_lists_continuous_ones_included_but_not_the_replicate(tmp_path):
    (folder,) = write_subjects(tmp_path / "data", count=1, drfs=(1, 4, 37.42))
    (folder / "meta.json").write_text('{"drfs": {"ld_drf001": 1, "ld_drf004": 4, "ld_drf037p42": 37.42}}')
    assert low_dose_levels(folder) == [4.0, 37.42]
    dataset = SliceDataset.from_folders([folder], None, TINY_GRID, tmp_path / "cache")
    assert [s.drf for s in dataset.subjects] == [4.0, 37.42]
    head = dataset.subjects[0].volumes[1] > 0.5
    error = [np.abs(s.volumes[0] - s.volumes[1])[head].mean() for s in dataset.subjects]
    assert error[1] > 2 * error[0]  # the continuous-DRF file really is the noisier image, not DRF 4 twice


def test_a_subject_without_low_dose_levels_in_its_meta_json_is_a_bad_input(tmp_path):
    (folder,) = write_subjects(tmp_path, count=1, drfs=(1,))
    (folder / "meta.json").write_text('{"drfs": {"ld_drf001": 1}}')
    with pytest.raises(BadInputError, match="no low-dose image"):
        SliceDataset.from_folders([folder], None, TINY_GRID)


@pytest.mark.parametrize("orientation", list(Orientation))
def test_patches_have_the_requested_side_capped_at_the_slice_and_lie_on_the_head(tiny_dataset, orientation):
    refs = tiny_dataset.slices[orientation][:6]
    target, cond = tiny_dataset.collate(refs, np.random.default_rng(3), patch_size=16)
    height, width = SLICE_SHAPES[orientation]
    assert target.shape == (6, 1, min(16, height), min(16, width)) == cond["ld_pet"].shape == cond["t1"].shape
    assert ((target > tiny_dataset.min_signal).flatten(1).any(dim=1)).all()  # never a patch of air


def test_a_patch_is_the_window_of_the_slice_around_a_head_pixel():
    sample = np.zeros((3, 40, 30), dtype=np.float32)
    sample[:, 30, 5] = 1.0  # the one head pixel, near the bottom-left corner
    sample[0] = np.arange(40 * 30).reshape(40, 30)
    patch = random_patch(sample, 16, np.random.default_rng(0), 0.1)
    assert patch.shape == (3, 16, 16)
    np.testing.assert_array_equal(patch[0], sample[0, 22:38, 0:16])  # centred on (30, 5), shifted to fit


def test_a_batch_mixing_orientations_is_rejected(tiny_dataset):
    refs = [tiny_dataset.slices[Orientation.AXIAL][0], tiny_dataset.slices[Orientation.CORONAL][0]]
    with pytest.raises(ValueError, match="one orientation"):
        tiny_dataset.collate(refs)
