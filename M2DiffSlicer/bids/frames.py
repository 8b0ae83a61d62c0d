"""A static image from a PET-BIDS run: a 3D file as it is, a 4D one averaged over a chosen frame window.

The window mean weights each frame by its duration, sum(C_i d_i) / sum(d_i): the activity concentration a static
scan over the window would have measured (frames stay decay-corrected to the sidecar's ImageDecayCorrectionTime).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..errors import BadInputError

_TOLERANCE_S = 1e-6


@dataclasses.dataclass(frozen=True)
class StaticImage:
    """The 3D image to enhance and the frame timing it stands for (FrameTimesStart/FrameDuration, seconds)."""

    image: sitk.Image
    frame_times_start: list[float]
    frame_duration: list[float]
    frames_used: int


def static_image(path: Path, sidecar: dict[str, Any], window: tuple[float, float] | None) -> StaticImage:
    """The static image of `path`; a dynamic series needs `window` = (start, end) in seconds from TimeZero.

    :raises BadInputError: as chosen_frames.
    """
    image = sitk.ReadImage(str(path))
    starts, durations = _timing(sidecar)
    chosen = chosen_frames(path, sidecar, window)
    if chosen is None:
        return StaticImage(_as_3d(image), starts, durations, 1)
    return StaticImage(_window_mean(image, chosen, durations), [starts[chosen[0]]],
                       [starts[chosen[-1]] + durations[chosen[-1]] - starts[chosen[0]]], len(chosen))


def chosen_frames(path: Path, sidecar: dict[str, Any], window: tuple[float, float] | None) -> list[int] | None:
    """The frames of a dynamic `path` that `window` averages (None for a static image), from its header only.

    :raises BadInputError: a dynamic series without a window, a window that holds no whole frame, or frame
        timing that does not match the image.
    """
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    size = reader.GetSize()
    if len(size) == 3 or size[3] == 1:
        return None
    frames = size[3]
    starts, durations = _timing(sidecar)
    if len(starts) != frames or len(durations) != frames:
        raise BadInputError(f"{path} has {frames} frames but its sidecar times {len(starts)} starts and "
                            f"{len(durations)} durations")
    if window is None:
        raise BadInputError(
            f"{path.name} is a dynamic series ({frames} frames, {starts[0]:g}-{starts[-1] + durations[-1]:g} s); "
            "M2Diff enhances static images: choose the frames to average with --frame-window START END "
            "(seconds from TimeZero)")
    chosen = [i for i in range(frames) if starts[i] >= window[0] - _TOLERANCE_S
              and starts[i] + durations[i] <= window[1] + _TOLERANCE_S]
    if not chosen:
        raise BadInputError(f"--frame-window {window[0]:g} {window[1]:g} holds no whole frame of {path.name}")
    return chosen


def _timing(sidecar: dict[str, Any]) -> tuple[list[float], list[float]]:
    return ([float(t) for t in _as_list(sidecar.get("FrameTimesStart"))],
            [float(d) for d in _as_list(sidecar.get("FrameDuration"))])


def _window_mean(image: sitk.Image, chosen: list[int], durations: list[float]) -> sitk.Image:
    array = sitk.GetArrayFromImage(image).astype(np.float64)  # [t, z, y, x]
    weights = np.array([durations[i] for i in chosen])
    mean = np.tensordot(weights, array[chosen], axes=1) / weights.sum()
    return _with_3d_geometry(sitk.GetImageFromArray(mean.astype(np.float32)), image)


def _as_3d(image: sitk.Image) -> sitk.Image:
    if image.GetDimension() == 3:
        return image
    return sitk.Extract(image, [*image.GetSize()[:3], 0], [0, 0, 0, 0])


def _with_3d_geometry(volume: sitk.Image, image: sitk.Image) -> sitk.Image:
    reference = _as_3d(image)
    volume.CopyInformation(reference)
    return volume


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
