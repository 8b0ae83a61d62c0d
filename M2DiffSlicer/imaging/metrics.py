"""Image-quality metrics on a brain mask: PSNR, SSIM, NMSE (2D-slice means as the paper reports them, and 3D),
regional mean bias per ROI, and a paired t-test helper.

Data-range convention: prediction and reference are both divided by the reference's maximum inside the mask, so the
data range is 1 (PSNR = 10 log10(1 / MSE), SSIM constants C1 = (0.01)^2, C2 = (0.03)^2). SSIM uses Wang et al.'s
Gaussian window (sigma 1.5 voxels, 11 taps) with population (weighted) statistics, as skimage with
`gaussian_weights=True, use_sample_covariance=False`; the SSIM map is averaged over mask voxels.
Volumes are numpy [Z, Y, X]; 2D metrics use the slices along `axis` (0 = axial).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage, stats

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius 5 voxels at sigma 1.5: the 11-tap window of Wang et al. 2004
K1, K2 = 0.01, 0.03


def normalise(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both images divided by the reference maximum inside `mask` (the data-range convention above)."""
    _check(pred, ref, mask)
    scale = float(ref[mask].max())
    if scale <= 0:
        raise ValueError("ref has no positive value inside mask")
    return pred.astype(np.float64) / scale, ref.astype(np.float64) / scale


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """PSNR in dB over mask voxels (data range 1 after `normalise`)."""
    p, r = normalise(pred, ref, mask)
    mse = float(np.mean((p[mask] - r[mask]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def nmse(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """Normalised MSE: sum (pred - ref)^2 / sum ref^2 over mask voxels (scale-free)."""
    _check(pred, ref, mask)
    p, r = pred[mask].astype(np.float64), ref[mask].astype(np.float64)
    return float(np.sum((p - r) ** 2) / np.sum(r ** 2))


def ssim_map(pred: np.ndarray, ref: np.ndarray, dims: int = 3, data_range: float = 1.0) -> np.ndarray:
    """Per-voxel SSIM of two same-shape volumes [Z, Y, X]; dims=2 filters each axial slice independently."""
    if dims not in (2, 3):
        raise ValueError(f"dims={dims} must be 2 or 3")
    sigma = (0.0, SSIM_SIGMA, SSIM_SIGMA) if dims == 2 else SSIM_SIGMA

    def blur(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    x, y = pred.astype(np.float64), ref.astype(np.float64)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    c1, c2 = (K1 * data_range) ** 2, (K2 * data_range) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> float:
    """3D SSIM averaged over mask voxels (images scaled by the reference max in the mask)."""
    p, r = normalise(pred, ref, mask)
    return float(ssim_map(p, r, dims=3)[mask].mean())


def slice_metrics(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, axis: int = 0,
                  min_voxels: int = 100) -> dict[str, float]:
    """Mean over 2D slices along `axis` of PSNR, SSIM and NMSE, each slice restricted to its mask voxels.

    The whole volume is scaled once by the reference max in the mask; slices with fewer than `min_voxels` mask
    voxels are skipped (edge slices with a sliver of brain). Returns keys psnr, ssim, nmse, slices.
    """
    p, r = normalise(pred, ref, mask)
    p, r, m = (np.moveaxis(a, axis, 0) for a in (p, r, mask))
    ssim_2d = ssim_map(p, r, dims=2)
    rows = []
    for k in range(m.shape[0]):
        sel = m[k]
        if sel.sum() < min_voxels:
            continue
        mse = float(np.mean((p[k][sel] - r[k][sel]) ** 2))
        rows.append((10.0 * np.log10(1.0 / max(mse, 1e-20)), float(ssim_2d[k][sel].mean()),
                     float(np.sum((p[k][sel] - r[k][sel]) ** 2) / np.sum(r[k][sel] ** 2))))
    if not rows:
        raise ValueError(f"no slice along axis {axis} has >= {min_voxels} mask voxels")
    values = np.asarray(rows)
    return {"psnr": float(values[:, 0].mean()), "ssim": float(values[:, 1].mean()),
            "nmse": float(values[:, 2].mean()), "slices": len(rows)}


def regional_bias(pred: np.ndarray, ref: np.ndarray, labels: np.ndarray,
                  names: dict[int, str] | None = None) -> dict[str, dict[str, float]]:
    """Per label > 0: reference mean, prediction mean and bias % = 100 (pred - ref) / ref."""
    if pred.shape != ref.shape or labels.shape != ref.shape:
        raise ValueError(f"shapes differ: pred {pred.shape}, ref {ref.shape}, labels {labels.shape}")
    flat = labels.astype(np.int64).ravel()
    n = int(flat.max()) + 1
    counts = np.bincount(flat, minlength=n)
    pred_mean = np.bincount(flat, weights=pred.ravel().astype(np.float64), minlength=n) / np.maximum(counts, 1)
    ref_mean = np.bincount(flat, weights=ref.ravel().astype(np.float64), minlength=n) / np.maximum(counts, 1)
    out = {}
    for label in range(1, n):
        if counts[label]:
            name = (names or {}).get(label, str(label))
            out[name] = {"label": label, "voxels": int(counts[label]), "ref_mean": float(ref_mean[label]),
                         "pred_mean": float(pred_mean[label]),
                         "bias_pct": float(100.0 * (pred_mean[label] - ref_mean[label]) / ref_mean[label])}
    return out


def evaluate(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray, labels: np.ndarray | None = None,
             names: dict[int, str] | None = None) -> dict:
    """All metrics: keys psnr_3d, ssim_3d, nmse_3d, slices_2d {psnr, ssim, nmse, slices}, regional (if labels)."""
    result = {"psnr_3d": psnr(pred, ref, mask), "ssim_3d": ssim(pred, ref, mask), "nmse_3d": nmse(pred, ref, mask),
              "slices_2d": slice_metrics(pred, ref, mask), "mask_voxels": int(mask.sum())}
    if labels is not None:
        result["regional"] = regional_bias(pred, ref, labels, names)
    return result


def default_mask(ref: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """Brain mask when none is given: reference >= `fraction` x its 99.9th percentile (excludes air and most scalp)."""
    return ref >= fraction * float(np.percentile(ref, 99.9))


def paired_ttest(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> dict[str, float]:
    """Paired t-test of per-subject values `a` vs `b` (scipy.stats.ttest_rel): t, p, mean_diff (a - b), n."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(f"need two 1D samples of equal length >= 2, got shapes {a.shape} and {b.shape}")
    result = stats.ttest_rel(a, b)
    return {"t": float(result.statistic), "p": float(result.pvalue), "mean_diff": float(np.mean(a - b)), "n": len(a)}


def _check(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> None:
    if pred.shape != ref.shape or mask.shape != ref.shape:
        raise ValueError(f"shapes differ: pred {pred.shape}, ref {ref.shape}, mask {mask.shape}")
    if mask.dtype != bool:
        raise TypeError(f"mask must be a bool array, got {mask.dtype}")
    if not mask.any():
        raise ValueError("mask is empty")
