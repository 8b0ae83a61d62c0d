"""Fixtures shared by the enhance tests."""

import pytest

import enhance_subjects as es


@pytest.fixture(scope="module")
def subject(tmp_path_factory):
    """A small synthetic subject (PET, T1, ROI) with untrained tiny weights, made once per test module."""
    folder = tmp_path_factory.mktemp("subject")
    paths = es.write_subject(folder)
    paths["weights"] = es.tiny_checkpoint(folder / "tiny.pt")
    return paths
