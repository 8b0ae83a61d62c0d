"""Module metadata, parameter node, sample data registration and dependency checks."""

import json

import pytest
import slicer

import M2DiffModule
from M2DiffModule import M2DiffModuleLogic, settingsFromParameterNode
from M2DiffModuleLib import Dependencies, ModelCatalogue
from M2DiffModuleLib.EnhanceLogic import Device, Orientations
from slicer_harness import ModuleParent


def test_module_metadata_is_complete_and_cites_the_paper():
    parent = ModuleParent(M2DiffModule.__file__)
    M2DiffModule.M2DiffModule(parent)
    assert parent.title == "M2Diff PET Enhancement"
    assert parent.categories and parent.contributors and all(parent.contributors)
    assert "M2Diff" in parent.acknowledgementText and "cite" in parent.acknowledgementText
    assert parent.helpText.strip()


def test_sample_data_is_registered_on_startup_completed_not_at_load():
    slicer.app.connections.pop("startupCompleted()", None)
    M2DiffModule.M2DiffModule(ModuleParent(M2DiffModule.__file__))
    assert slicer.app.connections["startupCompleted()"] == [M2DiffModule.registerSampleData]


def test_parameter_node_round_trips_through_a_saved_scene(subject, tmp_path, monkeypatch):
    logic = M2DiffModuleLogic()
    parameterNode = logic.getParameterNode()
    parameterNode.ldPet, parameterNode.t1, parameterNode.roi = subject.ldPet, subject.t1, subject.roi
    parameterNode.engine.steps = 25
    parameterNode.engine.orientations = Orientations.AXIAL
    parameterNode.engine.device = Device.CPU
    parameterNode.engine.seed = 7
    parameterNode.engine.uncertainty = True
    parameterNode.engine.model = ModelCatalogue.OTHER_MODEL_FILE
    parameterNode.engine.modelFile = str(tmp_path / "model.pt")
    ids = (subject.ldPet.GetID(), subject.t1.GetID(), subject.roi.GetID())
    scene = slicer.mrmlScene
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    assert scene.Commit()

    # Load it into a fresh scene, as a new Slicer session would.
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    assert loaded.Connect()
    monkeypatch.setattr(slicer, "mrmlScene", loaded)

    restored = M2DiffModuleLogic().getParameterNode()
    assert (restored.ldPet.GetID(), restored.t1.GetID(), restored.roi.GetID()) == ids
    assert restored.outputVolume is None
    engine = restored.engine
    assert (engine.steps, engine.orientations, engine.device, engine.seed, engine.uncertainty) == (
        25, Orientations.AXIAL, Device.CPU, 7, True)
    assert (engine.model, engine.modelFile) == (ModelCatalogue.OTHER_MODEL_FILE, str(tmp_path / "model.pt"))


def test_parameter_node_rejects_out_of_range_steps(scene):
    parameterNode = M2DiffModuleLogic().getParameterNode()
    parameterNode.engine.steps = 5
    with pytest.raises(ValueError):
        parameterNode.engine.steps = 0
    assert parameterNode.engine.steps == 5  # the value before the rejected one is kept


def test_fresh_parameter_node_stores_slicers_parameter_names(scene):
    # Slicer's wrapper stores the roi Union as "roi.<index of the value's type>", None being index 2.
    node = M2DiffModuleLogic().getParameterNode().parameterNode
    assert node.GetParameterNamesAsCommaSeparatedList().split(",") == [
        "engine.device", "engine.model", "engine.modelFile", "engine.orientations", "engine.seed", "engine.steps",
        "engine.uncertainty", "ldPet", "outputVolume", "roi.2", "t1"]
    assert node.GetParameter("engine.modelFile") == ""  # not "." as a pathlib.Path default would be


def test_apply_settings_come_from_the_parameter_node_with_empty_model_meaning_the_default(scene):
    logic = M2DiffModuleLogic()
    parameterNode = logic.getParameterNode()
    parameterNode.engine.steps = 3
    parameterNode.engine.device = Device.GPU
    settings = settingsFromParameterNode(parameterNode, logic.models())
    default = ModelCatalogue.findModel(logic.models(), ModelCatalogue.defaultModelId(logic.models()))
    assert (settings.steps, settings.device, settings.weights) == (3, Device.GPU, default.path)


def test_other_model_file_without_a_file_is_refused(scene):
    logic = M2DiffModuleLogic()
    parameterNode = logic.getParameterNode()
    parameterNode.engine.model = ModelCatalogue.OTHER_MODEL_FILE
    with pytest.raises(ValueError, match="Choose a model file"):
        settingsFromParameterNode(parameterNode, logic.models())


def test_model_not_in_the_catalogue_is_refused(scene):
    logic = M2DiffModuleLogic()
    parameterNode = logic.getParameterNode()
    parameterNode.engine.model = "no-such-model"
    with pytest.raises(ValueError, match="'no-such-model' is not in the catalogue"):
        settingsFromParameterNode(parameterNode, logic.models())


def test_enhance_from_parameter_node_uses_its_nodes_and_settings(subject, fakeWorker, tmp_path):
    keep = str(tmp_path / "kept.json")
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok", "--keep-json", keep))
    parameterNode = logic.getParameterNode()
    parameterNode.ldPet, parameterNode.t1 = subject.ldPet, subject.t1
    parameterNode.engine.steps = 4
    job = logic.startFromParameterNode(parameterNode)
    assert job.error is None and job.result.transformNode is not None
    with open(keep) as stream:
        assert json.load(stream)["job"]["steps"] == 4


@pytest.mark.parametrize("version,ok", [(None, False), ("2.5.1", False), ("2.6.0", True), ("2.13.0+cpu", True)])
def test_torch_requirement_is_at_least_2_6(version, ok):
    assert Dependencies.torchSatisfies(version) is ok


def test_missing_pytorch_extension_asks_for_install_and_restart(monkeypatch):
    monkeypatch.setattr(Dependencies, "installedTorchVersion", lambda: None)
    with pytest.raises(Dependencies.InstallError, match="PyTorch extension") as caught:
        Dependencies.ensureTorchOrRaise(askConfirmation=False)
    assert caught.value.restartRequired


def test_module_files_never_import_torch():
    import ast
    import os

    from conftest import MODULE_DIR

    for root, _, files in os.walk(MODULE_DIR):
        for name in files:
            if name.endswith(".py"):
                with open(os.path.join(root, name), encoding="utf-8") as stream:
                    tree = ast.parse(stream.read())
                imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                            for alias in node.names}
                imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                             if isinstance(node, ast.ImportFrom) and node.module}
                assert not imported & {"torch", "M2DiffSlicer"}, name
