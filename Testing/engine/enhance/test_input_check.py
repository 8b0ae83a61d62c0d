"""Out-of-distribution warnings: fire outside the trained range (with its slack), stay quiet inside it."""

import math

import pytest

from M2DiffSlicer.enhance.input_check import RANGE_SLACK, out_of_range_messages, trained_ranges
from M2DiffSlicer.model.catalogue import default_entry

RANGES = {"noise_level": [0.02, 0.03], "brain_contrast": [1.3, 1.5], "registration_nmi": [1.06, 1.08]}


@pytest.mark.parametrize("value", [0.02, 0.025, 0.03, 0.02 * (1 - RANGE_SLACK / 2), 0.03 * (1 + RANGE_SLACK / 2)])
def test_no_warning_inside_the_range(value):
    assert out_of_range_messages({"noise_level": value}, RANGES) == []


@pytest.mark.parametrize("value, says", [(0.01, "cleaner"), (0.09, "noisier")])
def test_a_warning_with_the_value_and_the_range_outside_it(value, says):
    (message,) = out_of_range_messages({"noise_level": value}, RANGES)
    assert f"{value:.3g}" in message and "0.02 to 0.03" in message and says in message


def test_a_poor_registration_is_named():
    (message,) = out_of_range_messages({"registration_nmi": 1.01}, RANGES)
    assert "registration" in message and "MRI-free" in message


def test_unmeasurable_statistics_and_unknown_names_are_skipped():
    assert out_of_range_messages({"noise_level": math.nan, "other": 5.0}, RANGES) == []


def test_a_model_file_without_ranges_gives_no_warning():
    assert out_of_range_messages({"noise_level": 0.5, "brain_contrast": 9.0}, None) == []


def test_the_default_catalogue_model_records_its_ranges(tmp_path):
    ranges = trained_ranges(default_entry().path)
    assert set(ranges) >= {"noise_level", "brain_contrast", "registration_nmi"}
    assert all(low <= high for low, high in ranges.values())
    assert trained_ranges(tmp_path / "elsewhere.pt") is None
