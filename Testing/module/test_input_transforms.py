"""Inputs under transforms, on real MRML: the worker gets every input where Slicer shows it relative to the PET,
results sit under the PET's transform, and the T1 keeps the user's transform with the registration below it."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
import slicer
import vtk

import fake_worker
from conftest import sceneSnapshot
from M2DiffModule import M2DiffModuleLogic

FLIP = np.diag([-1.0, -1.0, 1.0, 1.0])  # RAS <-> LPS


def addTransform(name: str, degrees: float, axis: tuple, translation: tuple, parent=None):
    transform = vtk.vtkTransform()
    transform.Translate(*translation)
    transform.RotateWXYZ(degrees, *axis)
    node = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", name)
    node.SetMatrixTransformToParent(transform.GetMatrix())
    if parent is not None:
        node.SetAndObserveTransformNodeID(parent.GetID())
    return node


def toWorld(node) -> np.ndarray:
    """4x4 RAS matrix from ``node``'s own coordinates to the world (identity when it has no transform)."""
    matrix = vtk.vtkMatrix4x4()
    slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(node.GetParentTransformNode(), None, matrix)
    return asArray(matrix)


def asArray(matrix) -> np.ndarray:
    return np.array([[matrix.GetElement(i, j) for j in range(4)] for i in range(4)])


def ijkToRas(volume) -> np.ndarray:
    matrix = vtk.vtkMatrix4x4()
    volume.GetIJKToRASMatrix(matrix)
    return asArray(matrix)


def fileIjkToRas(geometry: dict) -> np.ndarray:
    """IJK -> RAS of a file the worker read, from its ITK (LPS) origin, spacing and direction."""
    matrix = np.eye(4)
    matrix[:3, :3] = np.array(geometry["direction"]).reshape(3, 3) @ np.diag(geometry["spacing"])
    matrix[:3, 3] = geometry["origin"]
    return FLIP @ matrix


def fakeRegistrationToParent() -> np.ndarray:
    """The fake worker's registration as a Slicer "to parent" RAS matrix: file (T1 as written) -> PET frame."""
    itk = sitk.Euler3DTransform(fake_worker.TRANSFORM["center"], *fake_worker.TRANSFORM["angles"],
                                fake_worker.TRANSFORM["translation"])
    fromParent = np.eye(4)
    fromParent[:3, :3] = np.array(itk.GetMatrix()).reshape(3, 3)
    fromParent[:3, 3] = itk.GetTranslation()
    fromParent[:3, 3] += np.array(itk.GetCenter()) - fromParent[:3, :3] @ itk.GetCenter()
    return np.linalg.inv(FLIP @ fromParent @ FLIP)


def runOk(subject, fakeWorker, tmp_path, **kwargs):
    keep = str(tmp_path / "kept.json")
    result = M2DiffModuleLogic(workerCommand=fakeWorker("ok", "--keep-json", keep)).process(
        subject.ldPet, subject.t1, kwargs.pop("roi", None), **kwargs)
    with open(keep) as stream:
        return result, json.load(stream)


CASES = {
    "no transforms": (False, False, False),
    "PET under a transform": (True, False, False),
    "T1 under the user's transform": (False, True, False),
    "both under their own transforms": (True, True, False),
    "both under the same transform": (True, False, True),
}


@pytest.mark.parametrize("petMoved,t1Moved,shared", CASES.values(), ids=CASES.keys())
def test_t1_lands_on_the_pet_in_the_world_and_keeps_the_users_transform(
        subject, fakeWorker, tmp_path, petMoved, t1Moved, shared):
    petTransform = addTransform("study placement", 20.0, (0, 0, 1), (12.0, -7.0, 4.0)) if petMoved else None
    t1Transform = addTransform("user's T1 alignment", -8.0, (1, 0.3, 0), (-3.0, 5.0, 9.0)) if t1Moved else None
    if petTransform is not None:
        subject.ldPet.SetAndObserveTransformNodeID(petTransform.GetID())
    if shared:
        t1Transform = petTransform
    if t1Transform is not None:
        subject.t1.SetAndObserveTransformNodeID(t1Transform.GetID())
    petWorld, t1WorldBefore = toWorld(subject.ldPet), toWorld(subject.t1)
    userMatrixBefore = asArray(t1Transform.GetMatrixTransformToParent()) if t1Transform else None

    result, kept = runOk(subject, fakeWorker, tmp_path)

    # The worker saw the T1 where Slicer showed it, in the PET's own coordinates.
    t1ToPetFrame = np.linalg.inv(petWorld) @ t1WorldBefore
    np.testing.assert_allclose(fileIjkToRas(kept["files"]["t1"]), t1ToPetFrame @ ijkToRas(subject.t1), atol=1e-4)
    np.testing.assert_allclose(fileIjkToRas(kept["files"]["pet"]), ijkToRas(subject.ldPet), atol=1e-4)
    # Its registration, applied in the PET's frame and seen in the world, moves the T1 onto the PET.
    expectedT1World = petWorld @ fakeRegistrationToParent() @ t1ToPetFrame
    np.testing.assert_allclose(toWorld(subject.t1), expectedT1World, atol=1e-6)
    # The user's transform is still the T1's, unchanged, above the new registration transform.
    assert subject.t1.GetParentTransformNode() is result.transformNode
    assert result.transformNode.GetParentTransformNode() is t1Transform
    if t1Transform is not None:
        np.testing.assert_array_equal(asArray(t1Transform.GetMatrixTransformToParent()), userMatrixBefore)


def test_enhanced_and_uncertainty_volumes_sit_under_the_pets_transform_voxel_on_voxel(subject, fakeWorker, tmp_path):
    petTransform = addTransform("study placement", 30.0, (0, 1, 0), (5.0, 6.0, -7.0))
    subject.ldPet.SetAndObserveTransformNodeID(petTransform.GetID())
    result, _ = runOk(subject, fakeWorker, tmp_path, uncertainty=True)
    for volume in (result.outputVolume, result.uncertaintyVolume):
        assert volume.GetParentTransformNode() is petTransform
        np.testing.assert_allclose(toWorld(volume) @ ijkToRas(volume),
                                   toWorld(subject.ldPet) @ ijkToRas(subject.ldPet), atol=1e-6)


def test_chosen_output_volume_moves_under_the_pets_transform(subject, fakeWorker, tmp_path):
    petTransform = addTransform("study placement", 15.0, (0, 0, 1), (1.0, 2.0, 3.0))
    subject.ldPet.SetAndObserveTransformNodeID(petTransform.GetID())
    output = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "chosen output")
    result, _ = runOk(subject, fakeWorker, tmp_path, output=output)
    assert result.outputVolume is output and output.GetParentTransformNode() is petTransform


def test_labelmap_roi_under_its_own_transform_reaches_the_worker_in_the_pets_frame(subject, fakeWorker, tmp_path):
    petTransform = addTransform("study placement", 10.0, (0, 0, 1), (2.0, 0.0, 0.0))
    roiTransform = addTransform("atlas placement", -5.0, (0, 1, 0), (0.0, 4.0, 0.0))
    subject.ldPet.SetAndObserveTransformNodeID(petTransform.GetID())
    labels = (slicer.util.arrayFromVolume(subject.ldPet) > 1.5).astype(np.int16)
    labelmap = slicer.util.addVolumeFromArray(labels, nodeClassName="vtkMRMLLabelMapVolumeNode", name="ROI labels")
    labelmap.SetIJKToRASDirectionMatrix(vtk.vtkMatrix4x4())
    labelmapMatrix = vtk.vtkMatrix4x4()
    subject.ldPet.GetIJKToRASMatrix(labelmapMatrix)
    labelmap.SetIJKToRASMatrix(labelmapMatrix)
    labelmap.SetAndObserveTransformNodeID(roiTransform.GetID())
    _, kept = runOk(subject, fakeWorker, tmp_path, roi=labelmap)
    expected = np.linalg.inv(toWorld(subject.ldPet)) @ toWorld(labelmap) @ ijkToRas(labelmap)
    np.testing.assert_allclose(fileIjkToRas(kept["files"]["roi"]), expected, atol=1e-4)


@pytest.mark.parametrize("kind", ["non-linear", "sheared"])
def test_t1_under_a_transform_that_a_file_cannot_hold_is_refused_and_the_scene_is_unchanged(
        subject, fakeWorker, kind):
    if kind == "non-linear":
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
        grid = vtk.vtkImageData()
        grid.SetDimensions(3, 3, 3)
        grid.AllocateScalars(vtk.VTK_DOUBLE, 3)
        gridTransform = slicer.vtkOrientedGridTransform()
        gridTransform.SetDisplacementGridData(grid)
        transform.SetAndObserveTransformFromParent(gridTransform)
    else:
        shear = vtk.vtkMatrix4x4()
        shear.SetElement(0, 1, 0.3)
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shear")
        transform.SetMatrixTransformToParent(shear)
    subject.t1.SetAndObserveTransformNodeID(transform.GetID())
    before = sceneSnapshot(slicer.mrmlScene)
    logic = M2DiffModuleLogic(workerCommand=fakeWorker("ok"))
    with pytest.raises(ValueError, match="T1 MRI 'Phantom T1'.*harden"):
        logic.process(subject.ldPet, subject.t1)
    assert sceneSnapshot(slicer.mrmlScene) == before
    assert subject.t1.GetParentTransformNode() is transform


def test_segmentation_roi_under_its_own_transform_is_exported_where_slicer_shows_it(subject, tmp_path):
    from M2DiffModuleLib import VolumeIO

    def centroidsLps(path) -> dict:
        statistics = sitk.LabelShapeStatisticsImageFilter()
        statistics.Execute(sitk.ReadImage(path))
        return {label: np.array(statistics.GetCentroid(label)) for label in statistics.GetLabels()}

    VolumeIO.writeRoiLabelmap(subject.roi, subject.ldPet, str(tmp_path / "before.nii.gz"))
    # One PET voxel (3 mm) to the right: Slicer's export resamples the segments into the PET's frame.
    subject.roi.SetAndObserveTransformNodeID(addTransform("shift", 0.0, (0, 0, 1), (3.0, 0.0, 0.0)).GetID())
    VolumeIO.writeRoiLabelmap(subject.roi, subject.ldPet, str(tmp_path / "after.nii.gz"))
    before, after = centroidsLps(tmp_path / "before.nii.gz"), centroidsLps(tmp_path / "after.nii.gz")
    assert sorted(before) == sorted(after) == [1, 2]
    for label in before:
        np.testing.assert_allclose(after[label] - before[label], [-3.0, 0.0, 0.0], atol=1e-6)  # LPS: -x is right
