"""Stand-ins for the parts of 3D Slicer that slicer-core lacks (Qt, the application, module registry).

``install()`` builds a real MRML scene with the application's logics (``app.SlicerCore``) and registers, on the
real ``slicer`` package: ``slicer.mrmlScene``, ``slicer.app`` (connect/applicationLogic/commandOptions only),
``slicer.modules`` (module logics and paths), ``slicer.ScriptedLoadableModule``, ``slicer.parameterNodeWrapper``,
and ``slicer.i18n``; ``qt`` and ``ctk`` imports succeed but
any use raises, so code that needs the GUI fails loudly instead of being faked.
"""

import sys
import types

import slicer

from . import parameter_node_wrapper, scripted_loadable_module
from .app import SlicerCore


class QtUnavailable(types.ModuleType):
    """``import qt`` works (module files import it at top level); touching anything raises."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"{self.__name__}.{name} used: Qt is not available in the slicer-core harness")


class CommandOptions:
    testingEnabled = True
    noMainWindow = True


class AppStandIn:
    """``slicer.app`` without Qt: records signal connections so a test can emit ``startupCompleted()``."""

    def __init__(self, core: SlicerCore) -> None:
        self.core = core
        self.connections: dict[str, list] = {}

    def connect(self, signal: str, slot) -> None:
        self.connections.setdefault(signal, []).append(slot)

    def emit(self, signal: str) -> None:
        for slot in self.connections.get(signal, []):
            slot()

    def applicationLogic(self):
        return self.core.applicationLogic

    def commandOptions(self):
        return CommandOptions()

    def layoutManager(self):
        # slicer.util helpers check for None and then skip view updates, as in Slicer without a main window.
        return None

    def processEvents(self) -> None:
        pass


class ModuleStandIn:
    def __init__(self, logic, path: str = "") -> None:
        self._logic = logic
        self.path = path

    def logic(self):
        return self._logic


def tr(text: str) -> str:
    return text


def translate(context: str, text: str) -> str:
    return text


def install(modulePaths: dict[str, str]) -> SlicerCore:
    """Build the core and register the stand-ins; ``modulePaths`` maps module names to their .py files."""
    for name in ("qt", "ctk"):
        sys.modules.setdefault(name, QtUnavailable(name))
    core = SlicerCore()
    slicer.mrmlScene = core.scene
    slicer.app = AppStandIn(core)
    modules = types.SimpleNamespace()
    for name, logic in core.logics.items():
        setattr(modules, name.lower(), ModuleStandIn(logic))
    for name, path in modulePaths.items():
        setattr(modules, name.lower(), ModuleStandIn(None, path))
    modules.sampleDataSources = {}
    slicer.modules = modules
    slicer.moduleNames = types.SimpleNamespace(**{name: name for name in modulePaths})

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr, i18n.translate = tr, translate
    for name, module in (("slicer.i18n", i18n),
                         ("slicer.ScriptedLoadableModule", scripted_loadable_module),
                         ("slicer.parameterNodeWrapper", parameter_node_wrapper)):
        sys.modules[name] = module
        setattr(slicer, name.split(".")[1], module)
    return core

