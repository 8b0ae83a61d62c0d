"""Sample Data registration on Slicer's own SampleData.py of each supported release
(Modules/Scripted/SampleData/SampleData.py at v5.10.0 and v5.12.0, vendored in slicer_harness/slicer_source)."""

import hashlib
import os

import pytest
import slicer

import M2DiffModule
import slicer_harness
from M2DiffModuleLib import SampleDataRegistration
from M2DiffModuleLib.EnhanceLogic import resourcesDir


@pytest.fixture(params=slicer_harness.SLICER_VERSIONS)
def sampleData(request, monkeypatch):
    """Slicer's SampleData module of one release, with empty registries (as at start-up)."""
    monkeypatch.setattr(slicer.modules, "sampleDataSources", {}, raising=False)
    monkeypatch.delattr(slicer.modules, "sampleDataSourceCategories", raising=False)
    module = slicer_harness.loadSlicerSource(f"SampleData_{request.param.replace('.', '_')}", request.param,
                                             "SampleData.py")
    module.version = request.param
    return module


def test_category_titles_exist_only_from_slicer_5_12(sampleData):
    # SampleData.py: registerCustomSampleDataCategory and categoryTitle were added in 5.12.
    hasCategories = hasattr(sampleData.SampleDataLogic, "registerCustomSampleDataCategory")
    assert hasCategories == (sampleData.version != "5.10.0")


def test_demo_subject_registers_on_each_slicer_version(sampleData):
    assert SampleDataRegistration.registerSampleData(sampleData.SampleDataLogic, resourcesDir(), "M2Diff demo")
    (source,) = sampleData.SampleDataLogic.sampleDataSourcesByCategory("M2Diff")
    assert source.nodeNames == ["M2Diff demo LD-PET", "M2Diff demo T1", "M2Diff demo SD-PET"]
    assert all(uri.startswith("file://") for uri in source.uris)
    if sampleData.version != "5.10.0":
        assert sampleData.SampleDataLogic.categoryTitle("M2Diff") == "M2Diff demo"


def test_registering_twice_keeps_one_sample(sampleData):
    for _ in range(2):
        SampleDataRegistration.registerSampleData(sampleData.SampleDataLogic, resourcesDir(), "M2Diff")
    assert len(sampleData.SampleDataLogic.sampleDataSourcesByCategory("M2Diff")) == 1


def test_sample_data_copies_the_demo_files_into_its_cache_with_their_checksums_verified(sampleData):
    SampleDataRegistration.registerSampleData(sampleData.SampleDataLogic, resourcesDir(), "M2Diff")
    logic = sampleData.SampleDataLogic()
    source = logic.sourceForSampleName("M2DiffDemoSubject")
    messages = []
    logic.logMessage = lambda message, level=None: messages.append(message)
    paths = logic.downloadSourceIntoCache(source)
    assert [os.path.basename(path) for path in paths] == source.fileNames
    assert messages.count("Checksum OK") == len(paths), messages
    for path in paths:
        os.remove(path)


def test_checksums_are_fixed_constants_that_match_the_bundled_files():
    folder = SampleDataRegistration.demoSubjectFolder(resourcesDir())
    assert folder is not None
    for name, _, digest in SampleDataRegistration.DEMO_FILES:
        assert len(digest) == 64 and int(digest, 16) >= 0
        with open(os.path.join(folder, name), "rb") as stream:
            assert hashlib.sha256(stream.read()).hexdigest() == digest, name


def test_a_modified_bundled_file_no_longer_matches_its_checksum(tmp_path):
    # The constants do not follow the files: a copy of the demo subject with one changed byte is caught.
    folder = tmp_path / "SampleData" / SampleDataRegistration.DEMO_SUBJECT
    folder.mkdir(parents=True)
    for name, _, _ in SampleDataRegistration.DEMO_FILES:
        (folder / name).write_bytes(b"not the bundled file")
    sources = {}

    class Recorder:
        @staticmethod
        def registerCustomSampleDataSource(**kwargs):
            sources.update(kwargs)

    assert SampleDataRegistration.registerSampleData(Recorder, str(tmp_path), "M2Diff")
    assert sources["checksums"][0] != "SHA256:" + hashlib.sha256(b"not the bundled file").hexdigest()


def test_missing_demo_subject_registers_nothing(sampleData, tmp_path):
    assert not SampleDataRegistration.registerSampleData(sampleData.SampleDataLogic, str(tmp_path), "M2Diff")
    assert sampleData.SampleDataLogic.sampleDataSourcesByCategory("M2Diff") == []


def test_module_registers_sample_data_on_startup_completed(sampleData, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "SampleData", sampleData)
    M2DiffModule.registerSampleData()
    assert len(sampleData.SampleDataLogic.sampleDataSourcesByCategory("M2Diff")) == 1
