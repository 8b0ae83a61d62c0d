"""Slicing directions of a [z, y, x] volume (the 2D network sees slices of all three).

Imports nothing heavy: the torch-free option classes (enhance/job.py, the `m2diff` parser) use it.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


class Orientation(enum.Enum):
    """Slicing direction of a [z, y, x] volume."""

    AXIAL = "axial"  # arr[k]: [y, x]
    CORONAL = "coronal"  # arr[:, k]: [z, x]
    SAGITTAL = "sagittal"  # arr[:, :, k]: [z, y]

    @property
    def axis(self) -> int:
        return {Orientation.AXIAL: 0, Orientation.CORONAL: 1, Orientation.SAGITTAL: 2}[self]

    def take(self, volume: np.ndarray, index: int) -> np.ndarray:
        """Slice `index` of a [..., z, y, x] array along this orientation's axis."""
        return volume.take(index, axis=volume.ndim - 3 + self.axis)
