"""The .ui file against the code: loads in Qt, declares its custom classes, has every widget the Widget uses, and its
SlicerParameterName bindings match the parameter node (names and widget kinds Slicer's GUI connectors accept)."""

import enum
import os
import pathlib
import re
import xml.etree.ElementTree as ET

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QtCore = pytest.importorskip("PySide6.QtCore", reason="PySide6-Essentials is needed for the .ui contract test")
from PySide6.QtUiTools import QUiLoader  # noqa: E402
from PySide6.QtWidgets import QApplication, QWidget  # noqa: E402

import slicer  # noqa: E402

from conftest import MODULE_DIR, REPO  # noqa: E402

UI_PATH = os.path.join(REPO, "Resources", "UI", "M2DiffModule.ui")

# Widget classes Slicer's parameterNodeWrapper GUI connectors accept per data type (guiConnectors.py).
CONNECTOR_WIDGETS = {
    bool: {"QCheckBox", "ctkCheckBox", "QPushButton", "ctkCheckablePushButton"},
    int: {"QSpinBox", "QSlider", "QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSpinBox",
          "qMRMLSpinBox", "QComboBox", "ctkComboBox"},
    float: {"QDoubleSpinBox", "ctkSliderWidget", "qMRMLSliderWidget", "ctkDoubleSpinBox", "qMRMLSpinBox"},
    str: {"QLineEdit", "QLabel", "QTextEdit", "QComboBox", "ctkComboBox"},
    pathlib.Path: {"ctkPathLineEdit", "ctkDirectoryButton"},
    enum.Enum: {"QComboBox", "ctkComboBox"},
    slicer.vtkMRMLNode: {"qMRMLNodeComboBox"},
}


# Parameters the Widget keeps in step with its widgets itself (M2DiffModuleWidget._updateModelPanel): the model
# picker shows labels but stores catalogue ids, and the file is a str ("" when unset), which no connector binds.
SYNCED_BY_HAND = {"engine.model": ("modelSelector", "QComboBox"),
                  "engine.modelFile": ("modelPathLineEdit", "ctkPathLineEdit")}


@pytest.fixture(scope="module")
def uiTree():
    return ET.parse(UI_PATH).getroot()


@pytest.fixture(scope="module")
def loaded():
    """(top widget, Qt warnings) from loading the .ui with QUiLoader."""
    app = QApplication.instance() or QApplication([])
    messages = []
    previous = QtCore.qInstallMessageHandler(lambda mode, context, message: messages.append(message))
    try:
        loader = QUiLoader()
        uiFile = QtCore.QFile(UI_PATH)
        assert uiFile.open(QtCore.QFile.ReadOnly)
        widget = loader.load(uiFile)
        uiFile.close()
    finally:
        QtCore.qInstallMessageHandler(previous)
    assert widget is not None, loader.errorString()
    yield widget, messages
    widget.deleteLater()
    del app


def widgetClasses(uiTree) -> dict[str, str]:
    return {w.get("name"): w.get("class") for w in uiTree.iter("widget")}


def bindings(uiTree) -> dict[str, str]:
    """SlicerParameterName -> widget class, read from the .ui XML."""
    result = {}
    for w in uiTree.iter("widget"):
        for p in w.findall("property"):
            if p.get("name") == "SlicerParameterName":
                result[p.find("string").text] = w.get("class")
    return result


def parameterNames(wrapperClass) -> dict[str, object]:
    """Every bindable name of the parameter node: top-level parameters and "pack.member" for packs."""
    from slicer.parameterNodeWrapper import isParameterPack, unannotatedType

    names = {}
    for name, info in wrapperClass.allParameters.items():
        datatype = unannotatedType(info.unalteredType)
        if isParameterPack(datatype):
            for member, memberInfo in datatype.allParameters.items():
                names[f"{name}.{member}"] = memberInfo.unalteredType
        else:
            names[name] = info.unalteredType
    return names


def connectorKey(annotated):
    from slicer.parameterNodeWrapper import isNodeOrUnionOfNodes, unannotatedType

    if isNodeOrUnionOfNodes(annotated):
        return slicer.vtkMRMLNode
    datatype = unannotatedType(annotated)
    for key in (bool, int, float, str, pathlib.Path):
        if datatype is key:
            return key
    if isinstance(datatype, type) and issubclass(datatype, enum.Enum):
        return enum.Enum
    raise AssertionError(f"no GUI connector for {annotated!r}")


def test_ui_loads_without_undeclared_widget_classes(loaded):
    widget, messages = loaded
    dropped = [m for m in messages if "unable to create a widget of the class" in m.lower()]
    assert dropped == []
    assert widget.objectName() == "M2DiffModule"


def test_every_ui_widget_used_by_the_module_exists_with_its_declared_class(loaded, uiTree):
    widget, _ = loaded
    with open(os.path.join(MODULE_DIR, "M2DiffModule.py"), encoding="utf-8") as stream:
        used = set(re.findall(r"self\.ui\.(\w+)", stream.read()))
    classes = widgetClasses(uiTree)
    assert used, "the module uses no self.ui widgets: the regex is wrong"
    missing = sorted(name for name in used if widget.findChild(QWidget, name) is None)
    assert missing == []
    expected = {"applyButton": "QPushButton", "progressBar": "QProgressBar", "statusLog": "QPlainTextEdit",
                "roiTableView": "qMRMLTableView", "inputStatusLabel": "QLabel", "modelInfoLabel": "QLabel",
                "modelPathLabel": "QLabel", **{widget: widgetClass for widget, widgetClass in SYNCED_BY_HAND.values()}}
    assert {name: classes[name] for name in expected} == expected


def test_slicer_parameter_names_match_the_parameter_node_fields(uiTree):
    import M2DiffModule

    names = set(parameterNames(M2DiffModule.M2DiffModuleParameterNode))
    assert set(SYNCED_BY_HAND) <= names
    assert set(bindings(uiTree)) == names - set(SYNCED_BY_HAND)


def test_model_picker_is_not_also_bound_by_slicers_connectors(uiTree):
    # A SlicerParameterName on these would make Slicer's connectors write the combo text / a Path into the strings.
    classes = widgetClasses(uiTree)
    bound = {w.get("name") for w in uiTree.iter("widget")
             if any(p.get("name") == "SlicerParameterName" for p in w.findall("property"))}
    for widget, widgetClass in SYNCED_BY_HAND.values():
        assert classes[widget] == widgetClass and widget not in bound


def test_each_bound_widget_is_a_kind_slicer_can_connect_to_its_parameter_type(uiTree):
    import M2DiffModule

    names = parameterNames(M2DiffModule.M2DiffModuleParameterNode)
    wrong = {name: (widgetClass, names[name]) for name, widgetClass in bindings(uiTree).items()
             if widgetClass not in CONNECTOR_WIDGETS[connectorKey(names[name])]}
    assert wrong == {}


def test_node_selectors_offer_exactly_the_node_types_of_their_parameters(loaded, uiTree):
    import M2DiffModule
    from slicer.parameterNodeWrapper import getNodeTypes

    widget, _ = loaded
    names = parameterNames(M2DiffModule.M2DiffModuleParameterNode)
    for name, widgetClass in bindings(uiTree).items():
        if widgetClass != "qMRMLNodeComboBox":
            continue
        selector = next(w for w in widget.findChildren(QWidget) if w.property("SlicerParameterName") == name)
        # Slicer's qMRMLNodeComboBox connector overwrites nodeTypes with getNodeTypes(); the .ui must not differ.
        assert tuple(selector.property("nodeTypes")) == getNodeTypes(names[name]), name
