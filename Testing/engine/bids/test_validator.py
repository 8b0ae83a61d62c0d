"""Both BIDS validators' JSON reports read into one list of errors (warnings left out)."""

import pytest

from M2DiffSlicer.bids.validator import report_errors, validation_errors
from M2DiffSlicer.errors import BadInputError

# Shapes as the validators print them (trimmed from real runs on bids-examples pet002 and this app's output).
DENO_REPORT = {"issues": {"issues": [
    {"code": "NIFTI_HEADER_UNREADABLE", "severity": "error", "location": "/sub-01/pet/sub-01_pet.nii.gz"},
    {"code": "SIDECAR_KEY_RECOMMENDED", "severity": "warning", "location": "/sub-01/pet/sub-01_pet.nii.gz"}]}}
LEGACY_REPORT = {"issues": {
    "errors": [{"key": "NOT_INCLUDED", "severity": "error", "files": [
        {"key": "NOT_INCLUDED", "file": {"relativePath": "/sub-01/pet/a_desc-x_pet.json"}},
        {"key": "NOT_INCLUDED", "file": {"relativePath": "/sub-01/pet/a_desc-x_pet.nii.gz"}}]}],
    "warnings": [{"key": "README_FILE_MISSING", "files": []}]}}


def test_deno_report_errors_keep_code_and_location():
    assert report_errors(DENO_REPORT) == [{"code": "NIFTI_HEADER_UNREADABLE", "location": "/sub-01/pet/sub-01_pet.nii.gz"}]


def test_legacy_report_errors_list_their_files():
    assert report_errors(LEGACY_REPORT) == [
        {"code": "NOT_INCLUDED", "location": "/sub-01/pet/a_desc-x_pet.json, /sub-01/pet/a_desc-x_pet.nii.gz"}]


def test_a_report_without_errors_gives_none():
    assert report_errors({"issues": {"issues": []}}) == [] == report_errors({"issues": {"errors": [], "warnings": []}})


def test_a_validator_that_prints_no_json_is_a_clear_error(tmp_path):
    fake = tmp_path / "bids-validator"
    fake.write_text("#!/bin/sh\necho 'Segmentation fault' >&2\nexit 139\n")
    fake.chmod(0o755)
    with pytest.raises(BadInputError, match="printed no JSON report: Segmentation fault"):
        validation_errors(tmp_path, str(fake))
