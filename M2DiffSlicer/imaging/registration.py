"""Rigid T1 -> PET registration (SimpleITK, Mattes mutual information, multi-resolution).

Convention (the same as the simulator's saved `t1_to_pet.tfm`): the returned transform maps PET physical points to
T1 physical points, so `sitk.Resample(t1, pet, result.transform)` puts the T1 on the PET grid.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError
from .head_mask import head_mask, head_mask_image
from .smoothing import antialias

# progress(iteration, metric_value, level): iteration counts across all levels, level is 0 (coarsest) .. 2.
ProgressCallback = Callable[[int, float, int], None]


@dataclasses.dataclass(frozen=True)
class RegistrationConfig:
    """Settings of `register_rigid`; the defaults take a few seconds for a 2 mm PET and a ~1 mm T1."""

    shrink_factors: tuple[int, ...] = (4, 2, 1)
    smoothing_sigmas_mm: tuple[float, ...] = (4.0, 2.0, 1.0)
    histogram_bins: int = 32
    sampling_fraction: float = 0.25
    iterations_per_level: int = 100
    learning_rate: float = 1.0
    min_step: float = 1e-3
    # The moving T1 is resampled to this spacing before the metric: PET resolution is ~5 mm, finer T1 detail only
    # slows the metric down without moving the optimum.
    moving_spacing_mm: float = 2.0
    coarsest_spacing_mm: float = 8.0
    seed: int = 1

    def __post_init__(self) -> None:
        if len(self.shrink_factors) != len(self.smoothing_sigmas_mm):
            raise ValueError(f"shrink_factors {self.shrink_factors} and smoothing_sigmas_mm "
                             f"{self.smoothing_sigmas_mm} must have the same length")
        if not 0.0 < self.sampling_fraction <= 1.0:
            raise ValueError(f"sampling_fraction must be in (0, 1], got {self.sampling_fraction}")


@dataclasses.dataclass
class RegistrationResult:
    """Outcome of `register_rigid`.

    transform: T1 -> PET in ITK resampling convention (PET points -> T1 points).
    metric: final Mattes mutual information (negative; lower is better); NaN when optimisation was skipped.
    iterations: optimiser iterations summed over the resolution levels (0 when skipped).
    nmi_before / nmi_after: normalised mutual information (H(A) + H(B)) / H(A, B) over the PET head, in [1, 2]
        (1 = independent images); the quality figure users see. `nmi_before` uses the initial transform.
    stop_condition: the optimiser's own description of why it stopped ("skipped" when not optimised).
    """

    transform: sitk.Transform
    metric: float
    iterations: int
    nmi_before: float
    nmi_after: float
    stop_condition: str

    def as_dict(self) -> dict:
        """JSON-friendly summary (the transform itself is written separately with sitk.WriteTransform)."""
        return {"metric": self.metric, "iterations": self.iterations, "nmi_before": self.nmi_before,
                "nmi_after": self.nmi_after, "stop_condition": self.stop_condition,
                "parameters": list(self.transform.GetParameters())}


def register_rigid(pet: sitk.Image, t1: sitk.Image, initial_transform: Optional[sitk.Transform] = None,
                   optimize: bool = True, progress: Optional[ProgressCallback] = None,
                   config: RegistrationConfig = RegistrationConfig()) -> RegistrationResult:
    """Rigidly register the T1 to the PET (Euler3D, 6 parameters).

    pet: fixed 3D image in any units. t1: moving 3D image. initial_transform: a user-supplied T1 -> PET transform
    (ITK resampling convention); without it the images' centres of mass are aligned (moments initialisation).
    optimize: False keeps `initial_transform` as is (the user's transform is trusted; it must then be given).
    progress: called once per optimiser iteration. Raises BadInputError when the T1 does not overlap the PET.
    """
    if not optimize and initial_transform is None:
        raise ValueError("optimize=False needs an initial_transform to keep")
    fixed = sitk.Cast(pet, sitk.sitkFloat32)
    moving = _downsampled(sitk.Cast(t1, sitk.sitkFloat32), config.moving_spacing_mm)
    if initial_transform is None:
        start = sitk.CenteredTransformInitializer(fixed, moving, sitk.Euler3DTransform(),
                                                  sitk.CenteredTransformInitializerFilter.MOMENTS)
    else:
        start = _as_euler(initial_transform) if optimize else initial_transform
    nmi_before = normalized_mutual_information(fixed, moving, start, config.histogram_bins)
    if not optimize:
        return RegistrationResult(transform=start, metric=float("nan"), iterations=0, nmi_before=nmi_before,
                                  nmi_after=nmi_before, stop_condition="skipped")
    found, metric, iterations, stop = _optimise(fixed, moving, sitk.Euler3DTransform(start), config, progress)
    transform = _flattened(found)
    return RegistrationResult(transform=transform, metric=metric, iterations=iterations, nmi_before=nmi_before,
                              nmi_after=normalized_mutual_information(fixed, moving, transform,
                                                                      config.histogram_bins),
                              stop_condition=stop)


def register_affine(fixed: sitk.Image, moving: sitk.Image, progress: Optional[ProgressCallback] = None,
                    config: RegistrationConfig = RegistrationConfig(shrink_factors=(4, 2),
                                                                    smoothing_sigmas_mm=(4.0, 2.0))
                    ) -> RegistrationResult:
    """Rigid, then 12-parameter affine registration of `moving` onto `fixed` (e.g. the atlas template onto a subject).

    Same convention as `register_rigid`: `sitk.Resample(moving, fixed, result.transform)` puts `moving` on the
    fixed grid. The defaults stop at half resolution: lobar labels need millimetres, not sub-millimetres.
    """
    rigid = register_rigid(fixed, moving, progress=progress, config=config)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.transform.GetCenter())
    affine.SetMatrix(rigid.transform.GetMatrix())
    affine.SetTranslation(rigid.transform.GetTranslation())
    moving_small = _downsampled(sitk.Cast(moving, sitk.sitkFloat32), config.moving_spacing_mm)
    fixed_float = sitk.Cast(fixed, sitk.sitkFloat32)
    found, metric, iterations, stop = _optimise(fixed_float, moving_small, affine, config, progress,
                                                first_iteration=rigid.iterations)
    transform = _flattened(found)
    return RegistrationResult(transform=transform, metric=metric, iterations=rigid.iterations + iterations,
                              nmi_before=rigid.nmi_before,
                              nmi_after=normalized_mutual_information(fixed_float, moving_small, transform,
                                                                      config.histogram_bins),
                              stop_condition=stop)


def _optimise(fixed: sitk.Image, moving: sitk.Image, start: sitk.Transform, config: RegistrationConfig,
              progress: Optional[ProgressCallback], first_iteration: int = 0
              ) -> tuple[sitk.Transform, float, int, str]:
    """Run the multi-resolution optimiser from `start`; returns (transform, metric, iterations, stop condition)."""
    method = _registration_method(fixed, config)
    method.SetInitialTransform(start, inPlace=False)
    counter = {"iterations": 0}

    def on_iteration() -> None:
        counter["iterations"] += 1
        if progress is not None:
            progress(first_iteration + counter["iterations"], method.GetMetricValue(), method.GetCurrentLevel())

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    try:
        found = method.Execute(fixed, moving)
    except RuntimeError as error:
        if "outside" in str(error) or "Too many samples" in str(error):
            raise BadInputError("the T1 does not overlap the PET: registration found no common voxels "
                                "(check that both images show the same head)") from error
        raise
    return (found, float(method.GetMetricValue()), counter["iterations"],
            method.GetOptimizerStopConditionDescription())


def _registration_method(fixed: sitk.Image, config: RegistrationConfig) -> sitk.ImageRegistrationMethod:
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=config.histogram_bins)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(config.sampling_fraction, config.seed)
    # Sample only the head: the PET's empty background carries no information about alignment.
    method.SetMetricFixedMask(head_mask_image(fixed))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=config.learning_rate, minStep=config.min_step,
                                                    numberOfIterations=config.iterations_per_level,
                                                    relaxationFactor=0.5, gradientMagnitudeTolerance=1e-6)
    # Rotations (radians) and translations (mm) differ by ~100x in scale; the physical-shift estimator balances them.
    method.SetOptimizerScalesFromPhysicalShift()
    # Coarse levels coarser than ~8 mm voxels lose the head's shape (a 4 mm PET shrunk 4x is 10 voxels wide) and
    # trap the optimiser in local optima; cap the shrink factor accordingly.
    cap = max(1, int(config.coarsest_spacing_mm // max(fixed.GetSpacing())))
    method.SetShrinkFactorsPerLevel([min(factor, cap) for factor in config.shrink_factors])
    method.SetSmoothingSigmasPerLevel(list(config.smoothing_sigmas_mm))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOn()
    return method


def normalized_mutual_information(fixed: sitk.Image, moving: sitk.Image, transform: sitk.Transform,
                                  bins: int = 32) -> float:
    """(H(F) + H(M)) / H(F, M) over the fixed image's head, with `moving` resampled by `transform` (linear)."""
    moved = sitk.GetArrayFromImage(sitk.Resample(moving, fixed, transform, sitk.sitkLinear, float("nan"),
                                                     sitk.sitkFloat32))
    fixed_array = sitk.GetArrayViewFromImage(fixed)
    inside = head_mask(fixed_array) & np.isfinite(moved)
    if inside.sum() < 100:
        return 1.0
    joint, _, _ = np.histogram2d(fixed_array[inside], moved[inside], bins=bins)
    joint = joint / joint.sum()

    def entropy(p: np.ndarray) -> float:
        p = p[p > 0]
        return float(-(p * np.log(p)).sum())

    return (entropy(joint.sum(axis=1)) + entropy(joint.sum(axis=0))) / entropy(joint.ravel())


def _downsampled(image: sitk.Image, spacing_mm: float) -> sitk.Image:
    """`image` smoothed and resampled to `spacing_mm` when finer than that; same physical extent."""
    spacing = np.array(image.GetSpacing())
    if spacing.min() >= spacing_mm:
        return image
    target = np.maximum(spacing, spacing_mm)
    smoothed = antialias(image, [float(t) for t in target])
    size = [int(np.ceil(n * s / t)) for n, s, t in zip(image.GetSize(), spacing, target)]
    return sitk.Resample(smoothed, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(),
                         [float(t) for t in target], image.GetDirection(), 0.0, sitk.sitkFloat32)


def _as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    """A rigid user transform as an Euler3DTransform (the optimiser's parameterisation)."""
    flat = _flattened(transform)
    matrix = np.array(flat.GetMatrix()).reshape(3, 3)
    if not np.allclose(matrix @ matrix.T, np.eye(3), atol=1e-4):
        raise BadInputError("the supplied T1->PET transform is not rigid (its matrix is not a rotation); "
                            "pass optimize=False to use it unchanged")
    euler = sitk.Euler3DTransform()
    euler.SetCenter(flat.GetCenter())
    euler.SetMatrix(flat.GetMatrix())
    euler.SetTranslation(flat.GetTranslation())
    return euler


def _flattened(transform: sitk.Transform) -> sitk.Euler3DTransform | sitk.AffineTransform:
    """One matrix-offset transform equivalent to `transform` (composites of rigid/affine/translation merged)."""
    typed = transform.Downcast()
    if isinstance(typed, sitk.Euler3DTransform):
        return typed
    return _from_homogeneous(_homogeneous(typed))


def _homogeneous(transform: sitk.Transform) -> np.ndarray:
    """4x4 matrix of a (downcast) translation, matrix-offset or composite transform."""
    affine = np.eye(4)
    if isinstance(transform, sitk.CompositeTransform):
        # A composite applies its last-added transform first: T(x) = T0(T1(...Tn(x))).
        for index in range(transform.GetNumberOfTransforms()):
            affine = affine @ _homogeneous(transform.GetNthTransform(index).Downcast())
        return affine
    if isinstance(transform, sitk.TranslationTransform):
        affine[:3, 3] = transform.GetOffset()
        return affine
    if not hasattr(transform, "GetMatrix") or transform.GetDimension() != 3:
        raise BadInputError(f"unsupported T1->PET transform {transform.GetName()}: need a 3D rigid or affine "
                            "transform")
    matrix = np.array(transform.GetMatrix()).reshape(3, 3)
    centre = np.array(transform.GetCenter())
    affine[:3, :3] = matrix
    affine[:3, 3] = np.array(transform.GetTranslation()) + centre - matrix @ centre
    return affine


def _from_homogeneous(affine: np.ndarray) -> sitk.AffineTransform:
    transform = sitk.AffineTransform(3)
    transform.SetMatrix([float(v) for v in affine[:3, :3].ravel()])
    transform.SetTranslation([float(v) for v in affine[:3, 3]])
    return transform
