"""Behaviours of Slicer's Base/Python/slicer/ScriptedLoadableModule.py (identical at v5.10.0 and v5.12.0, run here
unmodified from slicer_harness/slicer_source) that the module depends on."""

import os

import pytest
import slicer

import M2DiffModule
from slicer_harness import ModuleParent


def test_logic_parameter_node_is_a_singleton_tagged_with_the_module_name(scene):
    # ScriptedLoadableModuleLogic.getParameterNode / createParameterNode.
    first = M2DiffModule.M2DiffModuleLogic().getParameterNode().parameterNode
    second = M2DiffModule.M2DiffModuleLogic().getParameterNode().parameterNode
    assert first is second
    assert (first.GetSingletonTag(), first.GetAttribute("ModuleName")) == ("M2DiffModule", "M2DiffModule")


def test_base_looks_for_the_icon_only_next_to_the_module_file(tmp_path):
    # ScriptedLoadableModule.__init__: <dir of parent.path>/Resources/Icons/<ModuleName>.png, else no icon; a
    # source checkout keeps Resources/ one folder up, hence M2DiffModule sets its icon itself.
    class Probe(slicer.ScriptedLoadableModule.ScriptedLoadableModule):
        pass

    parent = ModuleParent(str(tmp_path / "Probe.py"))
    Probe(parent)
    assert parent.icon is None
    (tmp_path / "Resources" / "Icons").mkdir(parents=True)
    (tmp_path / "Resources" / "Icons" / "Probe.png").write_bytes(b"png")
    Probe(parent)
    assert parent.icon.fileName == os.path.join(str(tmp_path), "Resources/Icons", "Probe.png")


def test_module_registers_its_self_test(monkeypatch):
    # ScriptedLoadableModule.__init__ adds runTest to slicer.selfTests, which Slicer's SelfTests module runs.
    monkeypatch.setattr(slicer, "selfTests", {}, raising=False)
    module = M2DiffModule.M2DiffModule(ModuleParent(M2DiffModule.__file__))
    assert slicer.selfTests["M2DiffModule"] == module.runTest


def test_widget_without_a_parent_needs_qt():
    # ScriptedLoadableModuleWidget.__init__ creates a qMRMLWidget when no parent is given: no Qt, no widget.
    with pytest.raises(RuntimeError, match="Qt is not available"):
        M2DiffModule.M2DiffModuleWidget()
