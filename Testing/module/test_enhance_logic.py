"""M2DiffModuleLogic on real MRML with the fake worker at the process seam (exact, known outputs)."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

import fake_worker
from conftest import sceneSnapshot
from process_tree import processAlive, runningInGroup
from M2DiffModule import M2DiffModuleLogic
from M2DiffModuleLib import ComparisonLayout, RoiTable, SelfTestData
from M2DiffModuleLib.EnhanceLogic import CancelledError, Device, EnhanceSettings, WorkerError, describeWorker

FAKE_LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_launcher.py")


def runOk(subject, fakeWorker, tmp_path, **kwargs):
    keep = str(tmp_path / "kept.json")
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok", "--keep-json", keep))
    result = logic.process(subject.ldPet, subject.t1, subject.roi, **kwargs)
    with open(keep) as stream:
        return result, json.load(stream)


def test_output_is_on_the_input_grid_with_the_worker_values_and_suv_quantity_and_units(subject, fakeWorker, tmp_path):
    result, _ = runOk(subject, fakeWorker, tmp_path)
    output, ldPet = result.outputVolume, subject.ldPet
    inputMatrix, outputMatrix = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    ldPet.GetIJKToRASMatrix(inputMatrix)
    output.GetIJKToRASMatrix(outputMatrix)
    assert [outputMatrix.GetElement(i, j) for i in range(4) for j in range(4)] == pytest.approx(
        [inputMatrix.GetElement(i, j) for i in range(4) for j in range(4)], abs=1e-6)
    np.testing.assert_allclose(slicer.util.arrayFromVolume(output),
                               fake_worker.ENHANCE_FACTOR * slicer.util.arrayFromVolume(ldPet), rtol=1e-6)
    assert output.GetVoxelValueQuantity().GetAsString() == ldPet.GetVoxelValueQuantity().GetAsString()
    assert output.GetVoxelValueUnits().GetCodeValue() == "{SUVbw}g/ml"
    assert output.GetDisplayNode().GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-DICOM"


def test_enhanced_pet_is_windowed_like_the_input_for_a_fair_comparison(subject, fakeWorker, tmp_path):
    subject.ldPet.CreateDefaultDisplayNodes()
    subject.ldPet.GetDisplayNode().AutoWindowLevelOff()
    subject.ldPet.GetDisplayNode().SetWindowLevel(3.0, 1.25)
    result, _ = runOk(subject, fakeWorker, tmp_path)
    display = result.outputVolume.GetDisplayNode()
    assert (display.GetWindow(), display.GetLevel(), display.GetAutoWindowLevel()) == (3.0, 1.25, False)


def test_grey_auto_windowed_input_gets_pet_colours_and_a_percentile_window_shared_with_the_output(
        subject, fakeWorker, tmp_path):
    voxels = slicer.util.arrayFromVolume(subject.ldPet)
    top = float(np.percentile(voxels[voxels > 0], 99.5))
    result, _ = runOk(subject, fakeWorker, tmp_path)
    for volume in (subject.ldPet, result.outputVolume):
        display = volume.GetDisplayNode()
        assert display.GetColorNodeID() == "vtkMRMLPETProceduralColorNodePET-DICOM"
        assert (display.GetWindow(), display.GetLevel()) == pytest.approx((top, top / 2))


def test_results_are_placed_in_the_input_study(subject, fakeWorker, tmp_path):
    result, _ = runOk(subject, fakeWorker, tmp_path)
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene)
    for node in (result.outputVolume, result.transformNode, result.tableNode, result.chartNode):
        assert shNode.GetItemParent(shNode.GetItemByDataNode(node)) == subject.studyItem, node.GetName()


def test_registration_transform_maps_points_as_the_itk_transform_does_in_ras(subject, fakeWorker, tmp_path):
    result, _ = runOk(subject, fakeWorker, tmp_path)
    itk = sitk.Euler3DTransform(fake_worker.TRANSFORM["center"], *fake_worker.TRANSFORM["angles"],
                                fake_worker.TRANSFORM["translation"])
    fromParent = vtk.vtkMatrix4x4()
    result.transformNode.GetMatrixTransformFromParent(fromParent)
    flip = np.array([-1.0, -1.0, 1.0])
    for petRas in ([0.0, 0.0, 0.0], [30.0, -20.0, 10.0], [-50.0, 40.0, 25.0]):
        expectedT1Ras = flip * np.array(itk.TransformPoint(tuple(flip * petRas)))
        assert fromParent.MultiplyPoint([*petRas, 1.0])[:3] == pytest.approx(expectedT1Ras, abs=1e-6)
    assert subject.t1.GetTransformNodeID() == result.transformNode.GetID()


def test_roi_table_has_segment_statistics_columns_with_the_worker_numbers(subject, fakeWorker, tmp_path):
    result, kept = runOk(subject, fakeWorker, tmp_path)
    table = result.tableNode
    names = [table.GetColumnName(i) for i in range(table.GetNumberOfColumns())]
    assert names[:4] == ["Segment", "label", "voxels", "volume"]
    assert table.GetTable().GetColumnByName("voxels").GetDataTypeAsString() in ("long", "long long", "idtype")
    # As Segment Statistics: the code's meaning labels the column, the codes themselves are column properties.
    assert table.GetColumnUnitLabel("input.mean") == "Standardized Uptake Value body weight"
    assert table.GetColumnProperty("enhanced.peak", "DICOM.UnitsCode") == \
        "CodeValue:{SUVbw}g/ml|CodingSchemeDesignator:UCUM|CodeMeaning:Standardized Uptake Value body weight"
    assert table.GetColumnProperty("input.mean", "DICOM.QuantityCode").startswith("CodeValue:126400|")
    assert table.GetColumnProperty("volume", "DICOM.UnitsCode") == ""
    assert table.GetColumnUnitLabel("change.mean") == "%"
    assert table.GetColumnTitle("enhanced.suvr") == "Enhanced suvr"
    rows = kept["rows"]
    assert table.GetNumberOfRows() == len(rows) == 2
    for rowIndex, row in enumerate(rows):
        assert table.GetCellText(rowIndex, 0) == SelfTestData.SEGMENT_NAMES[row["label"]]
        assert table.GetTable().GetValueByName(rowIndex, "voxels").ToInt() == row["voxels"]
        for image in ("input", "enhanced"):
            for key in ("mean", "std", "max", "peak", "suvr"):
                value = table.GetTable().GetValueByName(rowIndex, RoiTable.columnName(image, key)).ToDouble()
                assert value == pytest.approx(row[image][key], rel=1e-12)
        assert table.GetTable().GetValueByName(rowIndex, "change.mean").ToDouble() == pytest.approx(
            row["change_pct"]["mean"], rel=1e-12)
    assert result.chartNode.GetNumberOfPlotSeriesNodes() == 2


def test_comparison_layout_shows_ld_enhanced_and_t1_in_linked_views(subject, fakeWorker, tmp_path):
    result, _ = runOk(subject, fakeWorker, tmp_path)
    scene = slicer.mrmlScene
    layoutNode = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    assert layoutNode.GetViewArrangement() == ComparisonLayout.COMPARISON_LAYOUT_ID
    composites = [ComparisonLayout.compositeNodeByLayoutName(scene, name) for name in ("Red", "Yellow", "Green")]
    assert [c.GetBackgroundVolumeID() for c in composites] == [
        subject.ldPet.GetID(), result.outputVolume.GetID(), subject.t1.GetID()]
    assert all(c.GetLinkedControl() for c in composites)


def test_uncertainty_output_adds_a_fourth_linked_view(subject, fakeWorker, tmp_path):
    result, _ = runOk(subject, fakeWorker, tmp_path, uncertainty=True)
    scene = slicer.mrmlScene
    layoutNode = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    assert layoutNode.GetViewArrangement() == ComparisonLayout.COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID
    slice4 = ComparisonLayout.compositeNodeByLayoutName(scene, "Slice4")
    assert slice4.GetBackgroundVolumeID() == result.uncertaintyVolume.GetID()


def test_mri_free_run_adds_no_transform_and_sends_no_t1(subject, fakeWorker, tmp_path):
    keep = str(tmp_path / "kept.json")
    transformsBefore = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode")
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok", "--keep-json", keep))
    result = logic.process(subject.ldPet, None, subject.roi)
    with open(keep) as stream:
        job = json.load(stream)["job"]
    assert job["t1"] is None and job["transform_output"] is None
    assert result.transformNode is None
    assert slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLLinearTransformNode") == transformsBefore


def test_existing_output_volume_is_filled_in_place(subject, fakeWorker, tmp_path):
    output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "chosen output")
    result, _ = runOk(subject, fakeWorker, tmp_path, output=output)
    assert result.outputVolume is output
    assert output.GetImageData().GetDimensions() == subject.ldPet.GetImageData().GetDimensions()


def test_job_file_carries_the_settings(subject, fakeWorker, tmp_path):
    from M2DiffModuleLib.EnhanceLogic import Orientations

    _, kept = runOk(subject, fakeWorker, tmp_path, steps=7, device=Device.CPU, orientations=Orientations.AXIAL,
                    seed=3)
    job = kept["job"]
    assert (job["steps"], job["device"], job["orientations"], job["seed"]) == (7, "cpu", ["axial"], 3)
    assert job["weights"] is None and job["uncertainty_output"] is None


def test_worker_error_raises_its_message_and_leaves_the_scene_unchanged(subject, fakeWorker):
    before = sceneSnapshot(slicer.mrmlScene)
    petBefore = slicer.util.arrayFromVolume(subject.ldPet).copy()
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("fail"))
    with pytest.raises(WorkerError, match="PET volume is empty") as caught:
        logic.process(subject.ldPet, subject.t1, subject.roi)
    assert (caught.value.errorType, caught.value.exitCode) == ("BadInputError", 2)
    assert sceneSnapshot(slicer.mrmlScene) == before
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(subject.ldPet), petBefore)


def test_internal_worker_error_carries_the_worker_traceback(subject, fakeWorker):
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("internal"))
    with pytest.raises(WorkerError, match="float division by zero(.|\n)*Worker log:(.|\n)*roi.py") as caught:
        logic.process(subject.ldPet, subject.t1)
    assert caught.value.exitCode == 1


def test_user_fixable_worker_error_is_not_buried_in_a_log(subject, fakeWorker):
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("fail"))
    with pytest.raises(WorkerError) as caught:
        logic.process(subject.ldPet)
    assert str(caught.value) == "PET volume is empty (all voxels are 0)"
    # Kept for the details and for bug reports, not in the message.
    assert caught.value.stderrTail == "fake worker: checked the PET voxels in validate.py"


def test_worker_crash_without_error_event_reports_exit_code_and_stderr(subject, fakeWorker):
    before = sceneSnapshot(slicer.mrmlScene)
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("crash"))
    with pytest.raises(WorkerError, match="exit code 139(.|\n)*Segmentation fault in fake worker"):
        logic.process(subject.ldPet, subject.t1)
    assert sceneSnapshot(slicer.mrmlScene) == before


def test_non_blocking_run_reports_progress_through_the_timer_then_finishes(subject, fakeWorker, manualTimer):
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok"), timerFactory=lambda: manualTimer)
    job = logic.process(subject.ldPet, subject.t1, waitForCompletion=False)
    progress, finished = [], []
    job.progress.connect(lambda fraction, message: progress.append(fraction))
    job.finished.connect(lambda result, error: finished.append((result, error)))
    assert manualTimer.active and not finished
    tickUntil(manualTimer, lambda: finished)
    assert len(finished) == 1 and finished[0][1] is None
    assert progress[:3] == [0.25, 0.5, 0.75] and progress[-1] == 1.0
    assert not manualTimer.active
    assert not os.path.exists(job.tempDir)


def tickUntil(timer, condition, timeoutS: float = 60.0) -> None:
    """Fire the timer every 10 ms until ``condition()`` holds; a generous deadline because CI CPUs are shared."""
    deadline = time.monotonic() + timeoutS
    while not condition() and time.monotonic() < deadline:
        timer.tick()
        time.sleep(0.01)


@pytest.fixture
def killLeftovers():
    """``killLeftovers(pids)``: processes the test started are killed at teardown even when the code under test
    failed to end them, so one failure does not leave a stuck worker behind."""
    pids = []
    yield pids.extend
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def forbiddenWait(process, timeout=None):
    raise AssertionError(f"the GUI thread waited on the process {process.args}")


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks process liveness through /proc (Linux)")
@pytest.mark.parametrize("workerArgs", [(), ("--ignore-sigterm",)], ids=["worker-stops-at-SIGTERM", "worker-stuck"])
@pytest.mark.parametrize("launcherArgs", [("--ignore-sigterm",), ()],
                         ids=["launcher-ignores-SIGTERM", "launcher-dies-at-SIGTERM"])
def test_cancel_through_a_launcher_ends_every_process_within_5_s_and_the_gui_never_waits(
        subject, fakeWorker, manualTimer, tmp_path, monkeypatch, killLeftovers, launcherArgs, workerArgs):
    pidFile = tmp_path / "pids.json"
    before = sceneSnapshot(slicer.mrmlScene)
    # The worker command goes through a real launcher process that, like PythonSlicer, forwards no signal.
    command = [sys.executable, FAKE_LAUNCHER, *launcherArgs,
               *fakeWorker("slow", "--pid-file", str(pidFile), *workerArgs)]
    logic = M2DiffModuleLogic(workerCommand=command, timerFactory=lambda: manualTimer)
    job = logic.process(subject.ldPet, subject.t1, subject.roi, waitForCompletion=False)
    progress, finished = [], []
    job.progress.connect(lambda fraction, message: progress.append(fraction))
    job.finished.connect(lambda result, error: finished.append(error))
    tickUntil(manualTimer, lambda: len(progress) >= 3 and pidFile.exists())
    workerPids = json.loads(pidFile.read_text())
    pids = {"launcher": job.process.pid, "worker": workerPids["worker"], "grandchild": workerPids["grandchild"]}
    killLeftovers(pids.values())
    assert len(progress) >= 3 and not finished
    assert all(processAlive(pid) for pid in pids.values())
    monkeypatch.setattr(subprocess.Popen, "wait", forbiddenWait)

    cancelStart = time.monotonic()
    job.cancel()
    cancelS = time.monotonic() - cancelStart

    assert cancelS < 0.5 and not finished
    assert job.cancelRequested and manualTimer.active
    slowestTickS = 0.0
    while not finished and time.monotonic() - cancelStart < 10.0:
        tickStart = time.monotonic()
        manualTimer.tick()
        slowestTickS = max(slowestTickS, time.monotonic() - tickStart)
        time.sleep(0.01)
    endedS = time.monotonic() - cancelStart
    alive = [name for name, pid in pids.items() if processAlive(pid)]
    assert not alive and endedS < 5.0, f"still running {endedS:.1f} s after Cancel: {alive}"
    assert runningInGroup(pids["launcher"]) == []
    assert slowestTickS < 0.5
    assert len(finished) == 1 and isinstance(finished[0], CancelledError)
    assert not os.path.exists(job.tempDir)
    assert sceneSnapshot(slicer.mrmlScene) == before


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks process liveness through /proc (Linux)")
def test_forced_cancel_when_slicer_closes_kills_the_tree_at_once_and_removes_the_job_files(
        subject, fakeWorker, manualTimer, tmp_path, killLeftovers):
    pidFile = tmp_path / "pids.json"
    command = [sys.executable, FAKE_LAUNCHER, "--ignore-sigterm",
               *fakeWorker("slow", "--pid-file", str(pidFile), "--ignore-sigterm")]
    logic = M2DiffModuleLogic(workerCommand=command, timerFactory=lambda: manualTimer)
    job = logic.process(subject.ldPet, subject.t1, waitForCompletion=False)
    tickUntil(manualTimer, pidFile.exists)
    launcher = job.process.pid
    killLeftovers([launcher, *json.loads(pidFile.read_text()).values()])

    job.cancel(force=True)

    # No timer tick: nothing will poll the job once the module is gone.
    deadline = time.monotonic() + 2.0
    while runningInGroup(launcher) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runningInGroup(launcher) == []
    assert not os.path.exists(job.tempDir)


def test_a_second_cancel_click_does_not_signal_again(subject, fakeWorker, manualTimer, tmp_path, monkeypatch):
    from M2DiffModuleLib import ProcessRunner

    pidFile = tmp_path / "pids.json"
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("slow", "--pid-file", str(pidFile)),
                              timerFactory=lambda: manualTimer)
    job = logic.process(subject.ldPet, subject.t1, waitForCompletion=False)
    tickUntil(manualTimer, pidFile.exists)
    signals = []
    realSignal = ProcessRunner.signalProcessTree
    monkeypatch.setattr(ProcessRunner, "signalProcessTree",
                        lambda process, force: signals.append(force) or realSignal(process, force))
    job.cancel()
    job.cancel()
    assert signals == [False]
    tickUntil(manualTimer, lambda: not job.running)
    assert not job.running


@pytest.mark.parametrize("argument", ["ldPet", "t1", "roi", "output"])
def test_unusable_input_node_raises_value_error_naming_it(subject, fakeWorker, argument):
    labelmap = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "not a PET")
    table = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLTableNode", "not an ROI")
    inputs = {"ldPet": subject.ldPet, "t1": subject.t1, "roi": subject.roi, "output": None}
    inputs[argument] = {"ldPet": labelmap, "t1": table, "roi": table, "output": subject.ldPet}[argument]
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok"))
    with pytest.raises(ValueError, match=argument):
        logic.process(**inputs)


@pytest.mark.parametrize("field,value", [("steps", 0), ("batchSize", 0), ("weights", "/no/such/model.pt"),
                                         ("device", "cuda"), ("orientations", "axial")])
def test_invalid_settings_raise_value_error_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        EnhanceSettings(**{field: value})


@pytest.mark.parametrize("start,requested,expected", [
    ({"device": "cpu", "arch_ok": True}, Device.AUTO, "no usable CUDA GPU was found"),
    ({"device": "cpu", "arch_ok": False}, Device.GPU, "architecture is not supported"),
    ({"device": "cuda", "device_name": "RTX", "arch_ok": True}, Device.AUTO, "running on cuda (RTX"),
])
def test_worker_start_facts_are_stated_plainly_including_cpu_fallback(start, requested, expected):
    text = describeWorker({"torch": "2.13.0", "cuda_build": "12.4", "memory_gb": 8, **start}, requested)
    assert expected in text
    assert ("Running on the CPU because" in text) == (start["device"] == "cpu")


@pytest.mark.parametrize("code,meaning,label", [("{SUVbw}g/ml", "Standardized Uptake Value body weight",
                                                 "Standardized Uptake Value body weight"),
                                                ("Bq/ml", "", "Bq/ml"), (None, None, "")])
def test_pet_units_label_is_the_code_meaning_or_else_the_code(scene, code, meaning, label):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "PET")
    if code is not None:
        units = slicer.vtkCodedEntry()
        units.SetValueSchemeMeaning(code, "UCUM", meaning)
        volume.SetVoxelValueUnits(units)
    unitsLabel, codes = RoiTable.petUnitsAndCodes(volume)
    assert unitsLabel == label
    assert list(codes) == ([] if code is None else ["DICOM.UnitsCode"])
