"""Metrics against hand-computed values and known SSIM properties; evaluate CLI JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from M2DiffSlicer.imaging import metrics
from M2DiffSlicer.cli import main


def _volume(shape=(6, 20, 20), seed=0):
    return np.random.default_rng(seed).random(shape) + 1.0


def test_psnr_of_a_uniform_offset_of_a_tenth_of_the_reference_max_is_20_db():
    ref = np.full((4, 8, 8), 2.0)
    mask = np.ones(ref.shape, bool)
    assert metrics.psnr(ref + 0.2, ref, mask) == pytest.approx(20.0)


def test_psnr_ignores_voxels_outside_the_mask():
    ref = np.full((4, 8, 8), 2.0)
    pred = ref + 0.2
    pred[0] = 100.0
    mask = np.ones(ref.shape, bool)
    mask[0] = False
    assert metrics.psnr(pred, ref, mask) == pytest.approx(20.0)


def test_nmse_is_the_squared_error_over_the_reference_energy():
    ref = np.array([[[1.0, 2.0, 3.0]]])
    pred = np.array([[[1.0, 2.5, 2.0]]])
    assert metrics.nmse(pred, ref, np.ones(ref.shape, bool)) == pytest.approx((0.25 + 1.0) / 14.0)


def test_ssim_of_an_image_with_itself_is_one():
    ref = _volume()
    assert metrics.ssim(ref, ref, np.ones(ref.shape, bool)) == pytest.approx(1.0)


def test_ssim_of_two_constant_images_is_the_luminance_term():
    a, b = np.full((5, 16, 16), 0.5), np.full((5, 16, 16), 1.0)
    c1 = (metrics.K1 * 1.0) ** 2
    expected = (2 * 0.5 * 1.0 + c1) / (0.5 ** 2 + 1.0 ** 2 + c1)
    np.testing.assert_allclose(metrics.ssim_map(a, b, dims=3), expected)


def test_ssim_map_at_a_voxel_matches_explicit_gaussian_window_statistics():
    x, y = _volume((1, 21, 21), 1), _volume((1, 21, 21), 2)
    taps = np.arange(-5, 6)
    kernel_1d = np.exp(-taps ** 2 / (2 * metrics.SSIM_SIGMA ** 2))
    kernel = np.outer(kernel_1d, kernel_1d) / np.outer(kernel_1d, kernel_1d).sum()
    px, py = x[0, 5:16, 5:16], y[0, 5:16, 5:16]
    mx, my = (kernel * px).sum(), (kernel * py).sum()
    vx, vy = (kernel * (px - mx) ** 2).sum(), (kernel * (py - my) ** 2).sum()
    cxy = (kernel * (px - mx) * (py - my)).sum()
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx ** 2 + my ** 2 + c1) * (vx + vy + c2))
    assert metrics.ssim_map(x, y, dims=2)[0, 10, 10] == pytest.approx(expected, rel=1e-9)


def test_ssim_drops_with_added_noise():
    ref = ndimage.gaussian_filter(_volume((8, 32, 32)), 2)
    mask = np.ones(ref.shape, bool)
    rng = np.random.default_rng(3)
    low = metrics.ssim(ref + 0.01 * rng.standard_normal(ref.shape), ref, mask)
    high = metrics.ssim(ref + 0.1 * rng.standard_normal(ref.shape), ref, mask)
    assert 1.0 > low > high


def test_slice_metrics_average_only_slices_with_enough_mask_voxels():
    ref = np.full((3, 10, 10), 2.0)
    pred = ref.copy()
    pred[0] += 0.2      # 20 dB slice
    pred[1] += 0.02     # 40 dB slice
    mask = np.ones(ref.shape, bool)
    mask[2, :, 1:] = False  # a sliver of 10 voxels: skipped
    result = metrics.slice_metrics(pred, ref, mask, min_voxels=50)
    assert result["slices"] == 2
    assert result["psnr"] == pytest.approx(30.0)


def test_regional_bias_reports_percent_difference_of_means():
    labels = np.array([[[1, 1, 2, 2, 0]]])
    ref = np.array([[[1.0, 3.0, 4.0, 4.0, 9.0]]])
    pred = np.array([[[2.0, 2.2, 5.0, 5.0, 0.0]]])
    rows = metrics.regional_bias(pred, ref, labels, {1: "a", 2: "b"})
    assert rows["a"]["bias_pct"] == pytest.approx(5.0)
    assert rows["b"]["bias_pct"] == pytest.approx(25.0)
    assert set(rows) == {"a", "b"}


def test_paired_ttest_matches_the_textbook_formula():
    a, b = np.array([1.0, 2.0, 3.0, 5.0]), np.array([0.5, 2.0, 2.0, 3.5])
    d = a - b
    t = d.mean() / (d.std(ddof=1) / np.sqrt(len(d)))
    result = metrics.paired_ttest(a, b)
    assert result["t"] == pytest.approx(t)
    assert result["mean_diff"] == pytest.approx(0.75)
    assert 0 < result["p"] < 1


@pytest.mark.parametrize("call", [
    lambda: metrics.psnr(np.ones((2, 2, 2)), np.ones((2, 2, 3)), np.ones((2, 2, 2), bool)),
    lambda: metrics.psnr(np.ones((2, 2, 2)), np.ones((2, 2, 2)), np.zeros((2, 2, 2), bool)),
    lambda: metrics.paired_ttest([1.0], [2.0]),
    lambda: metrics.ssim_map(np.ones((2, 2, 2)), np.ones((2, 2, 2)), dims=4),
])
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_non_boolean_mask_raises_type_error():
    with pytest.raises(TypeError):
        metrics.psnr(np.ones((2, 2, 2)), np.ones((2, 2, 2)), np.ones((2, 2, 2)))


def test_evaluate_command_prints_json_with_2d_and_3d_metrics(tmp_path, capsys):
    ref = np.full((4, 12, 12), 2.0, np.float32)
    for name, array in (("ref", ref), ("pred", ref + 0.2), ("mask", np.ones(ref.shape, np.uint8))):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / f"{name}.nii.gz"))
    code = main(["evaluate", "--pred", str(tmp_path / "pred.nii.gz"), "--ref", str(tmp_path / "ref.nii.gz"),
                 "--mask", str(tmp_path / "mask.nii.gz")])
    result = json.loads(capsys.readouterr().out)
    assert code == 0
    assert result["psnr_3d"] == pytest.approx(20.0, abs=1e-4)
    assert result["slices_2d"]["psnr"] == pytest.approx(20.0, abs=1e-4)
