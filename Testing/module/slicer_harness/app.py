"""What the Slicer application sets up at start-up, done on a slicer-core MRML scene (no Qt, no GL).

Real components only: the application logic with the Colors, Volumes, Segmentations, Tables, Plots, Transforms and
Subject Hierarchy module logics wired as Slicer wires them, a layout logic, and one slice logic per slice node. Two
small stand-ins replace Qt pieces: ``LayoutManagerStandIn`` (creates a slice logic for each slice view the layout
asks for, as qMRMLLayoutManager does) and ``SubjectHierarchyItems`` (creates a subject hierarchy item for each data
node added, as the subject hierarchy plugin logic does).
"""

import atexit
import shutil
import tempfile

import slicer
import vtk


class SubjectHierarchyItems:
    """Keep subject hierarchy items for data nodes, like qSlicerSubjectHierarchyPluginLogic's onNodeAdded and
    onNodeAboutToBeRemoved (Modules/Loadable/SubjectHierarchy/Widgets/qSlicerSubjectHierarchyPluginLogic.cxx)."""

    DATA_CLASSES = ("vtkMRMLVolumeNode", "vtkMRMLSegmentationNode", "vtkMRMLTableNode", "vtkMRMLTransformNode",
                    "vtkMRMLPlotChartNode", "vtkMRMLModelNode", "vtkMRMLMarkupsNode")

    def __init__(self, scene) -> None:
        self.scene = scene
        self.tags = [scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, self._onNodeAdded),
                     scene.AddObserver(slicer.vtkMRMLScene.NodeAboutToBeRemovedEvent, self._onNodeAboutToBeRemoved)]

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAdded(self, caller, event, node) -> None:
        if self.scene.IsImporting() or node.GetHideFromEditors() or not any(node.IsA(n) for n in self.DATA_CLASSES):
            return
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        if not shNode.GetItemByDataNode(node):
            shNode.CreateItem(shNode.GetSceneItemID(), node)

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAboutToBeRemoved(self, caller, event, node) -> None:
        if self.scene.IsClosing() or node.IsA("vtkMRMLSubjectHierarchyNode"):
            return
        shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(self.scene)
        itemId = shNode.GetItemByDataNode(node)
        if itemId:
            shNode.RemoveItem(itemId, False, False)


class LayoutManagerStandIn:
    """Keeps one ``vtkMRMLSliceLogic`` per slice node, as qMRMLLayoutManager does for each slice view it shows."""

    def __init__(self, scene, applicationLogic) -> None:
        self.scene = scene
        self.applicationLogic = applicationLogic
        self.sliceLogics = vtk.vtkCollection()
        applicationLogic.SetSliceLogics(self.sliceLogics)
        self.layoutLogic = slicer.vtkMRMLLayoutLogic()
        self.layoutLogic.SetMRMLApplicationLogic(applicationLogic)
        self.layoutLogic.SetMRMLScene(scene)
        self.tag = scene.AddObserver(slicer.vtkMRMLScene.NodeAddedEvent, self._onNodeAdded)
        self.updateSliceLogics()

    @vtk.calldata_type(vtk.VTK_OBJECT)
    def _onNodeAdded(self, caller, event, node) -> None:
        if node.IsA("vtkMRMLSliceNode"):
            self.updateSliceLogics()

    def updateSliceLogics(self) -> None:
        known = {self.sliceLogics.GetItemAsObject(i).GetSliceNode().GetID()
                 for i in range(self.sliceLogics.GetNumberOfItems())
                 if self.sliceLogics.GetItemAsObject(i).GetSliceNode() is not None}
        for index in range(self.scene.GetNumberOfNodesByClass("vtkMRMLSliceNode")):
            sliceNode = self.scene.GetNthNodeByClass(index, "vtkMRMLSliceNode")
            if sliceNode.GetID() in known:
                continue
            sliceLogic = slicer.vtkMRMLSliceLogic()
            sliceLogic.SetMRMLApplicationLogic(self.applicationLogic)
            sliceLogic.SetMRMLScene(self.scene)
            sliceLogic.SetSliceNode(sliceNode)
            self.sliceLogics.AddItem(sliceLogic)

    def sliceLogic(self, layoutName: str):
        return self.applicationLogic.GetSliceLogicByLayoutName(layoutName)


class SlicerCore:
    """The scene and logics of a started Slicer application."""

    def __init__(self) -> None:
        self.scene = slicer.vtkMRMLScene()
        # qSlicerCoreApplication gives the scene a cache manager; Sample Data downloads into its remote cache.
        cacheManager = slicer.vtkCacheManager()
        cacheDir = tempfile.mkdtemp(prefix="M2DiffSlicerCache-")
        atexit.register(shutil.rmtree, cacheDir, True)
        cacheManager.SetRemoteCacheDirectory(cacheDir)
        self.scene.SetCacheManager(cacheManager)
        self.applicationLogic = slicer.vtkSlicerApplicationLogic()
        self.applicationLogic.SetMRMLScene(self.scene)
        self.logics = {}
        for name, logicClass in (
            ("Colors", slicer.vtkSlicerColorLogic),
            ("Volumes", slicer.vtkSlicerVolumesLogic),
            ("Segmentations", slicer.vtkSlicerSegmentationsModuleLogic),
            ("Tables", slicer.vtkSlicerTablesLogic),
            ("Plots", slicer.vtkSlicerPlotsLogic),
            ("Transforms", slicer.vtkSlicerTransformLogic),
            ("SubjectHierarchy", slicer.vtkSlicerSubjectHierarchyModuleLogic),
        ):
            logic = logicClass()
            logic.SetMRMLApplicationLogic(self.applicationLogic)
            logic.SetMRMLScene(self.scene)
            self.applicationLogic.SetModuleLogic(name, logic)
            self.logics[name] = logic
        self.logics["Colors"].AddDefaultColorNodes()
        self.shItems = SubjectHierarchyItems(self.scene)
        self.addDefaultViews()
        self.layoutManager = LayoutManagerStandIn(self.scene, self.applicationLogic)

    def addDefaultViews(self) -> None:
        """Slice orientation presets (Slicer adds them at start-up and after each scene clear)."""
        slicer.vtkMRMLSliceNode.AddDefaultSliceOrientationPresets(self.scene, True)
