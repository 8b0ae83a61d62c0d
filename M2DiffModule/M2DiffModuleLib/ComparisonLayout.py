"""Linked side-by-side comparison layout: low-dose PET | enhanced PET | T1 (| uncertainty).

Everything here is MRML: the layout node gets a custom description and arrangement; Slicer's layout manager (or the
test harness standing in for it) reacts by creating the slice views, and the slice composite nodes are then found
by their layout names.
"""

# Custom layout ids, far from Slicer's built-in ones (< 1000) and from ids other extensions commonly use.
COMPARISON_LAYOUT_ID = 8601
COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID = 8602

# (layout name, view label, view colour): Slicer's usual slice view names and colours.
VIEWS = (
    ("Red", "1", "#F34A33"),
    ("Yellow", "2", "#EDD54C"),
    ("Green", "3", "#6EB04B"),
    ("Slice4", "4", "#8C8C8C"),
)


def layoutDescription(numberOfViews: int) -> str:
    """Layout XML with ``numberOfViews`` axial slice views in one row."""
    items = "".join(
        f'<item><view class="vtkMRMLSliceNode" singletontag="{name}">'
        f'<property name="orientation" action="default">Axial</property>'
        f'<property name="viewlabel" action="default">{label}</property>'
        f'<property name="viewcolor" action="default">{color}</property>'
        f"</view></item>"
        for name, label, color in VIEWS[:numberOfViews]
    )
    return f'<layout type="horizontal">{items}</layout>'


def _layoutNode(scene):
    layoutNode = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    if layoutNode is None:
        raise RuntimeError("The scene has no layout node (Slicer's layout manager creates it at start-up)")
    return layoutNode


def compositeNodeByLayoutName(scene, layoutName: str):
    for index in range(scene.GetNumberOfNodesByClass("vtkMRMLSliceCompositeNode")):
        compositeNode = scene.GetNthNodeByClass(index, "vtkMRMLSliceCompositeNode")
        if compositeNode.GetLayoutName() == layoutName:
            return compositeNode
    raise RuntimeError(f"No slice view named '{layoutName}' after switching to the comparison layout")


def showComparison(scene, volumes: list) -> list:
    """Show each volume of ``volumes`` (LD, enhanced, T1 or None, uncertainty or None) in its own linked view.

    None entries are skipped. Returns the slice composite nodes used, in view order.
    """
    shown = [volume for volume in volumes if volume is not None]
    layoutId = COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID if len(shown) == 4 else COMPARISON_LAYOUT_ID
    layoutNode = _layoutNode(scene)
    if not layoutNode.IsLayoutDescription(layoutId):
        layoutNode.AddLayoutDescription(layoutId, layoutDescription(4 if layoutId == COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID else 3))
    layoutNode.SetViewArrangement(layoutId)

    compositeNodes = []
    for (name, _, _), volume in zip(VIEWS, shown):
        compositeNode = compositeNodeByLayoutName(scene, name)
        compositeNode.SetBackgroundVolumeID(volume.GetID())
        compositeNode.SetForegroundVolumeID(None)
        compositeNode.SetLabelVolumeID(None)
        # Linked control: browsing slices in one view moves the others, so the same anatomy is compared.
        compositeNode.SetLinkedControl(True)
        compositeNodes.append(compositeNode)
    return compositeNodes
