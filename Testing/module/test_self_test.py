"""The module's own Slicer self-test (M2DiffModuleTest), run here on real MRML with the real worker process."""

import pytest

import M2DiffModule


def test_module_self_test_enhances_a_small_subject_end_to_end(scene):
    M2DiffModule.M2DiffModuleTest().runTest()
