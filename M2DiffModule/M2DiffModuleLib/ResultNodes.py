"""Turn a finished worker job's files into scene nodes: all of them, or none."""

from __future__ import annotations

import dataclasses
import json

import slicer

from . import ComparisonLayout, RoiTable, VolumeIO


@dataclasses.dataclass
class EnhanceResult:
    """Nodes a successful job added or filled, plus the worker's facts."""

    outputVolume: object
    uncertaintyVolume: object | None
    transformNode: object | None
    tableNode: object | None
    chartNode: object | None
    workerInfo: dict
    warnings: list[str]
    elapsedS: float


def addResultNodesOrRaise(inputs: dict, resultEvent: dict, startEvent: dict, warnings: list[str],
                          labelNames: dict[int, str], showResult: bool) -> EnhanceResult:
    """Create all result nodes, or none: any failure removes the nodes added so far and re-raises."""
    ldPet, t1, output = inputs["ldPet"], inputs["t1"], inputs["output"]
    scene = ldPet.GetScene()
    outputs = resultEvent.get("outputs", {})
    # Read every file before touching the scene.
    enhanced = _readDetachedVolume(outputs["output"])
    uncertainty = _readDetachedVolume(outputs["uncertainty_output"]) if outputs.get("uncertainty_output") else None
    matrix = registrationFromParent(VolumeIO.readTransformFromParentRAS(outputs["transform_output"]),
                                    inputs.get("t1ToPetFrame")) \
        if t1 is not None and outputs.get("transform_output") else None
    roiJson = None
    # Without a user ROI the engine reports its built-in atlas regions, which are shown too.
    if outputs.get("roi_json"):
        with open(outputs["roi_json"], encoding="utf-8") as roiFile:
            roiJson = json.load(roiFile)

    created = []
    displayBefore = _displayState(ldPet)
    try:
        if showResult:
            VolumeIO.showInPetColors(ldPet, petColorNodeId(scene))
        outputVolume = output
        if outputVolume is None:
            outputVolume = _addNode(scene, created, "vtkMRMLScalarVolumeNode", f"{ldPet.GetName()} enhanced")
        uncertaintyVolume = None
        if uncertainty is not None:
            uncertaintyVolume = _addNode(scene, created, "vtkMRMLScalarVolumeNode",
                                         f"{ldPet.GetName()} uncertainty")
            uncertaintyVolume.SetAndObserveTransformNodeID(ldPet.GetTransformNodeID())
            _assignVolume(uncertainty, uncertaintyVolume)
            VolumeIO.copyPetQuantity(ldPet, uncertaintyVolume)
            VolumeIO.applyPetDisplay(ldPet, uncertaintyVolume, petColorNodeId(scene), matchWindowLevel=False)
        transformNode = None
        if matrix is not None:
            transformNode = _addNode(scene, created, "vtkMRMLLinearTransformNode",
                                     f"{t1.GetName()} to {ldPet.GetName()}")
            transformNode.SetMatrixTransformFromParent(matrix)
            # Between the T1 and its own transform, which stays: the user's alignment is kept and refined.
            transformNode.SetAndObserveTransformNodeID(t1.GetTransformNodeID())
        tableNode = chartNode = None
        if roiJson is not None:
            tableNode = _addNode(scene, created, "vtkMRMLTableNode", f"{ldPet.GetName()} ROI uptake")
            RoiTable.fillRoiTable(tableNode, roiJson, ldPet, labelNames)
            chartNode = RoiTable.createUptakeChart(scene, tableNode, f"{ldPet.GetName()} ROI uptake chart")
            created.extend(_chartSeriesAndChart(chartNode))
        _placeInStudy(scene, ldPet, [node for node in created if not node.IsA("vtkMRMLPlotSeriesNode")])
        # Last: the only change to a node the user supplied, after everything that can fail.
        _assignVolume(enhanced, outputVolume)
        # The voxels are on the PET's own grid, so they belong under the PET's transform, wherever that is.
        outputVolume.SetAndObserveTransformNodeID(ldPet.GetTransformNodeID())
        VolumeIO.copyPetQuantity(ldPet, outputVolume)
        VolumeIO.applyPetDisplay(ldPet, outputVolume, petColorNodeId(scene))
    except Exception:
        for node in reversed(created):
            _removeNode(scene, node)
        _restoreDisplayState(ldPet, displayBefore)
        raise
    if transformNode is not None:
        # The T1 goes under the registration transform so the comparison shows it aligned with the PET.
        t1.SetAndObserveTransformNodeID(transformNode.GetID())
    if showResult:
        ComparisonLayout.showComparison(scene, [ldPet, outputVolume, t1, uncertaintyVolume])
    return EnhanceResult(outputVolume, uncertaintyVolume, transformNode, tableNode, chartNode, startEvent,
                         warnings, float(resultEvent.get("elapsed_s", 0.0)))


def registrationFromParent(fileFromParent, t1ToPetFrame) -> "vtk.vtkMatrix4x4":
    """The "from parent" matrix of the T1's new registration transform, which goes between the T1 and its parent.

    The worker registered the T1 as written, i.e. moved into the PET's frame by ``t1ToPetFrame`` (A, the user's
    transforms relative to the PET's); ``fileFromParent`` (M) maps the PET's frame to that file's. In the T1's
    parent frame the correction is the same map seen through A: from-parent = A^-1 M A (identity A: just M).
    """
    import vtk

    if t1ToPetFrame is None:
        return fileFromParent
    fromPetFrame, conjugated, result = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    vtk.vtkMatrix4x4.Invert(t1ToPetFrame, fromPetFrame)
    vtk.vtkMatrix4x4.Multiply4x4(fileFromParent, t1ToPetFrame, conjugated)
    vtk.vtkMatrix4x4.Multiply4x4(fromPetFrame, conjugated, result)
    return result


def petColorNodeId(scene) -> str:
    """Slicer's "PET-DICOM" procedural colour node, the DICOM standard PET palette (created by the Colors module at
    start-up). Not "PET-Heat": it is yellow from 40 % of the window up, which on a 0 .. 99.5th-percentile window
    leaves 94 % of a brain FDG scan (the sample subject) yellow to white, grey and white matter alike."""
    colorNodeId = "vtkMRMLPETProceduralColorNodePET-DICOM"
    if scene.GetNodeByID(colorNodeId) is None:
        raise RuntimeError(f"Colour node {colorNodeId} is missing: the Colors module has not initialised")
    return colorNodeId


def _displayState(volumeNode) -> tuple | None:
    display = volumeNode.GetDisplayNode()
    if display is None:
        return None
    return display.GetColorNodeID(), display.GetAutoWindowLevel(), display.GetWindow(), display.GetLevel()


def _restoreDisplayState(volumeNode, state: tuple | None) -> None:
    display = volumeNode.GetDisplayNode()
    if display is None:
        return
    if state is None:
        volumeNode.GetScene().RemoveNode(display)
        return
    colorNodeId, auto, window, level = state
    display.SetAndObserveColorNodeID(colorNodeId)
    display.SetWindowLevel(window, level)
    display.SetAutoWindowLevel(auto)


def _readDetachedVolume(path: str):
    volume = slicer.vtkMRMLScalarVolumeNode()
    VolumeIO.readVolumeInto(path, volume)
    return volume


def _assignVolume(source, target) -> None:
    import vtk

    ijkToRas = vtk.vtkMatrix4x4()
    source.GetIJKToRASMatrix(ijkToRas)
    wasModifying = target.StartModify()
    target.SetIJKToRASMatrix(ijkToRas)
    target.SetAndObserveImageData(source.GetImageData())
    target.EndModify(wasModifying)


def _addNode(scene, created: list, className: str, name: str):
    node = scene.AddNewNodeByClass(className, scene.GenerateUniqueName(name))
    created.append(node)
    return node


def _chartSeriesAndChart(chartNode) -> list:
    scene = chartNode.GetScene()
    series = [scene.GetNodeByID(chartNode.GetNthPlotSeriesNodeID(i))
              for i in range(chartNode.GetNumberOfPlotSeriesNodes())]
    return series + [chartNode]


def _removeNode(scene, node) -> None:
    if node.IsA("vtkMRMLDisplayableNode"):
        for index in reversed(range(node.GetNumberOfDisplayNodes())):
            scene.RemoveNode(node.GetNthDisplayNode(index))
    if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is not None:
        scene.RemoveNode(node.GetStorageNode())
    scene.RemoveNode(node)


def _placeInStudy(scene, inputNode, nodes: list) -> None:
    """Put ``nodes`` next to the input in the subject hierarchy: under its study, else under its parent."""
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    inputItem = shNode.GetItemByDataNode(inputNode)
    parentItem = shNode.GetSceneItemID()
    if inputItem:
        studyItem = shNode.GetItemAncestorAtLevel(inputItem, slicer.vtkMRMLSubjectHierarchyConstants.GetDICOMLevelStudy())
        parentItem = studyItem or shNode.GetItemParent(inputItem)
    for node in nodes:
        item = shNode.GetItemByDataNode(node)
        if item:
            shNode.SetItemParent(item, parentItem)
        else:
            # Without the application's subject hierarchy plugins nobody created the item yet.
            shNode.CreateItem(parentItem, node)
