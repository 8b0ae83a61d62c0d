"""Stand-ins for the parts of 3D Slicer that slicer-core lacks (Qt, the application, module registry).

``install()`` builds a real MRML scene with the application's logics (``app.SlicerCore``) and registers, on the
real ``slicer`` package: ``slicer.mrmlScene``, ``slicer.app`` (signal connections, application logic, command
options, version numbers, documentation URLs; no Qt), ``slicer.modules`` (module logics and paths) and
``slicer.i18n`` (identity translation). ``slicer.ScriptedLoadableModule`` and
``slicer.parameterNodeWrapper`` are Slicer's own files, vendored unmodified from a release tag
(``slicer_source/README.md``); ``SampleData`` is Slicer's SampleData.py of the same tag. ``qt`` and ``ctk`` imports
succeed and their class names can be subclassed or named in annotations (Slicer's files do both at import), but
creating any Qt object raises, so code that needs the GUI fails loudly instead of being faked.
"""

import importlib.util
import os
import sys
import types

import slicer

from .app import SlicerCore

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "slicer_source")
# Slicer releases whose Python files are vendored; the default is what a plain `pytest` session runs.
SLICER_VERSIONS = ("5.10.0", "5.12.0")
DEFAULT_SLICER_VERSION = "5.12.0"

# qMRML/qSlicer widget classes Slicer's parameterNodeWrapper names in annotations at import time.
SLICER_WIDGET_CLASSES = ("qMRMLNodeComboBox", "qMRMLRangeWidget", "qMRMLSliderWidget", "qMRMLSpinBox",
                         "qSlicerWidget", "qMRMLWidget")


def _unavailableClass(moduleName: str, name: str) -> type:
    def __init__(self, *args, **kwargs):
        raise RuntimeError(f"{moduleName}.{name} used: Qt is not available in the slicer-core harness")

    return type(name, (), {"__init__": __init__, "__module__": moduleName})


class QtUnavailable(types.ModuleType):
    """``import qt`` works and ``qt.QColor`` is a class (Slicer subclasses it at import); instances raise."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._classes: dict[str, type] = {}

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._classes:
            self._classes[name] = _unavailableClass(self.__name__, name)
        return self._classes[name]


class QIcon:
    """The one Qt value the module creates at load (its icon); keeps the file name so a test can check it."""

    def __init__(self, fileName: str = "") -> None:
        self.fileName = fileName

    def isNull(self) -> bool:
        return not os.path.isfile(self.fileName)


class CommandOptions:
    testingEnabled = True
    noMainWindow = True


class AppStandIn:
    """``slicer.app`` without Qt: records signal connections so a test can emit ``startupCompleted()``."""

    def __init__(self, core: SlicerCore, version: str) -> None:
        self.core = core
        self.connections: dict[str, list] = {}
        major, minor, patch = (int(part) for part in version.split("."))
        self.majorVersion, self.minorVersion, self.patchVersion = major, minor, patch

    def connect(self, signal: str, slot) -> None:
        self.connections.setdefault(signal, []).append(slot)

    def emit(self, signal: str) -> None:
        for slot in self.connections.get(signal, []):
            slot()

    @property
    def documentationBaseUrl(self) -> str:
        return f"https://slicer.readthedocs.io/en/{self.majorVersion}.{self.minorVersion}"

    def moduleDocumentationUrl(self, moduleName: str) -> str:
        return f"{self.documentationBaseUrl}/user_guide/modules/{moduleName.lower()}.html"

    def applicationLogic(self):
        return self.core.applicationLogic

    def commandOptions(self):
        return CommandOptions()

    def testingEnabled(self) -> bool:
        return True

    def layoutManager(self):
        # slicer.util helpers check for None and then skip view updates, as in Slicer without a main window.
        return None

    def processEvents(self, *args) -> None:
        pass


class ModuleParent:
    """Stands in for the qSlicerScriptedLoadableModule the application passes as ``parent``."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.icon = None
        self.isEntered = False


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


def loadSlicerSource(name: str, version: str, relativePath: str):
    """Import Slicer's vendored ``relativePath`` (a .py file or a package folder) of ``version`` as ``name``."""
    path = os.path.join(SOURCE_DIR, f"v{version}", relativePath)
    if os.path.isdir(path):
        spec = importlib.util.spec_from_file_location(name, os.path.join(path, "__init__.py"),
                                                      submodule_search_locations=[path])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def installQtStubs() -> None:
    for name in ("qt", "ctk"):
        if not isinstance(sys.modules.get(name), QtUnavailable):
            sys.modules[name] = QtUnavailable(name)
    sys.modules["qt"].QIcon = QIcon
    for name in SLICER_WIDGET_CLASSES:
        setattr(slicer, name, _unavailableClass("slicer", name))


def install(modulePaths: dict[str, str], version: str | None = None) -> SlicerCore:
    """Build the core and register the stand-ins; ``modulePaths`` maps module names to their .py files.

    ``version`` (default: environment ``M2DIFF_SLICER_VERSION``, else 5.12.0) picks the Slicer release whose
    Python files are loaded.
    """
    version = version or os.environ.get("M2DIFF_SLICER_VERSION", DEFAULT_SLICER_VERSION)
    if version not in SLICER_VERSIONS:
        raise ValueError(f"Slicer version {version!r} is not vendored; choose one of {SLICER_VERSIONS}")
    installQtStubs()
    core = SlicerCore()
    slicer.mrmlScene = core.scene
    slicer.app = AppStandIn(core, version)
    modules = types.SimpleNamespace()
    for name, logic in core.logics.items():
        setattr(modules, name.lower(), ModuleStandIn(logic))
    for name, path in modulePaths.items():
        setattr(modules, name.lower(), ModuleStandIn(None, path))
    slicer.modules = modules
    slicer.moduleNames = types.SimpleNamespace(**{name: name for name in modulePaths})

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr, i18n.translate = tr, translate
    sys.modules["slicer.i18n"] = slicer.i18n = i18n
    slicer.ScriptedLoadableModule = loadSlicerSource("slicer.ScriptedLoadableModule", version,
                                                     "slicer/ScriptedLoadableModule.py")
    slicer.parameterNodeWrapper = loadSlicerSource("slicer.parameterNodeWrapper", version,
                                                   "slicer/parameterNodeWrapper")
    sampleData = loadSlicerSource("SampleData", version, "SampleData.py")
    # Slicer loads the SampleData module at start-up; its __init__ creates slicer.modules.sampleDataSources.
    modules.sampledata = ModuleStandIn(None, sampleData.__file__)
    sampleData.SampleData(ModuleParent(sampleData.__file__))
    return core
