"""What Slicer's parameter-node wrapper accepts, rejects and stores, at v5.10.0 and v5.12.0, on the paths the
module's parameter node uses (Base/Python/slicer/parameterNodeWrapper/serializers.py, wrapper.py, validators.py).

The harness runs Slicer's own files (slicer_harness/slicer_source); these tests pin the behaviours the module
depends on, so a harness that drifted from Slicer, or a Slicer release that changed them, fails here first.
"""

import pathlib
from typing import Annotated, Union

import pytest
import slicer

import slicer_harness
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode


@pytest.fixture(params=slicer_harness.SLICER_VERSIONS)
def pnw(request):
    """Slicer's parameterNodeWrapper package of one release, loaded under its own name."""
    return slicer_harness.loadSlicerSource(f"parameterNodeWrapper_{request.param.replace('.', '_')}",
                                           request.param, "slicer/parameterNodeWrapper")


def newParameterNode(scene):
    return scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode")


def test_union_of_nodes_without_none_cannot_write_its_default(pnw, scene):
    # serializers.py UnionSerializer.write: no member serializer takes None -> TypeError, raised when the wrapper
    # writes the default at construction (wrapper.py _initMethod), i.e. in the module's getParameterNode().
    @pnw.parameterNodeWrapper
    class WithoutNone:
        roi: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode]

    with pytest.raises(TypeError, match="Unable to write value 'None'"):
        WithoutNone(newParameterNode(scene))


def test_union_is_stored_as_one_parameter_per_member_type_named_by_its_index(pnw, scene):
    # serializers.py UnionSerializer: "<name>.<index of the value's type in the Union>".
    @pnw.parameterNodeWrapper
    class WithNone:
        roi: Union[vtkMRMLSegmentationNode, vtkMRMLLabelMapVolumeNode, None]

    node = newParameterNode(scene)
    wrapped = WithNone(node)
    assert node.GetParameterNamesAsCommaSeparatedList() == "roi.2"
    labelmap = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode")
    wrapped.roi = labelmap
    assert node.GetParameterNamesAsCommaSeparatedList() == "roi.1"
    assert node.GetNodeReferenceID("roi.1") == labelmap.GetID()
    assert wrapped.roi is labelmap


def test_single_node_type_defaults_to_none_and_rejects_other_classes(pnw, scene):
    # serializers.py NodeSerializer: an empty parameter plus a node reference of the same name.
    @pnw.parameterNodeWrapper
    class OneNode:
        volume: vtkMRMLScalarVolumeNode

    node = newParameterNode(scene)
    wrapped = OneNode(node)
    assert wrapped.volume is None and node.GetParameter("volume") == ""
    with pytest.raises(TypeError, match="Value must be of type"):
        wrapped.volume = scene.AddNewNodeByClass("vtkMRMLTableNode")


def test_path_default_is_stored_and_shown_as_a_dot(pnw, scene):
    # serializers.py PathSerializer.default is pathlib.Path(), written as str(): ".", which a ctkPathLineEdit shows.
    @pnw.parameterNodeWrapper
    class WithPath:
        model: pathlib.Path

    node = newParameterNode(scene)
    assert WithPath(node).model == pathlib.Path(".") and node.GetParameter("model") == "."


def test_within_range_rejects_with_the_range_in_the_message_and_keeps_the_value(pnw, scene):
    # validators.py WithinRange.validate.
    @pnw.parameterNodeWrapper
    class Ranged:
        steps: Annotated[int, pnw.WithinRange(1, 1000)] = 2

    wrapped = Ranged(newParameterNode(scene))
    with pytest.raises(ValueError, match=r"Value must be within range \[1, 1000\], is 0"):
        wrapped.steps = 0
    assert wrapped.steps == 2


def test_parameter_pack_members_are_stored_as_dotted_names(pnw, scene):
    # parameterPack.py: "<pack>.<member>"; enums by name (serializers.py EnumSerializer), bools "True"/"False".
    import enum

    class Mode(enum.Enum):
        FAST = "fast"
        FULL = "full"

    @pnw.parameterPack
    class Settings:
        mode: Mode = Mode.FULL
        flag: bool = False
        name: str = ""

    @pnw.parameterNodeWrapper
    class WithPack:
        settings: Settings

    node = newParameterNode(scene)
    wrapped = WithPack(node)
    wrapped.settings.mode = Mode.FAST
    wrapped.settings.flag = True
    assert node.GetParameterNamesAsCommaSeparatedList() == "settings.flag,settings.mode,settings.name"
    assert (node.GetParameter("settings.mode"), node.GetParameter("settings.flag"),
            node.GetParameter("settings.name")) == ("FAST", "True", "")


def test_gui_connection_needs_qt_and_fails_loudly_in_the_harness(pnw, scene):
    # wrapper.py connectGui walks the widget tree with qt.QWidget: without Qt it must raise, not pretend to bind.
    @pnw.parameterNodeWrapper
    class Plain:
        steps: int = 1

    with pytest.raises((RuntimeError, AttributeError)):
        Plain(newParameterNode(scene)).connectGui(object())


def test_harness_session_runs_slicers_own_wrapper():
    wrapperFile = pathlib.Path(slicer.parameterNodeWrapper.__file__)
    assert wrapperFile.parent.parent.parent.parent == pathlib.Path(slicer_harness.SOURCE_DIR)
