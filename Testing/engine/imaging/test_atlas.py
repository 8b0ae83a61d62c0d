"""Built-in lobar atlas: the committed resources and their transfer onto a subject's PET grid."""

import numpy as np
import pytest
import SimpleITK as sitk

import synthetic_brain as sb
from M2DiffSlicer.imaging.atlas import atlas_labels_for_subject, load_atlas
from M2DiffSlicer.resources import resource_path

TRUTH = sb.known_rigid(rotation_deg=(4.0, -3.0, 2.0), translation_mm=(5.0, -4.0, 3.0))


def _mean_dice(a: np.ndarray, b: np.ndarray) -> float:
    labels = [label for label in np.union1d(np.unique(a), np.unique(b)) if label != 0]
    return float(np.mean([2 * ((a == k) & (b == k)).sum() / ((a == k).sum() + (b == k).sum()) for k in labels]))


def test_atlas_resources_are_small_and_every_label_has_a_name():
    folder = resource_path("Atlas")
    assert sum(p.stat().st_size for p in folder.iterdir()) < 2 * 2**20
    assert (folder / "NOTICE.md").is_file()
    atlas = load_atlas()
    present = set(np.unique(sitk.GetArrayViewFromImage(atlas.labels))) - {0}
    assert present == set(atlas.names) and len(present) == 25
    assert atlas.labels.GetSpacing() == atlas.template_t1.GetSpacing() == (2.0, 2.0, 2.0)


def test_left_labels_lie_on_the_subjects_left():
    atlas = load_atlas()
    array = sitk.GetArrayViewFromImage(atlas.labels)
    for label, name in atlas.names.items():
        if name.endswith(" L"):
            z, y, x = np.argwhere(array == label).mean(axis=0)
            assert atlas.labels.TransformContinuousIndexToPhysicalPoint((x, y, z))[0] > 0, name  # LPS: +x = left


def test_mri_free_mode_registers_the_pet_template_to_a_moved_pet():
    pet = sb.pet_like((3.0, 3.0, 3.0))
    moved = sitk.Resample(pet, pet, TRUTH.GetInverse(), sitk.sitkLinear, 0.0)
    labels, names, registration = atlas_labels_for_subject(moved)
    expected = sitk.Resample(load_atlas().labels, moved, TRUTH.GetInverse(), sitk.sitkNearestNeighbor, 0)
    assert labels.GetSize() == moved.GetSize() and labels.GetOrigin() == moved.GetOrigin()
    assert _mean_dice(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(expected)) > 0.85
    assert names[1] == "Frontal lobe L" and registration.iterations > 0


def test_t1_mode_brings_the_labels_through_the_t1_to_pet_transform():
    pet = sb.pet_like((3.0, 3.0, 3.0))
    t1 = sb.misaligned_t1(TRUTH, (2.0, 2.0, 2.0))
    labels, _, _ = atlas_labels_for_subject(pet, t1=t1, t1_to_pet=TRUTH)
    expected = sitk.Resample(load_atlas().labels, pet, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    assert _mean_dice(sitk.GetArrayFromImage(labels), sitk.GetArrayFromImage(expected)) > 0.85
