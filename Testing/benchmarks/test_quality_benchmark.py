"""The quality benchmark's regional metrics: lobes built from the simulator's regions, SUVR bias against the SD-PET."""

import numpy as np
import pytest

import quality  # benchmarks/ is on pytest's pythonpath (pyproject.toml)


def _subject(names: dict[int, str], labels: np.ndarray, sd: np.ndarray, reference: str = "pons"):
    reference_label = next(k for k, v in names.items() if v == reference)
    return quality.Subject(name="sub-test", ld={}, sd=sd, t1=None, t1_on_pet=None, t1_to_pet=None,
                           registration_error_mm=0.0, brain=labels > 0, labels=labels, names=names,
                           reference_label=reference_label)


def _lobar_subject() -> "quality.Subject":
    names = {1: "pons"}
    for regions in quality.LOBES.values():
        for region in regions:
            for side in ("left", "right"):
                names[len(names) + 1] = f"{region}_{side}"
    labels = np.arange(1, len(names) + 1, dtype=np.int32).repeat(10).reshape(1, len(names), 10)
    sd = labels.astype(np.float32) + 1.0  # a different uptake per region
    return _subject(names, labels, sd)


def test_lobar_labels_merge_each_lobe_per_hemisphere_and_keep_the_reference():
    subject = _lobar_subject()
    merged = quality.lobar_labels(subject)
    assert sorted(np.unique(merged)) == list(range(1, 2 + 2 * len(quality.LOBES)))
    assert (merged[subject.labels == subject.reference_label] == 1).all()
    by_name = {v: k for k, v in subject.names.items()}
    frontal_left = [by_name[f"{r}_left"] for r in quality.LOBES["frontal"]]
    assert len(np.unique(merged[np.isin(subject.labels, frontal_left)])) == 1


def test_lobar_labels_need_the_simulators_region_names():
    subject = _subject({1: "pons", 2: "somewhere_left"}, np.array([[[1, 2]]], dtype=np.int32),
                       np.ones((1, 1, 2), np.float32))
    with pytest.raises(ValueError, match="no region of lobe"):
        quality.lobar_labels(subject)


def test_suvr_bias_ignores_global_scale_and_sees_a_regional_change():
    subject = _lobar_subject()
    lobes = subject.lobes
    assert quality.mean_abs_suvr_bias(2.5 * subject.sd, subject, lobes) == pytest.approx(0.0, abs=1e-9)
    changed = subject.sd.copy()
    changed[lobes == 2] *= 1.1  # one of the 12 lobes 10 % hotter
    assert quality.mean_abs_suvr_bias(changed, subject, lobes) == pytest.approx(10.0 / 12, rel=1e-6)
    # the reference region hotter: every other SUVR falls by 1/1.1
    reference_hotter = subject.sd.copy()
    reference_hotter[lobes == 1] *= 1.1
    assert quality.mean_abs_suvr_bias(reference_hotter, subject, lobes) == pytest.approx(100 * (1 - 1 / 1.1))
