"""2D parallel-beam Joseph projector stored as a scipy.sparse matrix, applied plane by plane (direct planes only).

The system matrix maps an image plane [ny, nx] (row-major, pixel `pixel_mm`) to a sinogram [views, bins] of line
integrals in activity x mm. Views are equally spaced on [0, pi); bins are centred on the rotation axis.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import sparse


@dataclass(frozen=True)
class Geometry:
    """Image plane `ny` x `nx` pixels of `pixel_mm`, sinogram `views` x `bins` of `bin_mm`."""

    nx: int
    ny: int
    pixel_mm: float
    views: int
    bins: int
    bin_mm: float


class Projector:
    """Forward (`forward`) and back (`back`) projection of volumes [Z, ny, nx] <-> sinograms [Z, views, bins].

    `subsets` interleaved view subsets serve OSEM; `forward(x, subset=k)` returns only that subset's views.
    """

    def __init__(self, geometry: Geometry, subsets: int = 1):
        if subsets < 1 or geometry.views % subsets:
            raise ValueError(f"subsets={subsets} must be >= 1 and divide views={geometry.views}")
        self.geometry = geometry
        self.subsets = subsets
        self.matrix = system_matrix(geometry)
        self.views_of = [np.arange(k, geometry.views, subsets) for k in range(subsets)]
        rows = [(views[:, None] * geometry.bins + np.arange(geometry.bins)).ravel() for views in self.views_of]
        self._forward = [self.matrix[r].tocsr() for r in rows]
        self._back = [m.T.tocsr() for m in self._forward]
        self._full_back = self.matrix.T.tocsr()

    def forward(self, volume: np.ndarray, subset: int | None = None) -> np.ndarray:
        """Line integrals of `volume` [Z, ny, nx]: sinogram [Z, views (of the subset), bins]."""
        g = self.geometry
        planes = volume.reshape(volume.shape[0], -1).T
        matrix = self.matrix if subset is None else self._forward[subset]
        views = g.views if subset is None else len(self.views_of[subset])
        return np.ascontiguousarray((matrix @ planes).T).reshape(volume.shape[0], views, g.bins)

    def back(self, sinogram: np.ndarray, subset: int | None = None) -> np.ndarray:
        """Adjoint of `forward`: sinogram [Z, views (of the subset), bins] -> volume [Z, ny, nx]."""
        g = self.geometry
        rows = sinogram.reshape(sinogram.shape[0], -1).T
        matrix = self._full_back if subset is None else self._back[subset]
        return np.ascontiguousarray((matrix @ rows).T).reshape(sinogram.shape[0], g.ny, g.nx)


def system_matrix(geometry: Geometry) -> sparse.csr_matrix:
    """Joseph's method: step along the axis closer to each ray, linear interpolation across the other axis.

    Shape [views * bins, ny * nx], float32, weights in mm (step length / |direction component|).
    """
    return _cached_matrix(geometry)


@functools.lru_cache(maxsize=4)
def _cached_matrix(g: Geometry) -> sparse.csr_matrix:
    rows, cols, vals = [], [], []
    s = (np.arange(g.bins) - (g.bins - 1) / 2.0) * g.bin_mm
    xs = (np.arange(g.nx) - (g.nx - 1) / 2.0) * g.pixel_mm
    ys = (np.arange(g.ny) - (g.ny - 1) / 2.0) * g.pixel_mm
    for view in range(g.views):
        theta = np.pi * view / g.views
        c, sn = np.cos(theta), np.sin(theta)
        # The ray of bin s is {p : p . (c, sn) = s}, direction (-sn, c).
        if abs(sn) >= abs(c):
            # Mostly along x: one sample per column; y = (s - x c) / sn.
            y = (s[:, None] - xs[None, :] * c) / sn
            frac_index = y / g.pixel_mm + (g.ny - 1) / 2.0
            step = g.pixel_mm / abs(sn)
            other_n, fixed, along_x = g.ny, np.broadcast_to(np.arange(g.nx), frac_index.shape), True
        else:
            x = (s[:, None] - ys[None, :] * sn) / c
            frac_index = x / g.pixel_mm + (g.nx - 1) / 2.0
            step = g.pixel_mm / abs(c)
            other_n, fixed, along_x = g.nx, np.broadcast_to(np.arange(g.ny), frac_index.shape), False
        low = np.floor(frac_index).astype(np.int64)
        weight_high = frac_index - low
        ray = np.broadcast_to((view * g.bins + np.arange(g.bins))[:, None], frac_index.shape)
        for index, weight in ((low, 1.0 - weight_high), (low + 1, weight_high)):
            keep = (index >= 0) & (index < other_n) & (weight > 0)
            rows.append(ray[keep])
            row, col = (index[keep], fixed[keep]) if along_x else (fixed[keep], index[keep])
            cols.append(row * g.nx + col)
            vals.append((weight[keep] * step).astype(np.float32))
    matrix = sparse.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(g.views * g.bins, g.ny * g.nx))
    return matrix.tocsr()
