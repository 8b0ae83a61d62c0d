"""Linked side-by-side comparison layout: low-dose PET | enhanced PET | T1 (| uncertainty).

Everything here is MRML: the layout node gets a custom description and arrangement; Slicer's layout manager (or the
test harness standing in for it) reacts by creating the slice views, and the slice composite nodes are then found
by their layout names.
"""

import slicer

# Custom layout ids per number of views, far from Slicer's built-in ones (< 1000) and from ids other extensions use.
COMPARISON_LAYOUT_ID = 8601  # LD | enhanced | T1, or LD | enhanced | uncertainty in MRI-free mode
COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID = 8602  # LD | enhanced | T1 | uncertainty
COMPARISON_TWO_VIEWS_LAYOUT_ID = 8603  # LD | enhanced (MRI-free)
LAYOUT_IDS = {2: COMPARISON_TWO_VIEWS_LAYOUT_ID, 3: COMPARISON_LAYOUT_ID, 4: COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID}

# (layout name, view label, view colour): Slicer's usual slice view names and colours.
VIEWS = (
    ("Red", "1", "#F34A33"),
    ("Yellow", "2", "#EDD54C"),
    ("Green", "3", "#6EB04B"),
    ("Slice4", "4", "#8C8C8C"),
)


def layoutDescription(numberOfViews: int) -> str:
    """Layout XML with ``numberOfViews`` axial slice views in one row.

    vtkMRMLLayoutLogic::CreateMissingViews applies "default" properties only to views it creates and "relayout"
    ones to views that already exist. Red, Yellow and Green always exist, so the orientation is given for both
    cases; label and colour only for a view the layout creates (Slice4), leaving the user's usual views as they are.
    """
    items = "".join(
        f'<item><view class="vtkMRMLSliceNode" singletontag="{name}">'
        f'<property name="orientation" action="relayout">Axial</property>'
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


def showComparison(scene, volumes: list, applicationLogic=None) -> list:
    """Show each volume of ``volumes`` (LD, enhanced, T1 or None, uncertainty or None) in its own linked axial view.

    None entries are skipped, so MRI-free mode gets two views (three with uncertainty). Each view's field of view is
    fitted to its volume through the slice logic of ``applicationLogic`` (default: Slicer's). Returns the slice
    composite nodes used, in view order.
    """
    applicationLogic = applicationLogic or slicer.app.applicationLogic()
    shown = [volume for volume in volumes if volume is not None]
    if not 2 <= len(shown) <= len(VIEWS):
        raise ValueError(f"The comparison shows 2 to {len(VIEWS)} volumes, got {len(shown)}")
    layoutId = LAYOUT_IDS[len(shown)]
    layoutNode = _layoutNode(scene)
    if not layoutNode.IsLayoutDescription(layoutId):
        layoutNode.AddLayoutDescription(layoutId, layoutDescription(len(shown)))
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
    for name, _, _ in VIEWS[:len(shown)]:
        # The views keep the field of view of whatever they showed before (e.g. a sagittal head) otherwise.
        applicationLogic.GetSliceLogicByLayoutName(name).FitSliceToAll()
    return compositeNodes
