"""What the panel shows and refuses, tested below the Qt widgets: the minimum Slicer version, the model picker's
catalogue and notice, input problems (with the scene left as it was), the icon path and Reload."""

import importlib.util
import os
import shutil
import sys

import numpy as np
import pytest
import slicer

import M2DiffModule
from conftest import MODULE_DIR, sceneSnapshot
from M2DiffModule import M2DiffModuleLogic, inputProblem
from M2DiffModuleLib import ModelCatalogue
from M2DiffModuleLib.EnhanceLogic import resourcesDir
from slicer_harness import ModuleParent


@pytest.mark.parametrize("version,supported", [((5, 8), False), ((5, 9), False), ((5, 10), True), ((5, 12), True),
                                               ((6, 0), True)])
def test_minimum_slicer_version_is_5_10(version, supported):
    message = M2DiffModule.unsupportedSlicerMessage(*version)
    assert (message is None) == supported
    if not supported:
        assert "5.10" in message and f"{version[0]}.{version[1]}" in message


def test_harness_slicer_is_a_supported_version():
    assert M2DiffModule.unsupportedSlicerMessage(slicer.app.majorVersion, slicer.app.minorVersion) is None


def test_module_files_import_on_python_3_9_so_the_panel_can_say_which_slicer_is_needed():
    import glob
    import subprocess

    candidates = [shutil.which("python3.9"), *glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python"))]
    python39 = next((path for path in candidates if path and subprocess.run(
        [path, "--version"], capture_output=True).returncode == 0), None)
    if python39 is None:
        pytest.skip("Python 3.9 (Slicer 5.8's) is not installed here")

    script = os.path.join(os.path.dirname(__file__), "old_python_import_check.py")
    completed = subprocess.run([python39, script, MODULE_DIR], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "needs 3D Slicer 5.10 or newer; this is Slicer 5.8" in completed.stdout


def test_icon_is_found_from_a_source_checkout():
    parent = ModuleParent(M2DiffModule.__file__)
    M2DiffModule.M2DiffModule(parent)
    assert parent.icon is not None and os.path.isfile(parent.icon.fileName)
    assert parent.icon.fileName == os.path.join(resourcesDir(), "Icons", "M2DiffModule.png")


def test_catalogue_lists_each_model_with_version_training_data_and_held_out_metrics():
    models = M2DiffModuleLogic().models()
    assert models and all(os.path.isfile(model.path) for model in models)
    default = ModelCatalogue.findModel(models, ModelCatalogue.defaultModelId(models))
    facts = ModelCatalogue.provenance(default)
    assert default.label == f"{default.id} {default.version}"
    assert "simulated" in facts["trainedOn"] and "PSNR" in facts["heldOut"] and "SSIM" in facts["heldOut"]


@pytest.mark.parametrize("training, says", [
    ({"data": "48 subjects", "drf": [4.0, 20.0, 100.0], "every_dose": True}, "every low-dose level"),
    ({"data": "36 subjects", "drf": [100]}, "dose-reduction factor 100"),
])
def test_the_training_doses_are_stated_as_the_catalogue_records_them(training, says):
    model = ModelCatalogue.CatalogueModel("m", "1.0", "/x.pt", False, training, {})
    assert says in ModelCatalogue.provenance(model)["trainedOn"]


def test_notice_says_research_use_and_simulated_training_with_the_models_provenance():
    models = M2DiffModuleLogic().models()
    text = ModelCatalogue.modelNotice(models, ModelCatalogue.defaultModelId(models))
    assert text.startswith("Research use only") and "simulated data only" in text
    assert models[0].label in text and "Held-out results: DRF 100: PSNR" in text


def test_notice_for_a_file_of_ones_own_says_its_provenance_is_unknown():
    text = ModelCatalogue.modelNotice(M2DiffModuleLogic().models(), ModelCatalogue.OTHER_MODEL_FILE)
    assert text.startswith("Research use only") and "not known" in text


def test_unreadable_catalogue_names_the_file(tmp_path):
    (tmp_path / "Models").mkdir()
    (tmp_path / "Models" / "models.json").write_text("[{\"id\": 1}")
    with pytest.raises(ValueError, match="models.json cannot be read"):
        ModelCatalogue.loadCatalogue(str(tmp_path))


def addVolume(name: str, shape=(16, 16, 16), components: int = 1, labelmap: bool = False):
    array = np.ones(shape + ((components,) if components > 1 else ()), dtype=np.float32)
    className = "vtkMRMLLabelMapVolumeNode" if labelmap else (
        "vtkMRMLVectorVolumeNode" if components > 1 else "vtkMRMLScalarVolumeNode")
    return slicer.util.addVolumeFromArray(array, name=name, nodeClassName=className)


BAD_INPUTS = {
    "no PET": (lambda: {}, "Select a low-dose PET volume"),
    "2D PET": (lambda: {"ldPet": addVolume("slice", shape=(1, 16, 16))}, "at least 8 voxels along each axis"),
    "4D PET": (lambda: {"ldPet": addVolume("frames", components=4)}, "4 values per voxel"),
    "labelmap as PET": (lambda: {"ldPet": addVolume("labels", labelmap=True)}, "must be a scalar volume, not 'labels'"),
    "T1 = PET": (lambda: {"ldPet": (pet := addVolume("pet")), "t1": pet}, "different volume from the low-dose PET"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_panel_input_is_explained_and_changes_nothing(scene, case, fakeWorker):
    makeInputs, expected = BAD_INPUTS[case]
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok"))
    parameterNode = logic.getParameterNode()
    for name, node in makeInputs().items():
        setattr(parameterNode, name, node)
    before, mtime = sceneSnapshot(scene), scene.GetMTime()

    assert expected in inputProblem(parameterNode, logic.models())
    with pytest.raises(ValueError, match=expected.split("'")[0]):
        logic.startFromParameterNode(parameterNode)
    assert sceneSnapshot(scene) == before and scene.GetMTime() == mtime


def test_good_panel_input_has_no_problem(subject):
    logic = M2DiffModuleLogic()
    parameterNode = logic.getParameterNode()
    parameterNode.ldPet, parameterNode.t1, parameterNode.roi = subject.ldPet, subject.t1, subject.roi
    assert inputProblem(parameterNode, logic.models()) is None


def test_reload_reads_the_lib_modules_again():
    # As slicer.util.reloadScriptedModule does at v5.10.0 and v5.12.0 (Base/Python/slicer/util.py): put a new module
    # object in sys.modules and execute M2DiffModule.py into it.
    import M2DiffModuleLib.ComparisonLayout as cached

    saved = {name: module for name, module in sys.modules.items() if name.startswith("M2DiffModule")}
    try:
        assert "M2DiffModuleLib.ComparisonLayout" in M2DiffModule.unloadLibModules()
        spec = importlib.util.spec_from_file_location("M2DiffModule", os.path.join(MODULE_DIR, "M2DiffModule.py"))
        reloaded = importlib.util.module_from_spec(spec)
        sys.modules["M2DiffModule"] = reloaded
        spec.loader.exec_module(reloaded)
        assert sys.modules["M2DiffModuleLib.EnhanceLogic"].resourcesDir is reloaded.resourcesDir
        assert reloaded.resourcesDir is not M2DiffModule.resourcesDir
        import M2DiffModuleLib.ComparisonLayout as fresh

        assert fresh is not cached
    finally:
        for name in [name for name in sys.modules if name.startswith("M2DiffModule")]:
            del sys.modules[name]
        sys.modules.update(saved)


def test_minimum_version_is_stated_alike_in_readme_extension_metadata_and_module():
    from conftest import REPO

    minimum = ".".join(str(part) for part in M2DiffModule.MINIMUM_SLICER_VERSION)
    with open(os.path.join(REPO, "README.md"), encoding="utf-8") as stream:
        assert f"**Supported Slicer versions: {minimum} and newer**" in stream.read()
    with open(os.path.join(REPO, "CMakeLists.txt"), encoding="utf-8") as stream:
        assert f"Requires 3D Slicer {minimum} or newer." in stream.read()
