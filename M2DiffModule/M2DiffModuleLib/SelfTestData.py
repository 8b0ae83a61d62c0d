"""A small synthetic subject and a tiny untrained model for the module's self-test (M2DiffModuleTest).

The subject is built in the scene (no download): an ellipsoid "head" PET with two regions of known uptake, an
aligned T1 on a different grid, and a two-segment ROI segmentation, placed in a patient/study of the subject
hierarchy with SUV quantity and units, as a DICOM PET loaded in Slicer would be.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import tempfile

import numpy as np
import slicer

from . import ComparisonLayout, Dependencies, RoiTable
from .EnhanceLogic import EnhanceLogic, WorkerError
from .ProcessRunner import hiddenConsoleKwargs

# z, y, x voxels at 3 mm. The "head" is a thin slab (4 cm in z) so that the model, which skips empty slices, runs on
# about 20 axial slices: one network call per step keeps the self-test to seconds of CPU time.
PET_SHAPE = (16, 48, 40)
PET_SPACING = 3.0
T1_SPACING = 2.0
REGION_UPTAKE = {1: 2.0, 2: 1.0}  # SUV of the left and right regions; head background 0.5
SEGMENT_NAMES = {1: "Left region", 2: "Right region"}


@dataclasses.dataclass
class Subject:
    ldPet: object
    t1: object
    roi: object
    studyItem: int
    folder: str


def _headMasks(shape, spacing):
    z, y, x = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * spacing for n in shape], indexing="ij")
    head = (x / 55) ** 2 + (y / 65) ** 2 + (z / 20) ** 2 <= 1
    inner = (x / 40) ** 2 + (y / 50) ** 2 + (z / 14) ** 2 <= 1
    return head, inner, x


def _suvCodes(volumeNode) -> None:
    quantity = slicer.vtkCodedEntry()
    quantity.SetValueSchemeMeaning("126400", "DCM", "Standardized Uptake Value")
    units = slicer.vtkCodedEntry()
    units.SetValueSchemeMeaning("{SUVbw}g/ml", "UCUM", "Standardized Uptake Value body weight")
    volumeNode.SetVoxelValueQuantity(quantity)
    volumeNode.SetVoxelValueUnits(units)


def _volume(scene, array, spacing, name, className="vtkMRMLScalarVolumeNode"):
    volume = slicer.util.addVolumeFromArray(array, nodeClassName=className, name=name)
    volume.SetSpacing(spacing, spacing, spacing)
    volume.SetOrigin(*[-(n - 1) / 2 * spacing for n in reversed(array.shape)])
    return volume


def createSubject(scene, seed: int = 0) -> Subject:
    """Add the synthetic LD-PET, T1 and ROI segmentation to ``scene`` under a patient/study."""
    rng = np.random.default_rng(seed)
    head, inner, x = _headMasks(PET_SHAPE, PET_SPACING)
    labels = np.zeros(PET_SHAPE, np.int16)
    labels[inner & (x < 0)] = 1
    labels[inner & (x >= 0)] = 2
    pet = np.where(head, 0.5, 0.0)
    for label, uptake in REGION_UPTAKE.items():
        pet[labels == label] = uptake
    pet = (pet + head * rng.normal(0, 0.15, PET_SHAPE)).clip(0).astype(np.float32)
    ldPet = _volume(scene, pet, PET_SPACING, "Phantom LD-PET")
    _suvCodes(ldPet)

    t1Shape = tuple(int(n * PET_SPACING / T1_SPACING) for n in PET_SHAPE)
    t1Head, t1Inner, _ = _headMasks(t1Shape, T1_SPACING)
    t1 = _volume(scene, (t1Head * 300.0 + t1Inner * 500.0).astype(np.float32), T1_SPACING, "Phantom T1")

    labelmap = _volume(scene, labels, PET_SPACING, "Phantom ROI labels", "vtkMRMLLabelMapVolumeNode")
    roi = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Phantom ROI")
    slicer.vtkSlicerSegmentationsModuleLogic.ImportLabelmapToSegmentationNode(labelmap, roi)
    segmentation = roi.GetSegmentation()
    for index in range(segmentation.GetNumberOfSegments()):
        segmentation.GetNthSegment(index).SetName(SEGMENT_NAMES[index + 1])
    scene.RemoveNode(labelmap)

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    patientItem = shNode.CreateSubjectItem(shNode.GetSceneItemID(), "Phantom patient")
    studyItem = shNode.CreateStudyItem(patientItem, "Phantom PET/MR study")
    for node in (ldPet, t1, roi):
        item = shNode.GetItemByDataNode(node) or shNode.CreateItem(shNode.GetSceneItemID(), node)
        shNode.SetItemParent(item, studyItem)
    return Subject(ldPet, t1, roi, studyItem, tempfile.mkdtemp(prefix="M2DiffSelfTest-"))


def skipUnlessWorkerCanRun(testCase, workerCommand: list[str] | None = None) -> None:
    """Skip ``testCase``, saying what to do, when the worker's Python lacks the engine's requirements: a fresh
    Slicer has no torch until the first Enhance installs it, and Slicer installs nothing in ``--testing`` mode."""
    logic = EnhanceLogic()
    python = (workerCommand or logic.workerCommand())[0]
    missing = Dependencies.missingWorkerRequirements(python, logic.workerEnvironment())
    if missing:
        testCase.skipTest(f"M2Diff self-test skipped: the worker's Python ({python}) lacks {'; '.join(missing)}. "
                          "Click Enhance once in the M2Diff panel to install them (Slicer installs nothing while "
                          "testing), then run the test again.")


@contextlib.contextmanager
def workerLogOnFailure():
    """Re-raise a ``WorkerError`` with the worker's stderr in its message, so a failed self-test says why even when
    the panel would show only the user-facing message."""
    try:
        yield
    except WorkerError as error:
        if not error.stderrTail or error.stderrTail in str(error):
            raise
        raise WorkerError(f"{error}\n\nWorker log (stderr):\n{error.stderrTail}", error.errorType, error.exitCode,
                          error.stderrTail) from error


def tinyModel(folder: str, workerCommand: list[str] | None = None) -> str:
    """Write an untrained tiny-preset checkpoint with the worker's Python (torch stays out of this process)."""
    python = (workerCommand or EnhanceLogic().workerCommand())[0]
    path = os.path.join(folder, "tiny.pt")
    code = ("import torch; from M2DiffSlicer.model.config import model_config; "
            "from M2DiffSlicer.model.unet import build_model; "
            "from M2DiffSlicer.model.checkpoint import save_checkpoint; torch.manual_seed(0); "
            "config = model_config('tiny'); "
            f"save_checkpoint({path!r}, build_model(config), config, meta={{'purpose': 'M2DiffModule self-test'}})")
    completed = subprocess.run([python, "-c", code], env=EnhanceLogic().workerEnvironment(), capture_output=True,
                               text=True, **hiddenConsoleKwargs())
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"The worker's Python ({python}) could not write the self-test model "
                           f"(exit code {completed.returncode}):\n{tail}")
    return path


def checkResult(testCase, subject: Subject, result) -> None:
    """Assert what the self-test promises: geometry, units, subject hierarchy, transform, table, layout."""
    ldPet, output = subject.ldPet, result.outputVolume
    testCase.assertEqual(output.GetImageData().GetDimensions(), ldPet.GetImageData().GetDimensions())
    np.testing.assert_allclose(output.GetSpacing(), ldPet.GetSpacing(), atol=1e-5)
    np.testing.assert_allclose(output.GetOrigin(), ldPet.GetOrigin(), atol=1e-4)
    testCase.assertEqual(output.GetVoxelValueUnits().GetCodeValue(), "{SUVbw}g/ml")
    testCase.assertEqual(output.GetVoxelValueQuantity().GetCodeValue(), "126400")
    enhanced = slicer.util.arrayFromVolume(output)
    testCase.assertTrue(np.isfinite(enhanced).all())

    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(ldPet.GetScene())
    testCase.assertEqual(shNode.GetItemParent(shNode.GetItemByDataNode(output)), subject.studyItem)
    testCase.assertIsNotNone(result.transformNode)
    testCase.assertEqual(subject.t1.GetTransformNodeID(), result.transformNode.GetID())

    table = result.tableNode
    testCase.assertEqual(table.GetColumnName(0), "Segment")
    testCase.assertEqual([table.GetCellText(row, 0) for row in range(table.GetNumberOfRows())],
                         list(SEGMENT_NAMES.values()))
    testCase.assertEqual(table.GetColumnUnitLabel(RoiTable.columnName("enhanced", "mean")),
                         "Standardized Uptake Value body weight")

    layoutNode = ldPet.GetScene().GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    testCase.assertEqual(layoutNode.GetViewArrangement(), ComparisonLayout.COMPARISON_LAYOUT_ID)
    backgrounds = []
    for name in ("Red", "Yellow", "Green"):
        compositeNode = ComparisonLayout.compositeNodeByLayoutName(ldPet.GetScene(), name)
        backgrounds.append(compositeNode.GetBackgroundVolumeID())
    testCase.assertEqual(backgrounds, [ldPet.GetID(), output.GetID(), subject.t1.GetID()])
