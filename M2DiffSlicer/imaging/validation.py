"""Input checks that fail early with a message naming the file and the problem; inputs are never modified.

Entry points: `check_file_header(path)` before reading a file (4D / huge files fail without loading), then
`validate_inputs(pet, t1, outputs)`, which returns warnings and raises BadInputError (or OutOfMemoryError
for a job that cannot fit in memory). `nonnegative_copy` is the one place PET negatives are clipped, on a copy.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from ..errors import BadInputError, OutOfMemoryError
from .head_mask import head_mask

MIN_SPACING_MM = 0.3
MAX_SPACING_MM = 10.0
MAX_ANISOTROPY = 5.0
# Working copies per input voxel during a job (float32 read + float64 numpy copy + resampled / restored / output
# float32 arrays), in bytes; measured from the pipeline's steps, rounded up.
BYTES_PER_PET_VOXEL = 40
BYTES_PER_T1_VOXEL = 24
# Fixed cost of the model-grid work (96 x 112 x 96 volumes per orientation, network, sampler state), in bytes.
MODEL_GRID_BYTES = 1_500_000_000
# Modality heuristic (`t1_score`, computed on a ~2 mm copy): core brightness + T1_SCORE_WEIGHT x inward-gradient
# alignment. Measured (Testing/engine/imaging/test_validation.py, benchmarks in the issue-17 report) on simulated
# T1s with 1.5 T / 3 T contrast, bias fields up to 30 %, 1-5 % noise, 0.8-1.5 mm voxels, necks, defacing and
# atrophy, and on the MNI 2009a/2009c T1s: 1.10-1.60; on FDG PET (1.6-4 mm, PSF 2.5-9 mm, SD to DRF 200),
# T2 (MNI 2009c and synthetic) and synthetic FLAIR: <= 0.86. The core brightness alone overlapped (T1 0.61,
# PET 0.63): a bias field dims the core of a T1 as much as grey matter dims a PET's. Known limit: a FLAIR whose FOV
# holds a neck or whose face was removed scores 0.9-1.3 and is accepted (only a plain FLAIR is refused).
# A PET is refused as "looks like a T1" by the older, simpler `head_centre_brightness` above T1_LIKE_ABOVE (FDG PET
# 0.50-0.65 on the samples above, T1 0.66-0.84): it refuses no valid PET of the samples, and `t1_score` could
# (a PET simulated from a coarse 2-3 mm anatomy, whose scalp enters the head mask, scores up to 1.66).
T1_LIKE_ABOVE = 0.70
# `t1_score` is measured on <= 3 mm volumes only: FDG PET binned to 3.5-4.5 mm voxels scores like a T1 (up to
# 1.7). No T1 is that coarse (clinical T1s are 0.8-1.5 mm), so a "T1" coarser than this is refused outright.
MAX_T1_SPACING_MM = 2.5
T1_SCORE_WEIGHT = 5.0
T1_ABOVE = 1.04         # midway between the T1s' lowest (1.22) and the others' highest (0.86)
ANALYSIS_MM = 2.0        # the statistic's grid: finer voxels are averaged (noise) and it costs < 3 s
CORE_RADIUS_MM = 30.0
CORE_REFERENCE_RADIUS_MM = 50.0
BRAIN_HEIGHT_MM = 170.0  # the core is centred on the top of the head (vertex to cerebellum), not on a neck
DEEP_FRACTION = 0.26     # inward-gradient voxels lie deeper than this fraction of the deepest point (no scalp)


def validate_inputs(pet: sitk.Image, t1: Optional[sitk.Image], outputs: Iterable[Optional[str | os.PathLike]],
                    pet_name: str = "PET", t1_name: str = "T1",
                    inputs: Sequence[str | os.PathLike] = (),
                    available_bytes: Optional[int] = None) -> list[str]:
    """Check a job's inputs before any heavy work; return human-readable warnings.

    pet: the low-dose PET as read (3D, any units). t1: the T1 or None (MRI-free mode). outputs: the output paths
    (None entries are ignored). pet_name / t1_name: how the files are named in messages (their paths).
    inputs: input paths that outputs must not overwrite. available_bytes: memory budget (default: what the
    machine reports as available). Raises BadInputError on an unusable input or output path, OutOfMemoryError
    when the job's estimated memory exceeds the budget. The T1/PET overlap is checked after registration
    (`check_overlap`), because headers from different sessions may place the heads far apart.
    """
    check_output_paths(outputs, inputs)
    warnings: list[str] = []
    for image, name in ((pet, pet_name), (t1, t1_name)):
        if image is None:
            continue
        check_geometry(image, name)
        array = sitk.GetArrayViewFromImage(image)
        check_values(array, name)
        warnings += negative_value_warnings(array, name, clip=image is pet)
    check_memory(pet, t1, available_bytes)
    check_modalities(pet, t1, pet_name, t1_name)
    return warnings


def check_file_header(path: str | os.PathLike, name: Optional[str] = None,
                      available_bytes: Optional[int] = None) -> None:
    """Check a volume file's header before reading its voxels: 3D scalar, sane spacing, fits in memory.

    Catches a 4D or huge file without loading it. DICOM folders are skipped (their checks run after reading).
    """
    path = Path(path)
    if path.is_dir():
        return
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as error:
        raise BadInputError(f"{name or path}: cannot read the image header ({str(error).splitlines()[0]})") from error
    size = reader.GetSize()
    check_geometry_values(name or str(path), reader.GetDimension(), size, reader.GetSpacing(),
                          reader.GetNumberOfComponents())
    needed = int(np.prod(size)) * max(BYTES_PER_PET_VOXEL, BYTES_PER_T1_VOXEL)
    budget = available_memory_bytes() if available_bytes is None else available_bytes
    if needed > budget:
        raise OutOfMemoryError(f"{name or path}: size {size} needs about {needed / 2**30:.1f} GiB of working "
                               f"memory but only {budget / 2**30:.1f} GiB is available; crop or resample it")


def check_geometry(image: sitk.Image, name: str) -> None:
    """Raise BadInputError unless `image` is a scalar 3D volume with sensible voxel spacing."""
    check_geometry_values(name, image.GetDimension(), image.GetSize(), image.GetSpacing(),
                          image.GetNumberOfComponentsPerPixel())


def check_geometry_values(name: str, dimension: int, size: Sequence[int], spacing_mm: Sequence[float],
                          components: int) -> None:
    """`check_geometry` on header values (so files can be checked before their voxels are read)."""
    if components != 1:
        raise BadInputError(f"{name}: has {components} components per voxel (a vector or RGB image); a "
                            "single-valued 3D volume is needed")
    size = tuple(size)
    if dimension == 4:
        raise BadInputError(f"{name}: is 4D (size {size}, e.g. a dynamic PET); give one 3D frame or a "
                            "summed static image")
    if dimension != 3 or min(size) < 2:
        raise BadInputError(f"{name}: is not a 3D volume (size {size}); a 2D image or a single slice cannot be "
                            "enhanced")
    spacing = np.array(spacing_mm)
    if spacing.min() < MIN_SPACING_MM or spacing.max() > MAX_SPACING_MM:
        raise BadInputError(f"{name}: voxel spacing {tuple(np.round(spacing, 3))} mm is outside "
                            f"[{MIN_SPACING_MM}, {MAX_SPACING_MM}] mm; check the header's units")
    if spacing.max() / spacing.min() > MAX_ANISOTROPY:
        raise BadInputError(f"{name}: voxel spacing {tuple(np.round(spacing, 3))} mm is more than "
                            f"{MAX_ANISOTROPY:g}x anisotropic; reconstruct or resample to a finer slice spacing")


def check_values(array: np.ndarray, name: str) -> None:
    """Raise BadInputError for an empty or constant volume or non-finite voxels. array: [z, y, x]."""
    if array.size == 0:
        raise BadInputError(f"{name}: is empty (no voxels)")
    if not np.issubdtype(array.dtype, np.integer):
        finite = np.isfinite(array)
        if not finite.all():
            raise BadInputError(f"{name}: has {int(array.size - finite.sum())} NaN/Inf voxels; fix or mask them "
                                "before enhancing")
    low, high = array.min(), array.max()
    if low == high:
        raise BadInputError(f"{name}: is constant (every voxel = {float(low):g}); it holds no image")
    if high <= 0:
        raise BadInputError(f"{name}: has no positive voxels (max {float(high):g}); it holds no activity or signal")


def negative_value_warnings(array: np.ndarray, name: str, clip: bool) -> list[str]:
    """Warn about negative voxels; `clip` says they will be set to 0 in the processing copy (PET). array: [z, y, x]."""
    negative = int((array < 0).sum())
    if negative == 0:
        return []
    fraction = negative / array.size
    action = ("they are set to 0 in the copy used for enhancement (activity cannot be negative); the input file "
              "is unchanged" if clip else "they are kept")
    return [f"{name}: {negative} voxels ({100 * fraction:.2f} %) are negative (min {float(array.min()):g}); "
            f"{action}"]


def nonnegative_copy(pet: sitk.Image) -> sitk.Image:
    """A float32 copy of the PET with negatives (reconstruction noise in the background) clipped to 0."""
    array = np.maximum(sitk.GetArrayFromImage(pet).astype(np.float32), 0.0)
    copy = sitk.GetImageFromArray(array)
    copy.CopyInformation(pet)
    return copy


def estimate_memory_bytes(pet: sitk.Image, t1: Optional[sitk.Image]) -> int:
    """Peak bytes a job needs: per-voxel working copies of the inputs plus the fixed model-grid work."""
    t1_voxels = 0 if t1 is None else int(np.prod(t1.GetSize()))
    return int(np.prod(pet.GetSize())) * BYTES_PER_PET_VOXEL + t1_voxels * BYTES_PER_T1_VOXEL + MODEL_GRID_BYTES


def available_memory_bytes() -> int:
    """Memory the OS reports as available (Linux MemAvailable, else physical pages)."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(pet: sitk.Image, t1: Optional[sitk.Image], available_bytes: Optional[int] = None) -> None:
    """Raise OutOfMemoryError, with the estimate, when the job cannot fit in `available_bytes`."""
    needed = estimate_memory_bytes(pet, t1)
    budget = available_memory_bytes() if available_bytes is None else available_bytes
    if needed > budget:
        t1_size = "no T1" if t1 is None else f"T1 size {t1.GetSize()}"
        raise OutOfMemoryError(f"the job needs about {needed / 2**30:.1f} GiB but only {budget / 2**30:.1f} GiB "
                               f"is available (PET size {pet.GetSize()}, {t1_size}); crop or resample the inputs")


def t1_score(image: sitk.Image) -> float:
    """How T1-like a head volume is: `core_brightness` + T1_SCORE_WEIGHT x `inward_gradient` (dimensionless).

    A T1 scores above T1_ABOVE (its white matter is the bright, deep tissue); PET, T2 and FLAIR score below it
    (their grey matter or CSF is brighter than the white matter). Direction-aware: works on any slice orientation.
    """
    array, spacing, z_mm = _analysis_copy(image)
    head = _head_mask(array)
    if head.sum() < 100:
        return float("nan")
    # The brain is the top BRAIN_HEIGHT_MM of the head: a neck or warm shoulders below would pull a centroid down
    # and hold the deepest points.
    upper = head & (z_mm >= float(z_mm[head].max()) - BRAIN_HEIGHT_MM)
    return core_brightness(array, head, upper, spacing) + T1_SCORE_WEIGHT * inward_gradient(array, head, upper,
                                                                                           spacing)


def _analysis_copy(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float32 [z, y, x] copy binned to ~ANALYSIS_MM, its spacing [z, y, x] (mm) and each voxel's superior mm."""
    factors = [max(1, int(round(ANALYSIS_MM / s))) for s in image.GetSpacing()]
    binned = sitk.BinShrink(sitk.Cast(image, sitk.sitkFloat32), factors)
    array = sitk.GetArrayFromImage(binned)
    spacing = np.array(binned.GetSpacing())
    # Physical z (LPS superior) of every voxel: origin + direction x (index x spacing), index order (x, y, z).
    row = np.array(binned.GetDirection()).reshape(3, 3)[2] * spacing
    k, j, i = (np.arange(n, dtype=np.float32) for n in array.shape)
    z_mm = binned.GetOrigin()[2] + row[0] * i[None, None, :] + row[1] * j[None, :, None] + row[2] * k[:, None, None]
    return array, spacing[::-1], z_mm.astype(np.float32)


def _head_mask(array: np.ndarray) -> np.ndarray:
    """The largest connected region of `head_mask`, holes filled."""
    head = head_mask(array)
    components, count = ndimage.label(head)
    if count > 1:
        head = components == np.argmax(np.bincount(components.ravel())[1:]) + 1
    return ndimage.binary_fill_holes(head)


def core_brightness(array: np.ndarray, head: np.ndarray, upper: np.ndarray, spacing: np.ndarray) -> float:
    """Median within CORE_RADIUS_MM of the brain's centre over the 99th percentile within CORE_REFERENCE_RADIUS_MM.

    The centre of a head is deep white matter, ventricles and thalamus: bright in a T1 (white matter is its
    brightest brain tissue, ~0.8) and dim in FDG PET (grey-matter uptake is ~3-4x white matter, ~0.55). The brain's
    centre is the centroid of `upper` (the head's top); the reference stays near the core, clear of bright scalp
    fat and of a bias field's far side. array, head, upper: [z, y, x]; spacing: [z, y, x] mm.
    """
    centre = np.array(np.nonzero(upper)).mean(axis=1)
    axes = [(np.arange(n) - c) * s for n, c, s in zip(array.shape, centre, spacing)]
    distance2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    core = head & (distance2 < CORE_RADIUS_MM ** 2)
    reference = head & (distance2 < CORE_REFERENCE_RADIUS_MM ** 2)
    if not core.any():
        return float("nan")
    return float(np.median(array[core]) / max(float(np.percentile(array[reference], 99)), 1e-12))


def inward_gradient(array: np.ndarray, head: np.ndarray, upper: np.ndarray, spacing: np.ndarray) -> float:
    """Mean cosine (-1..1) between the intensity gradient and the inward direction (up the depth below the head's
    surface), weighted by gradient magnitude, over the brighter half of the deep part of `upper` (the head's top).

    In a T1, intensity rises inward at both the CSF/grey and grey/white borders (white matter brightest); in FDG
    PET, FLAIR and T2 it falls at the grey/white border (grey matter or CSF brightest), so the mean is ~0 or below.
    The depth cut (DEEP_FRACTION of the deepest point) keeps the scalp/skull borders out; a smooth bias field adds
    little gradient compared to tissue borders.
    """
    depth = ndimage.distance_transform_edt(head, sampling=spacing)
    inward = np.stack(np.gradient(ndimage.gaussian_filter(depth, 2.0), *spacing))
    inward /= np.maximum(np.sqrt((inward ** 2).sum(0)), 1e-6)
    smooth = ndimage.gaussian_filter(array, 1.0)
    gradient = np.stack(np.gradient(smooth, *spacing))
    deep = upper & (depth >= DEEP_FRACTION * depth[upper].max())
    bright = deep & (smooth > np.median(smooth[deep]))
    magnitude = np.sqrt((gradient ** 2).sum(0))[bright]
    return float((gradient * inward).sum(0)[bright].sum() / max(float(magnitude.sum()), 1e-12))


def head_centre_brightness(image: sitk.Image, radius_mm: float = 30.0) -> float:
    """Median intensity within `radius_mm` of the head's centre of mass, over the head's 99th percentile.

    The PET side of `check_modalities`: cheap, and high only for a bright-centred (T1-like) volume.
    """
    array = sitk.GetArrayViewFromImage(image).astype(np.float32)
    head = head_mask(array)
    spacing = np.array(image.GetSpacing()[::-1])
    centre = np.array(np.nonzero(head)).mean(axis=1)
    axes = [(np.arange(n) - c) * s for n, c, s in zip(array.shape, centre, spacing)]
    distance2 = axes[0][:, None, None] ** 2 + axes[1][None, :, None] ** 2 + axes[2][None, None, :] ** 2
    core = head & (distance2 < radius_mm ** 2)
    if not core.any():
        return float("nan")
    return float(np.median(array[core]) / np.percentile(array[head], 99))


def check_modalities(pet: sitk.Image, t1: Optional[sitk.Image], pet_name: str = "PET",
                     t1_name: str = "T1") -> None:
    """Raise BadInputError when the PET looks like a T1, the T1 like a PET / T2 / FLAIR, or the pair is swapped.

    The PET is refused when `head_centre_brightness` > T1_LIKE_ABOVE, the T1 when its voxels are coarser than
    MAX_T1_SPACING_MM or `t1_score` < T1_ABOVE.
    """
    pet_score = head_centre_brightness(pet)
    if pet_score > T1_LIKE_ABOVE:
        swapped = ""
        if t1 is not None and t1_score(t1) < T1_ABOVE:
            swapped = f", and {t1_name} looks like a PET: were the PET and T1 swapped?"
        raise BadInputError(f"{pet_name}: looks like a T1 MRI, not a PET (centre-of-head brightness "
                            f"{pet_score:.2f} > {T1_LIKE_ABOVE}; FDG PET is dim there){swapped}")
    if t1 is not None:
        coarsest = max(t1.GetSpacing())
        if coarsest > MAX_T1_SPACING_MM:
            raise BadInputError(f"{t1_name}: voxels of {coarsest:.2f} mm are coarser than any T1 (<= "
                                f"{MAX_T1_SPACING_MM} mm); is it a PET? Give the T1 at its acquired resolution")
        score = t1_score(t1)
        if not score >= T1_ABOVE:
            raise BadInputError(f"{t1_name}: looks like a PET or a T2/FLAIR MRI, not a T1 (T1-likeness {score:.2f} "
                                f"< {T1_ABOVE}; in a T1 the deep white matter is the brightest brain tissue)")


def check_overlap(pet: sitk.Image, t1: sitk.Image, t1_to_pet: sitk.Transform, min_fraction: float = 0.5,
                  t1_name: str = "T1") -> float:
    """Fraction of the PET head covered by the T1 once mapped by `t1_to_pet`; BadInputError below `min_fraction`.

    Works on the physical extent of the T1 (its bounding box, resampled by nearest neighbour onto a coarse copy
    of the PET grid), so it is cheap and independent of intensities.
    """
    coarse = sitk.Shrink(pet, [max(1, n // 48) for n in pet.GetSize()])
    pet_array = sitk.GetArrayFromImage(coarse)
    head = head_mask(pet_array)
    ones = sitk.Image(t1.GetSize(), sitk.sitkUInt8) + 1
    ones.CopyInformation(t1)
    covered = sitk.GetArrayFromImage(sitk.Resample(ones, coarse, t1_to_pet, sitk.sitkNearestNeighbor, 0)) > 0
    fraction = float((covered & head).sum() / max(int(head.sum()), 1))
    if fraction < min_fraction:
        raise BadInputError(f"{t1_name}: covers only {100 * fraction:.0f} % of the PET head after alignment; the "
                            "T1 and PET do not overlap (different subjects, or wrong header origin?)")
    return fraction


def check_output_paths(outputs: Iterable[Optional[str | os.PathLike]],
                       inputs: Sequence[str | os.PathLike] = ()) -> None:
    """Raise BadInputError unless every output's folder exists and is writable and no output is an input.

    Writability is tested by creating and removing a temporary file (os.access says yes to root even on
    read-only mounts).
    """
    input_paths = {Path(p).resolve() for p in inputs}
    for output in outputs:
        if output is None:
            continue
        path = Path(output).resolve()
        if path in input_paths:
            raise BadInputError(f"output {output}: is also an input; inputs are never overwritten")
        if path.is_dir():
            raise BadInputError(f"output {output}: is a folder; give a file name")
        folder = path.parent
        if not folder.is_dir():
            raise BadInputError(f"output {output}: folder {folder} does not exist (or is not a folder)")
        probe = folder / f".m2diff-write-test-{os.getpid()}"
        try:
            probe.touch(exist_ok=False)
            probe.unlink()
        except OSError as error:
            raise BadInputError(f"output {output}: folder {folder} is not writable ({error.strerror})") from error
