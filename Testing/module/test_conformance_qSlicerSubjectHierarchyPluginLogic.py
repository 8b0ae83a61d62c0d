"""The harness's subject hierarchy stand-in (slicer_harness/app.py SubjectHierarchyItems) against Slicer's
Modules/Loadable/SubjectHierarchy/Widgets/qSlicerSubjectHierarchyPluginLogic.cxx (onNodeAdded and
onNodeAboutToBeRemoved, v5.10.0 and v5.12.0), the Qt class that gives each new data node its item in Slicer.
The items themselves are slicer-core's real vtkMRMLSubjectHierarchyNode."""

import slicer


def shItem(node) -> int:
    return slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(slicer.mrmlScene).GetItemByDataNode(node)


def test_added_data_node_gets_an_item_under_the_scene(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pet")
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shItem(volume) and shNode.GetItemParent(shItem(volume)) == shNode.GetSceneItemID()


def test_node_hidden_from_editors_gets_no_item(scene):
    # onNodeAdded: "abort if invalid or hidden node".
    volume = slicer.vtkMRMLScalarVolumeNode()
    volume.SetHideFromEditors(True)
    scene.AddNode(volume)
    assert not shItem(volume)


def test_node_added_while_importing_a_scene_gets_no_item(scene):
    # onNodeAdded: "Don't add to subject hierarchy automatically one-by-one if importing scene".
    scene.StartState(slicer.vtkMRMLScene.ImportState)
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "imported")
    scene.EndState(slicer.vtkMRMLScene.ImportState)
    assert not shItem(volume)


def test_removed_data_node_loses_its_item(scene):
    volume = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "pet")
    item = shItem(volume)
    scene.RemoveNode(volume)
    shNode = slicer.vtkMRMLSubjectHierarchyNode.GetSubjectHierarchyNode(scene)
    assert shNode.GetItemDataNode(item) is None and shNode.GetItemName(item) == ""
