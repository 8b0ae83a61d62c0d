"""ROI readouts equal numpy ground truth on a phantom with anisotropic voxels."""

import csv
import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging.roi import CSV_COLUMNS, ball_kernel, local_mean, roi_table, write_roi_csv, write_roi_json

SPACING = (1.5, 2.0, 3.0)  # x, y, z in mm
NAMES = {1: "Frontal", 2: "Cerebellum L", 3: "Cerebellum R", 4: "Empty"}


def _image(array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-10.0, 5.0, 2.0))
    return image


@pytest.fixture(scope="module")
def phantom():
    """(input array, enhanced array, labels array), all [z, y, x] = 10 x 14 x 16."""
    rng = np.random.default_rng(3)
    labels = np.zeros((10, 14, 16), np.int16)
    labels[2:6, 3:9, 2:10] = 1
    labels[6:9, 8:12, 3:7] = 2
    labels[6:9, 8:12, 9:13] = 3
    ld = rng.gamma(4.0, 1.0, labels.shape).astype(np.float32)
    enhanced = (0.9 * ld + 0.3).astype(np.float32)
    return ld, enhanced, labels


def _brute_force_peak(array, mask):
    """max over ROI voxels of the mean over voxels within 6.2035 mm (physical), cut at the border."""
    radius = (3000.0 / (4.0 * math.pi)) ** (1.0 / 3.0)
    zyx_spacing = np.array(SPACING[::-1])
    grid = np.indices(array.shape).reshape(3, -1).T
    best = -np.inf
    for centre in np.argwhere(mask):
        near = (((grid - centre) * zyx_spacing) ** 2).sum(axis=1) <= radius ** 2
        best = max(best, float(array.reshape(-1)[near].mean()))
    return best


def test_statistics_equal_numpy_ground_truth_with_anisotropic_spacing(phantom):
    ld, enhanced, labels = phantom
    table = roi_table({"input": _image(ld), "enhanced": _image(enhanced)}, _image(labels), NAMES)
    reference = np.isin(labels, [2, 3])
    for row in table["rows"][:3]:
        mask = labels == row["label"]
        assert row["voxels"] == int(mask.sum())
        assert row["volume_ml"] == pytest.approx(mask.sum() * 1.5 * 2.0 * 3.0 / 1000.0, rel=1e-12)
        for name, array in (("input", ld), ("enhanced", enhanced)):
            values = array[mask].astype(np.float64)
            stats = row[name]
            assert stats["mean"] == pytest.approx(values.mean(), rel=1e-9)
            assert stats["std"] == pytest.approx(values.std(), rel=1e-9)
            assert stats["max"] == pytest.approx(values.max(), rel=1e-12)
            assert stats["peak"] == pytest.approx(_brute_force_peak(array.astype(np.float64), mask), rel=1e-9)
            assert stats["suvr"] == pytest.approx(values.mean() / array[reference].astype(np.float64).mean(),
                                                  rel=1e-9)
        expected_change = 100.0 * (row["enhanced"]["mean"] - row["input"]["mean"]) / row["input"]["mean"]
        assert row["change_pct"]["mean"] == pytest.approx(expected_change, rel=1e-12)
    assert table["reference_labels"] == [2, 3]


def test_empty_roi_gives_nan_not_an_error(phantom):
    ld, _, labels = phantom
    table = roi_table({"input": _image(ld)}, _image(labels), NAMES)
    empty = table["rows"][3]
    assert empty["name"] == "Empty" and empty["voxels"] == 0 and empty["volume_ml"] == 0.0
    assert all(math.isnan(empty["input"][s]) for s in ("mean", "std", "max", "peak", "suvr"))


def test_uniform_regions_give_exact_suvr_and_peak():
    labels = np.zeros((12, 12, 12), np.int16)
    labels[:6] = 1
    labels[6:] = 2
    activity = np.where(labels == 1, 3.0, 1.5).astype(np.float32)
    table = roi_table({"input": _image(activity)}, _image(labels), {1: "Cortex", 2: "Cerebellum"})
    cortex = table["rows"][0]["input"]
    assert (cortex["mean"], cortex["std"], cortex["max"], cortex["suvr"]) == (3.0, 0.0, 3.0, 2.0)
    assert cortex["peak"] == pytest.approx(3.0, rel=1e-12)


def test_a_reference_region_without_uptake_gives_nan_suvr_not_an_error():
    labels = np.zeros((8, 8, 8), np.int16)
    labels[:4] = 1
    labels[4:] = 2
    activity = np.where(labels == 1, 2.0, 0.0).astype(np.float32)
    table = roi_table({"input": _image(activity)}, _image(labels), {1: "Cortex", 2: "Cerebellum"})
    cortex = table["rows"][0]["input"]
    assert cortex["mean"] == 2.0
    assert math.isnan(cortex["suvr"])


def test_labelmap_on_another_grid_is_resampled_by_nearest_neighbour(phantom):
    ld, _, labels = phantom
    fine = sitk.Resample(_image(labels), [32, 28, 20], sitk.Transform(), sitk.sitkNearestNeighbor,
                         (-10.0 - 0.375, 5.0 - 0.5, 2.0 - 0.75), (0.75, 1.0, 1.5), (1, 0, 0, 0, 1, 0, 0, 0, 1), 0)
    direct = roi_table({"input": _image(ld)}, _image(labels), NAMES)
    resampled = roi_table({"input": _image(ld)}, fine, NAMES)
    assert [r["voxels"] for r in resampled["rows"]] == [r["voxels"] for r in direct["rows"]]
    assert resampled["rows"][0]["input"]["mean"] == direct["rows"][0]["input"]["mean"]


@pytest.mark.parametrize("shape, kernel_shape", [((9, 12, 7), (3, 5, 3)), ((8, 10, 11), (4, 3, 2))])
def test_local_mean_matches_scipy_signal_fftconvolve_with_the_flipped_kernel(shape, kernel_shape):
    from scipy import signal  # the reference only; the engine avoids importing scipy.signal
    rng = np.random.default_rng(0)
    array, kernel = rng.random(shape), rng.random(kernel_shape)  # asymmetric kernel: catches a missing flip
    flipped = kernel[::-1, ::-1, ::-1]
    expected = (signal.fftconvolve(array, flipped, mode="same")
                / signal.fftconvolve(np.ones_like(array), flipped, mode="same"))
    np.testing.assert_allclose(local_mean(array, kernel), expected, rtol=1e-9)


def test_ball_kernel_of_1_ml_at_1_mm_holds_about_1000_voxels():
    assert abs(int(ball_kernel((1.0, 1.0, 1.0)).sum()) - 1000) < 30
    assert ball_kernel((1.5, 2.0, 3.0)).shape == (5, 7, 9)


def test_unknown_reference_region_is_a_bad_input(phantom):
    ld, _, labels = phantom
    with pytest.raises(BadInputError, match="'pons' matches no ROI"):
        roi_table({"input": _image(ld)}, _image(labels), NAMES, reference_region="pons")


def test_csv_and_json_writers_keep_every_number_and_write_nan_as_empty(phantom, tmp_path):
    ld, enhanced, labels = phantom
    table = roi_table({"input": _image(ld), "enhanced": _image(enhanced)}, _image(labels), NAMES)
    write_roi_json(table, tmp_path / "roi.json")
    write_roi_csv(table, tmp_path / "roi.csv")
    loaded = json.loads((tmp_path / "roi.json").read_text())
    assert loaded["images"] == ["input", "enhanced"]
    assert loaded["rows"][0]["enhanced"]["peak"] == table["rows"][0]["enhanced"]["peak"]
    assert loaded["rows"][3]["input"]["mean"] is None
    with open(tmp_path / "roi.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 4 * 2
    assert float(rows[1]["mean"]) == table["rows"][0]["enhanced"]["mean"]
    assert rows[0]["change_pct_mean"] == "" and rows[6]["mean"] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roi.csv", "roi.json"]


def test_roi_command_writes_csv_and_json_from_a_labelmap(phantom, tmp_path):
    from M2DiffSlicer.cli import main

    ld, enhanced, labels = phantom
    paths = {}
    for name, array in (("ld", ld), ("enh", enhanced), ("labels", labels)):
        paths[name] = str(tmp_path / f"{name}.nii.gz")
        sitk.WriteImage(_image(array), paths[name])
    (tmp_path / "names.json").write_text(json.dumps({"labels": {str(k): v for k, v in NAMES.items()}}))
    code = main(["roi", "--images", paths["ld"], paths["enh"], "--labels", paths["labels"],
                 "--label-names", str(tmp_path / "names.json"), "--csv", str(tmp_path / "out.csv"),
                 "--json", str(tmp_path / "out.json")])
    assert code == 0
    table = json.loads((tmp_path / "out.json").read_text())
    assert table["images"] == ["input", "enhanced"] and table["reference_region"] == "cerebellum"
    frontal = labels == 1
    assert table["rows"][0]["input"]["mean"] == pytest.approx(ld[frontal].astype(np.float64).mean(), rel=1e-9)
    assert (tmp_path / "out.csv").read_text().startswith(",".join(CSV_COLUMNS))


def test_roi_command_rejects_mismatched_names_with_the_bad_input_exit_code(phantom, tmp_path):
    from M2DiffSlicer.cli import main

    ld, _, labels = phantom
    sitk.WriteImage(_image(ld), str(tmp_path / "ld.nii.gz"))
    code = main(["roi", "--images", str(tmp_path / "ld.nii.gz"), "--names", "a", "b",
                 "--labels", str(tmp_path / "ld.nii.gz"), "--json", str(tmp_path / "out.json")])
    assert code == 2 and not (tmp_path / "out.json").exists()
