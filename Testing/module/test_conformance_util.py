"""The harness runs slicer-core's own slicer/util.py (Base/Python/slicer/util.py of its build); every helper the
module calls exists there and in Slicer's util.py at v5.10.0 and v5.12.0 (checked in the source; reloadScriptedModule
puts the module in sys.modules before executing it at both tags, which test_module_panel's Reload test follows)."""

import ast
import os

import slicer

from conftest import MODULE_DIR


def helpersTheModuleCalls() -> set[str]:
    names = set()
    for root, _, files in os.walk(MODULE_DIR):
        for fileName in files:
            if not fileName.endswith(".py"):
                continue
            with open(os.path.join(root, fileName), encoding="utf-8") as stream:
                tree = ast.parse(stream.read())
            for node in ast.walk(tree):
                if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute)
                        and node.value.attr == "util" and isinstance(node.value.value, ast.Name)
                        and node.value.value.id == "slicer"):
                    names.add(node.attr)
                if isinstance(node, ast.ImportFrom) and node.module == "slicer.util":
                    names |= {alias.name for alias in node.names}
    return names


def test_every_slicer_util_helper_the_module_calls_is_slicers_own():
    names = helpersTheModuleCalls()
    assert {"tryWithErrorDisplay", "loadUI", "VTKObservationMixin"} <= names, "the scan found too little"
    missing = sorted(name for name in names if not hasattr(slicer.util, name))
    assert missing == []
    assert slicer.util.__file__.endswith(os.path.join("slicer", "util.py"))
