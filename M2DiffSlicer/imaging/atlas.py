"""Built-in lobar atlas (AAL grouped into lobes, MNI152 2 mm) brought onto a subject's PET grid.

Resources/Atlas/ holds the template T1, a PET-like (FDG, grey-matter weighted) template, the labelmap and its
names; `scripts/build_atlas.py` makes them and NOTICE.md there gives their sources and licences.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import Optional

import SimpleITK as sitk

from .registration import ProgressCallback, RegistrationResult, register_affine
from ..resources import resource_path


@dataclasses.dataclass(frozen=True)
class Atlas:
    """The built-in atlas in MNI space: template_t1 and template_pet (uint8, 2 mm), labels (uint8), names."""

    template_t1: sitk.Image
    template_pet: sitk.Image
    labels: sitk.Image
    names: dict[int, str]


@functools.lru_cache(maxsize=1)
def load_atlas() -> Atlas:
    """Read the atlas from Resources/Atlas (cached; callers must not modify the images)."""
    folder = resource_path("Atlas")
    names = json.loads((folder / "lobar_labels.json").read_text())["labels"]
    return Atlas(template_t1=sitk.ReadImage(str(folder / "template_t1.nii.gz")),
                 template_pet=sitk.ReadImage(str(folder / "template_pet.nii.gz")),
                 labels=sitk.ReadImage(str(folder / "lobar_labels.nii.gz")),
                 names={int(k): v for k, v in names.items()})


def atlas_labels_for_subject(pet: sitk.Image, t1: Optional[sitk.Image] = None,
                             t1_to_pet: Optional[sitk.Transform] = None,
                             progress: Optional[ProgressCallback] = None
                             ) -> tuple[sitk.Image, dict[int, str], RegistrationResult]:
    """The lobar labelmap on the PET grid, its names, and the template registration used.

    With a T1: the template T1 is registered (rigid then affine, Mattes MI) to the subject T1, and the labels
    follow through `t1_to_pet` (T1 -> PET in ITK resampling convention; identity when None, i.e. the T1 already
    lies in the PET frame). Without a T1 (MRI-free): the PET-like template is registered to the PET itself.
    Labels are resampled by nearest neighbour; uint8 labelmap with the PET's geometry.
    """
    atlas = load_atlas()
    if t1 is None:
        registration = register_affine(pet, atlas.template_pet, progress=progress)
        pet_to_template = registration.transform
    else:
        registration = register_affine(t1, atlas.template_t1, progress=progress)
        # Composite transforms apply their last-added transform first: PET point -> T1 point -> template point.
        pet_to_template = sitk.CompositeTransform([registration.transform, t1_to_pet or sitk.Transform()])
    labels = sitk.Resample(atlas.labels, pet, pet_to_template, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return labels, dict(atlas.names), registration
