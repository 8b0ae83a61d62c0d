"""The comparison layout on Slicer's real vtkMRMLLayoutLogic and slice logics (slicer-core), starting from the
views a user already has, as Slicer's layout logic treats existing views differently from new ones
(Libs/MRML/Logic/vtkMRMLLayoutLogic.cxx CreateMissingViews, v5.10.0 and v5.12.0)."""

import pytest
import slicer

from M2DiffModuleLib import ComparisonLayout


def volume(scene, name: str, spacing: float = 2.0):
    import numpy as np

    node = slicer.util.addVolumeFromArray(np.ones((20, 30, 40), dtype=np.float32), name=name)
    node.SetSpacing(spacing, spacing, spacing)
    return node


def sliceNode(name: str):
    return slicer.app.applicationLogic().GetSliceLogicByLayoutName(name).GetSliceNode()


@pytest.fixture
def fourUp(scene):
    """The user's usual four-up layout: Red axial, Yellow sagittal, Green coronal."""
    layoutNode = scene.GetSingletonNode("vtkMRMLLayoutNode", "vtkMRMLLayoutNode")
    layoutNode.SetViewArrangement(slicer.vtkMRMLLayoutNode.SlicerLayoutFourUpView)
    # Slice nodes outlive scene clears, as in Slicer: give them the orientations of a fresh session.
    for name, orientation in (("Red", "Axial"), ("Yellow", "Sagittal"), ("Green", "Coronal")):
        sliceNode(name).SetOrientation(orientation)
    assert [sliceNode(name).GetOrientation() for name in ("Red", "Yellow", "Green")] == [
        "Axial", "Sagittal", "Coronal"]
    return layoutNode


def test_comparison_after_four_up_shows_three_axial_views(scene, fourUp):
    volumes = [volume(scene, name) for name in ("LD", "Enhanced", "T1")]
    composites = ComparisonLayout.showComparison(scene, volumes)
    assert fourUp.GetViewArrangement() == ComparisonLayout.COMPARISON_LAYOUT_ID
    assert [sliceNode(name).GetOrientation() for name in ("Red", "Yellow", "Green")] == ["Axial"] * 3
    assert [c.GetBackgroundVolumeID() for c in composites] == [v.GetID() for v in volumes]
    assert all(c.GetLinkedControl() for c in composites)


def test_comparison_keeps_the_labels_and_colours_of_the_users_views(scene, fourUp):
    ComparisonLayout.showComparison(scene, [volume(scene, name) for name in ("LD", "Enhanced", "T1")])
    assert [sliceNode(name).GetLayoutLabel() for name in ("Red", "Yellow", "Green")] == ["R", "Y", "G"]


def test_mri_free_comparison_has_two_views_and_no_stale_third(scene, fourUp):
    volumes = [volume(scene, "LD"), volume(scene, "Enhanced")]
    composites = ComparisonLayout.showComparison(scene, [volumes[0], volumes[1], None, None])
    assert fourUp.GetViewArrangement() == ComparisonLayout.COMPARISON_TWO_VIEWS_LAYOUT_ID
    assert len(composites) == 2
    layoutViews = ComparisonLayout.layoutDescription(2)
    assert 'singletontag="Green"' not in layoutViews and layoutViews.count("<view ") == 2


def test_uncertainty_view_created_by_the_layout_is_axial_too(scene, fourUp):
    volumes = [volume(scene, name) for name in ("LD", "Enhanced", "T1", "Uncertainty")]
    ComparisonLayout.showComparison(scene, volumes)
    assert fourUp.GetViewArrangement() == ComparisonLayout.COMPARISON_WITH_UNCERTAINTY_LAYOUT_ID
    assert sliceNode("Slice4").GetOrientation() == "Axial"
    assert sliceNode("Slice4").GetLayoutLabel() == "4"


def test_field_of_view_is_fitted_to_the_shown_volume(scene, fourUp):
    # 40 x 30 x 20 voxels of 2 mm: an axial view must show at least the 80 mm x 60 mm extent, not Slicer's 250 mm.
    ComparisonLayout.showComparison(scene, [volume(scene, name) for name in ("LD", "Enhanced", "T1")])
    for name in ("Red", "Yellow", "Green"):
        fieldOfView = sliceNode(name).GetFieldOfView()
        assert 80 <= max(fieldOfView[0], fieldOfView[1]) < 250, (name, fieldOfView)


def test_one_volume_is_not_a_comparison(scene, fourUp):
    with pytest.raises(ValueError, match="2 to 4 volumes"):
        ComparisonLayout.showComparison(scene, [volume(scene, "LD"), None, None, None])
