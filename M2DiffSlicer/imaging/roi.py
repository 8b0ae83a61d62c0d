"""ROI uptake readouts: mean, std, max, peak, volume and SUVR per label for several images side by side.

The table follows DEVELOPING.md "ROI JSON". Definitions (every image is read on the grid of the first one):
- mean / std: over the ROI's voxels (std is the population standard deviation, ddof = 0).
- max: the highest voxel value in the ROI.
- peak: the highest local mean over the ROI's voxels, where the local mean at voxel v averages the image over a
  ball of volume `peak_volume_ml` (1 ml: radius 6.2035 mm) centred at v; the ball holds the voxels whose centres
  lie within the radius in physical (spacing-aware) distance, may reach outside the ROI, and is cut at the image
  border (the mean is then over the voxels inside the image). PERCIST-like "SUVpeak" centred on ROI voxels.
- volume_ml: voxel count x voxel volume / 1000. suvr: ROI mean / reference-region mean of the same image.
- change_pct: 100 * (second image - first image) / first image for each statistic; `change_pct_all` gives the
  same for every image after the first, keyed by image name.
An ROI with no voxels gets NaN statistics (written as null in JSON, empty in CSV), never an exception.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from typing import Mapping, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import fft, ndimage

from ..atomic import write_text_atomic
from ..errors import BadInputError

STATISTICS = ("mean", "std", "max", "peak", "suvr")
CSV_COLUMNS = ("label", "name", "image", "volume_ml", "voxels", *STATISTICS,
               *(f"change_pct_{s}" for s in STATISTICS))


def roi_table(images: Mapping[str, sitk.Image], labels: sitk.Image, names: Optional[Mapping[int, str]] = None,
              reference_region: Optional[str | int] = "cerebellum", peak_volume_ml: float = 1.0) -> dict:
    """Statistics per ROI for each image; returns the ROI JSON dict (DEVELOPING.md).

    images: ordered {name: 3D image}, the first is the baseline ("input"); later images are resampled (linear)
        onto its grid when their geometry differs. labels: integer labelmap (0 = background), resampled onto
        the first image's grid by nearest neighbour when needed. names: {label: name}; labels missing from the
        map still get a row (NaN statistics), labels present but unnamed are called "label N".
    reference_region: a label number, or a name matched case-insensitively as a substring of the ROI names
        (all matching labels pooled, e.g. "cerebellum" -> left and right cerebellum); None skips SUVR.
    Raises BadInputError for an empty image set or a reference region that names no ROI.
    """
    if not images:
        raise BadInputError("no images given for the ROI table")
    if peak_volume_ml <= 0:
        raise ValueError(f"peak_volume_ml must be positive, got {peak_volume_ml}")
    image_names = list(images)
    grid = images[image_names[0]]
    label_array = sitk.GetArrayFromImage(_on_grid(labels, grid, sitk.sitkNearestNeighbor)).astype(np.int64)
    all_names = _label_names(label_array, names)
    indices = list(all_names)
    reference_labels = _reference_labels(all_names, reference_region)
    kernel = ball_kernel(grid.GetSpacing(), peak_volume_ml)
    counts = np.array([int((label_array == i).sum()) for i in indices])
    voxel_ml = float(np.prod(grid.GetSpacing())) / 1000.0
    per_image = {}
    for name in image_names:
        array = sitk.GetArrayFromImage(_on_grid(images[name], grid, sitk.sitkLinear)).astype(np.float64)
        per_image[name] = _image_statistics(array, label_array, indices, counts, kernel, reference_labels)
    rows = []
    for row_index, label in enumerate(indices):
        row = {"label": int(label), "name": all_names[label], "volume_ml": float(counts[row_index] * voxel_ml),
               "voxels": int(counts[row_index])}
        for name in image_names:
            row[name] = {s: per_image[name][s][row_index] for s in STATISTICS}
        changes = {name: _change_pct(row[image_names[0]], row[name]) for name in image_names[1:]}
        if changes:
            row["change_pct"] = changes[image_names[1]]
            row["change_pct_all"] = changes
        rows.append(row)
    reference_name = None if reference_region is None else str(reference_region)
    return {"reference_region": reference_name, "reference_labels": reference_labels, "images": image_names,
            "peak_volume_ml": peak_volume_ml, "rows": rows}


def ball_kernel(spacing_mm: Sequence[float], volume_ml: float = 1.0) -> np.ndarray:
    """Boolean [z, y, x] kernel of voxels whose centres lie within the radius of a ball of `volume_ml`.

    spacing_mm: (x, y, z) voxel spacing as SimpleITK reports it.
    """
    radius = (3.0 * volume_ml * 1000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    spacing_zyx = np.array(spacing_mm[::-1], dtype=float)
    half = np.floor(radius / spacing_zyx).astype(int)
    axes = [np.arange(-h, h + 1) * s for h, s in zip(half, spacing_zyx)]
    distance2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    return distance2 <= radius ** 2


def local_mean(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Mean of `array` [z, y, x] over `kernel` centred at each voxel, cut at the border (FFT correlation)."""
    return _correlate_same(array, kernel) / np.maximum(_correlate_same(np.ones_like(array), kernel), 1e-9)


def _correlate_same(array: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """scipy.signal.fftconvolve(array, kernel flipped, "same") on scipy.fft alone: importing scipy.signal costs
    every `m2diff enhance` a second (it pulls in scipy.stats)."""
    full = [a + k - 1 for a, k in zip(array.shape, kernel.shape)]
    shape = [fft.next_fast_len(n, real=True) for n in full]
    spectrum = fft.rfftn(array, shape) * fft.rfftn(kernel.astype(np.float64)[::-1, ::-1, ::-1], shape)
    start = [(k - 1) // 2 for k in kernel.shape]  # fftconvolve's "same": centred on the full convolution
    return fft.irfftn(spectrum, shape)[tuple(slice(s, s + a) for s, a in zip(start, array.shape))]


def _image_statistics(array: np.ndarray, label_array: np.ndarray, indices: list[int], counts: np.ndarray,
                      kernel: np.ndarray, reference_labels: list[int]) -> dict[str, list[float]]:
    nan = [float("nan")] * len(indices)
    present = [i for i, c in zip(indices, counts) if c > 0]

    def per_label(function, source: np.ndarray) -> list[float]:
        if not present:
            return nan
        # ndimage divides by the count of every label value up to the largest, including absent ones.
        with np.errstate(invalid="ignore", divide="ignore"):
            values = dict(zip(present, np.atleast_1d(function(source, label_array, present))))
        return [float(values[i]) if i in values else float("nan") for i in indices]

    means = per_label(ndimage.mean, array)
    stats = {"mean": means, "std": per_label(ndimage.standard_deviation, array),
             "max": per_label(ndimage.maximum, array),
             "peak": per_label(ndimage.maximum, local_mean(array, kernel)) if present else nan}
    reference = np.isin(label_array, reference_labels)
    reference_mean = float(array[reference].mean()) if reference.any() else float("nan")
    # A reference region without uptake gives no SUVR (NaN), not a crash: e.g. a model that outputs zeros.
    stats["suvr"] = [m / reference_mean if reference_mean > 0 else float("nan") for m in means]
    return stats


def _change_pct(base: dict, other: dict) -> dict[str, float]:
    return {s: 100.0 * (other[s] - base[s]) / base[s] if base[s] != 0 else float("nan") for s in STATISTICS}


def _on_grid(image: sitk.Image, grid: sitk.Image, interpolator: int) -> sitk.Image:
    """`image` itself when it already shares `grid`'s geometry, else resampled onto it (outside = 0)."""
    same = (image.GetSize() == grid.GetSize()
            and np.allclose(image.GetSpacing(), grid.GetSpacing(), atol=1e-5)
            and np.allclose(image.GetOrigin(), grid.GetOrigin(), atol=1e-4)
            and np.allclose(image.GetDirection(), grid.GetDirection(), atol=1e-6))
    if same:
        return image
    return sitk.Resample(image, grid, sitk.Transform(), interpolator, 0.0, image.GetPixelID())


def _label_names(label_array: np.ndarray, names: Optional[Mapping[int, str]]) -> dict[int, str]:
    """{label: name} for the named labels (in their order) then unnamed labels present in the map."""
    result = {int(k): str(v) for k, v in (names or {}).items() if int(k) != 0}
    for label in np.unique(label_array):
        if label != 0 and int(label) not in result:
            result[int(label)] = f"label {int(label)}"
    return result


def _reference_labels(names: Mapping[int, str], reference_region: Optional[str | int]) -> list[int]:
    if reference_region is None:
        return []
    if isinstance(reference_region, int) or str(reference_region).isdigit():
        label = int(reference_region)
        if label not in names:
            raise BadInputError(f"reference region label {label} is not in the labelmap")
        return [label]
    wanted = str(reference_region).lower()
    matches = [label for label, name in names.items() if wanted in name.lower()]
    if not matches:
        raise BadInputError(f"reference region {reference_region!r} matches no ROI name; available: "
                            f"{', '.join(names.values())}")
    return matches


def _finite_or_none(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite_or_none(v) for v in value]
    return value


def write_roi_json(table: dict, path: str | os.PathLike) -> None:
    """Write the ROI table as JSON (NaN as null) atomically."""
    write_text_atomic(path, json.dumps(_finite_or_none(table), indent=1))


def write_roi_csv(table: dict, path: str | os.PathLike) -> None:
    """Write the ROI table as long-format CSV: one row per ROI per image, columns CSV_COLUMNS.

    change_pct_* compare that row's image with the first image (empty on the first image's rows); NaN is empty.
    """
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    first = table["images"][0]
    for row in table["rows"]:
        for image in table["images"]:
            changes = {} if image == first else row["change_pct_all"][image]
            record = {"label": row["label"], "name": row["name"], "image": image, "volume_ml": row["volume_ml"],
                      "voxels": row["voxels"], **row[image], **{f"change_pct_{k}": v for k, v in changes.items()}}
            writer.writerow({k: _csv_value(record.get(k)) for k in CSV_COLUMNS})
    write_text_atomic(path, buffer.getvalue())


def _csv_value(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)

