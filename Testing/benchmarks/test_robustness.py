"""The robustness benchmark's safeguard calibration: its PSNR is the metrics module's, and it picks the ramp
that keeps the input where the network harms it and the network where it helps."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import robustness  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
from M2DiffSlicer.imaging import metrics


def _case(noise_level: float, network_helps: bool, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    sd = np.zeros((12, 16, 16), np.float32)
    sd[2:10, 3:13, 3:13] = 1.0 + 0.2 * rng.random((8, 10, 10))
    ld = sd + rng.normal(0, 0.05, sd.shape).astype(np.float32)
    good, bad = sd, 0.7 * sd  # the reference itself, or over-smoothed into a bias
    return {"sd": sd, "ld": ld, "mask": sd > 0.5, "noise_level": noise_level,
            "m2diff": (good if network_helps else bad).astype(np.float32)}


def test_slice_psnr_is_the_metrics_modules():
    case = _case(0.01, True, 0)
    assert robustness._slice_psnr(case["ld"], case) == pytest.approx(
        metrics.slice_metrics(case["ld"], case["sd"], case["mask"])["psnr"], rel=1e-9)


def test_calibration_turns_the_network_off_below_the_noise_where_it_stops_helping():
    val = [_case(0.005, False, 1), _case(0.008, False, 2), _case(0.02, True, 3), _case(0.025, True, 4)]
    ramp = robustness.calibrate_ramp(val, ceiling=0.03)
    assert ramp.weight(0.005) == 0.0 and ramp.weight(0.008) == 0.0
    assert ramp.weight(0.02) == 1.0 and ramp.weight(0.025) == 1.0
    assert ramp.noise_full <= 0.03


def _biased_case(noise_level: float, seed: int) -> dict:
    """A network that removes the noise but lowers the left half's uptake by 20 % (a coarse, lobe-sized bias)."""
    rng = np.random.default_rng(seed)
    sd = np.zeros((24, 32, 32), np.float32)
    sd[2:22, 3:29, 3:29] = 1.0 + 0.2 * rng.random((20, 26, 26))
    ld = sd + rng.normal(0, 0.02, sd.shape).astype(np.float32)
    network = sd.copy()
    network[:, :, :16] *= 0.8
    return {"sd": sd, "ld": ld, "mask": sd > 0.5, "noise_level": noise_level, "m2diff": network,
            "spacing": (2.0, 2.0, 2.0)}


def test_anchor_calibration_gives_a_coarsely_biased_network_the_inputs_uptake_back():
    val = [_biased_case(0.02, 5), _biased_case(0.03, 6)]
    chosen = robustness.calibrate_anchor(val, robustness.Safeguard(0.0, 0.001))
    assert chosen.anchor_fwhm_mm is not None
    assert all(robustness._slice_psnr(robustness.safeguarded(c, chosen), c) > robustness._slice_psnr(c["m2diff"], c)
               for c in val)


def test_anchor_calibration_leaves_an_unbiased_network_alone():
    val = [_biased_case(0.02, 7)]
    val[0]["m2diff"] = val[0]["sd"].copy()  # perfect: any anchor only adds the input's noise back
    assert robustness.calibrate_anchor(val, robustness.Safeguard(0.0, 0.001)).anchor_fwhm_mm is None


def _row(**changes) -> dict:
    row = {"LD psnr": 30.0, "LD ssim": 0.90, "LD lobar_bias": 0.4, "Gaussian psnr": 32.0, "Gaussian ssim": 0.93,
           "M2Diff psnr": 33.0, "M2Diff ssim": 0.95, "M2Diff lobar_bias": 1.2}
    row.update(changes)
    return row


@pytest.mark.parametrize("changes, meets", [
    ({}, True),
    ({"M2Diff psnr": 31.9}, False),            # above its input, below the Gaussian
    ({"M2Diff ssim": 0.92}, False),
    ({"LD psnr": 33.5, "M2Diff psnr": 33.4, "Gaussian psnr": 33.0}, False),  # below its input
    ({"M2Diff lobar_bias": 1.6}, False),       # over the 1.5 % floor, input's + 0.3 is lower
    ({"LD lobar_bias": 1.5, "M2Diff lobar_bias": 1.79}, True),   # the input's bias + 0.3 % is the bar
    ({"LD lobar_bias": 1.5, "M2Diff lobar_bias": 1.81}, False),
])
def test_the_bar_needs_input_gaussian_and_lobar_bias_all_met(changes, meets):
    assert robustness.meets_criteria(_row(**changes)) is meets


def test_catalogue_metrics_come_from_the_named_configuration_noisiest_dose_first(tmp_path):
    row = lambda config, drf, psnr: {"config": config, "drf": drf, "subjects": 2,  # noqa: E731
                                     "subject_names": ["sub-9100", "sub-9101"], "M2Diff psnr": psnr,
                                     "M2Diff ssim": 0.9, "M2Diff lobar_bias": 1.0}
    path = tmp_path / "robustness.json"
    path.write_text(json.dumps({"rows": [row("validation", 4.0, 1.0), row("default", 4.0, 38.0),
                                                       row("default", 100.0, 33.0), row("sharp", 100.0, 27.0)]}))
    metrics = robustness.catalogue_metrics(path, "default")
    assert metrics["sampling_steps"] == 2  # a report without "steps" predates robustness.py --steps (then 2)
    assert [k for k in metrics if k.startswith("drf")] == ["drf100", "drf4"]
    assert metrics["drf100"]["psnr_2d"] == 33.0 and metrics["drf4"]["psnr_2d"] == 38.0
    assert metrics["subjects"] == ["sub-9100", "sub-9101"]  # names, as the module's model panel lists them
    with pytest.raises(SystemExit, match="clinical"):
        robustness.catalogue_metrics(path, "clinical")


def test_catalogue_metrics_record_the_steps_the_report_was_scored_at(tmp_path):
    path = tmp_path / "robustness.json"
    row = {"config": "default", "drf": 4.0, "subjects": 2, "subject_names": ["sub-9100", "sub-9101"],
           "M2Diff psnr": 38.0, "M2Diff ssim": 0.9, "M2Diff lobar_bias": 1.0}
    path.write_text(json.dumps({"steps": 1, "rows": [row]}))
    assert robustness.catalogue_metrics(path, "default")["sampling_steps"] == 1


def test_calibration_writes_the_safeguard_and_the_metrics_it_scores(tmp_path, monkeypatch):
    catalogue = tmp_path / "models.json"
    catalogue.write_text(json.dumps([{"id": "m", "training": {}, "metrics": {"drf4": {"psnr_2d": 1.0}}},
                                     {"id": "other", "training": {}, "metrics": {}}]))
    monkeypatch.setattr(robustness, "resource_path", lambda *parts: catalogue)
    robustness.record_calibration("m", robustness.Safeguard(0.0, 0.001, 10.0, 1.25), {"drf4": {"psnr_2d": 39.0}})
    entry = json.loads(catalogue.read_text())[0]
    assert entry["training"]["safeguard"]["anchor_fwhm_mm"] == 10.0
    assert entry["training"]["safeguard"]["anchor_power"] == 1.25
    assert entry["metrics"] == {"drf4": {"psnr_2d": 39.0}}
    robustness.record_calibration("m", robustness.Safeguard(0.0, 0.001), None)  # no default rows: metrics kept
    assert json.loads(catalogue.read_text())[0]["metrics"] == {"drf4": {"psnr_2d": 39.0}}


def test_the_release_script_reads_its_metrics_with_the_benchmarks_function():
    script = Path(__file__).parents[2] / "scripts" / "release_weights.py"
    spec = importlib.util.spec_from_file_location("release_weights", script)
    release = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(release)
    assert release.catalogue_metrics is robustness.catalogue_metrics


def test_the_table_shows_the_mri_free_column_when_only_test_rows_have_it():
    rows = [{"config": "validation", "drf": 4.0, "subjects": 1, "noise_level": 0.01, "weight": 1.0,
             "p vs LD": None, "p vs Gaussian": None, "meets": True, **_row()},
            {"config": "default", "drf": 4.0, "subjects": 1, "noise_level": 0.01, "weight": 1.0,
             "p vs LD": None, "p vs Gaussian": None, "meets": True,
             **_row(**{"M2Diff MRI-free psnr": 31.25, "M2Diff MRI-free ssim": 0.9, "M2Diff MRI-free lobar_bias": 0.5})}]
    for key in ("M2Diff raw", "Gaussian"):
        for row in rows:
            row.update({f"{key} psnr": 1.0, f"{key} ssim": 0.5, f"{key} lobar_bias": 0.1})
    table = robustness.markdown(rows, robustness.Safeguard(0.0, 0.001), {})
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert "M2Diff MRI-free PSNR" in lines[0]
    assert lines[1].split(" | ")[-4] == "-" and "31.25 / 0.900 / 0.50" in lines[2]


def test_candidate_comparison_averages_each_weights_and_steps_separately():
    import compare_weights

    row = lambda label, steps, drf, psnr: {"weights": label, "steps": steps, "subject": "sub-1", "drf": drf,  # noqa: E731
                                            "noise_level": 0.02, "LD psnr": 25.0, "psnr": psnr, "ssim": 0.9,
                                            "lobar_bias": 1.0}
    rows = [row("new", 1, 4.0, 36.0), row("new", 1, 100.0, 30.0), row("new", 2, 4.0, 37.0),
            row("old", 1, 4.0, 33.0)]
    lines = compare_weights.markdown(rows, {"old": "a.pt", "new": "b.pt"}, 1).splitlines()
    means = [line for line in lines if line.startswith(("| old", "| new")) and "sub-1" not in line]
    assert means[0].startswith("| old | 1 | 4 | 1 | 33.00")  # candidates in the order given
    assert any(line.startswith("| new | 1 | all | 2 | 33.00 |") for line in means)
    assert any(line.startswith("| new | 2 | all | 1 | 37.00 |") for line in means)
