"""A warm neck and shoulder block below the template head, for whole-head PET (and T1) fields of view.

The MNI template stops at the skull base (z = -78 mm), so a clinical PET FOV that reaches the neck and shoulders
would see nothing there. The block is analytic, in the template frame (LPS mm: x left, y posterior, z superior):
an elliptic-cylinder neck from the template's bottom down to the shoulders, then a wide elliptic-cylinder trunk.
It carries FDG-like muscle / blood-pool uptake and soft-tissue attenuation. It is a stand-in, not anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BodyConfig:
    """Shape (mm, template frame) and uptake (relative to white matter = 1) of the neck/shoulder block."""

    uptake: float = 0.4                               # FDG muscle / blood pool ~ 0.3-0.6 x brain white matter
    neck_radii_mm: tuple[float, float] = (55.0, 60.0)  # x, y semi-axes of the neck
    neck_centre_y_mm: float = 20.0                   # the neck lies behind the face (LPS +y = posterior)
    neck_length_mm: float = 80.0                     # template bottom to the top of the shoulders
    shoulder_radii_mm: tuple[float, float] = (200.0, 100.0)
    edge_mm: float = 2.0                             # width of the linear partial-volume edge

    def __post_init__(self):
        if not 0.0 <= self.uptake <= 2.0:
            raise ValueError(f"uptake={self.uptake} must be in [0, 2] (x white matter)")
        if min(*self.neck_radii_mm, *self.shoulder_radii_mm, self.neck_length_mm, self.edge_mm) <= 0:
            raise ValueError("BodyConfig radii, neck_length_mm and edge_mm must be > 0")


def body_fraction(points: np.ndarray, top_z_mm: float, config: BodyConfig) -> np.ndarray:
    """Tissue fraction 0..1 of the block at template points [3, ...] (x, y, z mm); 0 above `top_z_mm`.

    top_z_mm: where the neck starts (the template grid's bottom, so the block never overlaps the template head).
    """
    x, y, z = points[0], points[1] - config.neck_centre_y_mm, points[2]
    neck = _ellipse_inside(x, y, config.neck_radii_mm, config.edge_mm) * _below(z, top_z_mm, config.edge_mm)
    shoulders_top = top_z_mm - config.neck_length_mm
    trunk = _ellipse_inside(x, y, config.shoulder_radii_mm, config.edge_mm) * _below(z, shoulders_top,
                                                                                   config.edge_mm)
    return np.maximum(neck, trunk).astype(np.float32)


def _ellipse_inside(x: np.ndarray, y: np.ndarray, radii: tuple[float, float], edge_mm: float) -> np.ndarray:
    """1 inside the ellipse, 0 outside, a linear ramp `edge_mm` wide across its border (approximate distance)."""
    radius = np.sqrt((x / radii[0]) ** 2 + (y / radii[1]) ** 2)
    distance_mm = (1.0 - radius) * min(radii)
    return np.clip(0.5 + distance_mm / edge_mm, 0.0, 1.0)


def _below(z: np.ndarray, top_mm: float, edge_mm: float) -> np.ndarray:
    return np.clip(0.5 + (top_mm - z) / edge_mm, 0.0, 1.0)
