"""Move volumes, labelmaps and transforms between the MRML scene and the worker's files.

Only MRML storage nodes are used (not ``slicer.util.saveNode``/``loadVolume``), so the same code runs in Slicer and
on slicer-core without the application's IO manager.
"""

import slicer
import vtk


def writeVolume(volumeNode: "slicer.vtkMRMLVolumeNode", path: str) -> None:
    """Write ``volumeNode`` (scalar or labelmap) to ``path`` (.nii.gz) with its geometry; raise on failure."""
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    storageNode.SetUseCompression(True)
    if not storageNode.WriteData(volumeNode):
        raise OSError(f"Could not write volume '{volumeNode.GetName()}' to {path}")


def matrixToFrameOrRaise(node, frameTransformNode, role: str) -> vtk.vtkMatrix4x4:
    """The matrix from ``node``'s parent frame to the frame under ``frameTransformNode`` (None: the world).

    The worker sees files, not Slicer's transforms: every input must reach it in the PET's own (local) coordinates.
    Only linear transforms can be folded into a file's geometry, so a non-linear one is refused with what to do.
    """
    for transformNode in (node.GetParentTransformNode(), frameTransformNode):
        if transformNode is not None and not transformNode.IsTransformToWorldLinear():
            raise ValueError(f"The {role} '{node.GetName()}' or the low-dose PET is under the non-linear transform "
                             f"'{transformNode.GetName()}'; harden it (Transforms module) or remove it first")
    matrix = vtk.vtkMatrix4x4()
    slicer.vtkMRMLTransformNode.GetMatrixTransformBetweenNodes(node.GetParentTransformNode(), frameTransformNode,
                                                                matrix)
    return matrix


def writeVolumeInFrame(volumeNode, frameTransformNode, path: str, role: str) -> vtk.vtkMatrix4x4:
    """Write ``volumeNode`` where Slicer shows it, in the coordinates of the frame under ``frameTransformNode`` (the
    PET's parent transform); return the matrix from the volume's parent frame to that frame. The user's node and
    its transform stay as they are."""
    toFrame = matrixToFrameOrRaise(volumeNode, frameTransformNode, role)
    if _isIdentity(toFrame):
        writeVolume(volumeNode, path)
        return toFrame
    ijkToRas, placed = vtk.vtkMatrix4x4(), vtk.vtkMatrix4x4()
    volumeNode.GetIJKToRASMatrix(ijkToRas)
    vtk.vtkMatrix4x4.Multiply4x4(toFrame, ijkToRas, placed)
    columns = [[placed.GetElement(row, column) for row in range(3)] for column in range(3)]
    for first, second in ((0, 1), (0, 2), (1, 2)):
        dot = sum(a * b for a, b in zip(columns[first], columns[second]))
        norms = sum(a * a for a in columns[first]) ** 0.5 * sum(b * b for b in columns[second]) ** 0.5
        if abs(dot) > 1e-6 * norms:
            # A file stores spacing and directions only: a sheared grid cannot be written without resampling.
            raise ValueError(f"The {role} '{volumeNode.GetName()}' is sheared by its transform relative to the "
                             "low-dose PET; harden the transform (Transforms module) first")
    # A detached copy sharing the voxels: the user's node is never modified.
    placedVolume = volumeNode.NewInstance()
    placedVolume.SetIJKToRASMatrix(placed)
    placedVolume.SetAndObserveImageData(volumeNode.GetImageData())
    writeVolume(placedVolume, path)
    return toFrame


def _isIdentity(matrix: vtk.vtkMatrix4x4) -> bool:
    return all(abs(matrix.GetElement(i, j) - (i == j)) < 1e-12 for i in range(4) for j in range(4))


def readVolumeInto(path: str, volumeNode: "slicer.vtkMRMLScalarVolumeNode") -> None:
    """Replace the voxels and geometry of ``volumeNode`` by the image file at ``path``; raise on failure."""
    storageNode = slicer.vtkMRMLVolumeArchetypeStorageNode()
    storageNode.SetFileName(path)
    if not storageNode.ReadData(volumeNode):
        raise OSError(f"Could not read the worker's output volume {path}")


def writeRoiLabelmap(roiNode, referenceVolume, path: str) -> dict[int, str]:
    """Write an ROI segmentation or labelmap as a labelmap on the PET grid; return {label value: name}.

    Segments are exported in segment order with values 1..N, so the names come from the segmentation itself.
    Labelmap names come from the labelmap's colour table where it has one.
    """
    if roiNode.IsA("vtkMRMLSegmentationNode"):
        segmentation = roiNode.GetSegmentation()
        segmentIds = vtk.vtkStringArray()
        names = {}
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            segmentIds.InsertNextValue(segmentId)
            names[index + 1] = segmentation.GetSegment(segmentId).GetName()
        scene = roiNode.GetScene()
        # The export needs its labelmap in the scene and adds a colour table too; everything it adds is removed.
        existing = {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}
        labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "M2DiffRoiExport")
        try:
            if not slicer.vtkSlicerSegmentationsModuleLogic.ExportSegmentsToLabelmapNode(
                roiNode, segmentIds, labelmap, referenceVolume
            ):
                raise ValueError(f"Could not export segmentation '{roiNode.GetName()}' to a labelmap")
            writeVolume(labelmap, path)
        finally:
            added = [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())
                     if scene.GetNthNode(i).GetID() not in existing]
            for node in added:
                scene.RemoveNode(node)
        return names
    if roiNode.IsA("vtkMRMLLabelMapVolumeNode"):
        # (The segmentation export above already resamples into the reference volume's frame.)
        writeVolumeInFrame(roiNode, referenceVolume.GetParentTransformNode(), path, "ROI labelmap")
        return _labelNamesFromColors(roiNode)
    raise ValueError(f"ROI must be a segmentation or labelmap volume node, got {roiNode.GetClassName()}")


def _labelNamesFromColors(labelmapNode) -> dict[int, str]:
    displayNode = labelmapNode.GetDisplayNode()
    colorNode = displayNode.GetColorNode() if displayNode else None
    if colorNode is None:
        return {}
    return {
        value: colorNode.GetColorName(value)
        for value in range(1, colorNode.GetNumberOfColors())
        if colorNode.GetColorName(value)
    }


def readTransformFromParentRAS(path: str) -> vtk.vtkMatrix4x4:
    """Read the worker's T1->PET ``.tfm`` and return Slicer's "from parent" matrix in RAS.

    The file holds an ITK transform T in the resampling convention and LPS coordinates: for a point p on the PET
    (fixed) grid, T(p) = A p + b is where to sample the T1 (moving) image, so T maps PET space -> T1 space.
    Slicer keeps transforms as "to parent" (child -> world) matrices; putting the T1 under a transform that
    brings it onto the PET needs to-parent = T^-1, i.e. from-parent = T. LPS and RAS differ by
    F = diag(-1, -1, 1), which is its own inverse, so in RAS: from-parent = F [A b; 0 1] F.
    That is exactly the conversion ``vtkMRMLTransformStorageNode`` applies when Slicer loads an ITK transform
    file, so the file is read with it (any linear ITK transform type works) and the matrix taken from the node.
    """
    transformNode = slicer.vtkMRMLLinearTransformNode()
    storageNode = slicer.vtkMRMLTransformStorageNode()
    storageNode.SetFileName(path)
    # The storage node reports errors through the scene it belongs to; a private scene keeps the user's clean.
    privateScene = slicer.vtkMRMLScene()
    privateScene.AddNode(storageNode)
    privateScene.AddNode(transformNode)
    if not storageNode.ReadData(transformNode):
        raise OSError(f"Could not read the worker's registration transform {path}")
    matrix = vtk.vtkMatrix4x4()
    if not transformNode.GetMatrixTransformFromParent(matrix):
        raise ValueError(f"The registration transform in {path} is not linear")
    return matrix


def copyPetQuantity(sourceVolume, targetVolume) -> None:
    """Copy the voxel quantity (e.g. DCM 126400 SUV) and units (e.g. UCUM {SUVbw}g/ml) when the source has them."""
    for getter, setter in (
        ("GetVoxelValueQuantity", "SetVoxelValueQuantity"),
        ("GetVoxelValueUnits", "SetVoxelValueUnits"),
    ):
        entry = getattr(sourceVolume, getter)()
        if entry is not None:
            copied = slicer.vtkCodedEntry()
            copied.Copy(entry)
            getattr(targetVolume, setter)(copied)


def applyPetDisplay(sourceVolume, targetVolume, petColorNodeId: str, matchWindowLevel: bool = True) -> None:
    """Show ``targetVolume`` like the source PET: its colour node when not grey (else PET-DICOM) and, so that the
    side-by-side comparison maps equal uptake to equal colour, the source's window/level (``matchWindowLevel``)."""
    targetVolume.CreateDefaultDisplayNodes()
    targetDisplay = targetVolume.GetDisplayNode()
    sourceDisplay = sourceVolume.GetDisplayNode()
    colorNodeId = petColorNodeId
    if sourceDisplay is not None and sourceDisplay.GetColorNodeID() not in (None, "", "vtkMRMLColorTableNodeGrey"):
        colorNodeId = sourceDisplay.GetColorNodeID()
    targetDisplay.SetAndObserveColorNodeID(colorNodeId)
    if (matchWindowLevel and sourceDisplay is not None and sourceDisplay.IsA("vtkMRMLScalarVolumeDisplayNode")
            and sourceDisplay.GetWindow() > 0):
        targetDisplay.AutoWindowLevelOff()
        targetDisplay.SetWindowLevel(sourceDisplay.GetWindow(), sourceDisplay.GetLevel())
    else:
        targetDisplay.AutoWindowLevelOn()


def showInPetColors(volumeNode, petColorNodeId: str) -> None:
    """Give a grey-scale PET the PET colour map and, when its window is automatic, a 0 .. 99.5th-percentile window
    (auto window/level, made for CT/MR histograms, saturates PET). Choices the user made are left alone."""
    import numpy as np

    volumeNode.CreateDefaultDisplayNodes()
    display = volumeNode.GetDisplayNode()
    if display.GetColorNodeID() in (None, "", "vtkMRMLColorTableNodeGrey"):
        display.SetAndObserveColorNodeID(petColorNodeId)
    if not display.GetAutoWindowLevel():
        return
    voxels = slicer.util.arrayFromVolume(volumeNode)
    top = float(np.percentile(voxels[voxels > 0], 99.5)) if (voxels > 0).any() else 1.0
    display.AutoWindowLevelOff()
    display.SetWindowLevel(top, top / 2)
