"""Import M2DiffModule.py under an older Python with minimal stand-ins for Slicer, then print the version message.

Run by test_module_panel.py with Python 3.9 (Slicer 5.8's): the module files must import there, because only then
can the panel tell the user that Slicer 5.10 or newer is needed. The stand-ins have no behaviour; what is checked is
that no module file uses syntax or import-time evaluation (``X | None`` annotations) that Python 3.9 lacks.
"""

import sys
import types


def _module(name: str, **attributes) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    sys.modules[name] = module
    return module


class _AnyClassModule(types.ModuleType):
    """Every attribute is a distinct empty class (vtk.vtkMatrix4x4 in annotations, qt.QIcon, ...)."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = type(name, (_Base,), {})
        setattr(self, name, value)
        return value


class _Base:
    def __init__(self, *args, **kwargs):
        pass


def main(moduleDir: str) -> None:
    slicer = sys.modules["slicer"] = _AnyClassModule("slicer")
    slicer.__path__ = []
    slicer.i18n = _module("slicer.i18n", tr=lambda text: text, translate=lambda context, text: text)
    slicer.util = _module("slicer.util", VTKObservationMixin=type("VTKObservationMixin", (), {}))
    slicer.ScriptedLoadableModule = _module(
        "slicer.ScriptedLoadableModule",
        __all__=["ScriptedLoadableModule", "ScriptedLoadableModuleWidget", "ScriptedLoadableModuleLogic",
                 "ScriptedLoadableModuleTest"],
        **{name: type(name, (_Base,), {}) for name in ("ScriptedLoadableModule", "ScriptedLoadableModuleWidget",
                                                        "ScriptedLoadableModuleLogic", "ScriptedLoadableModuleTest")})
    slicer.parameterNodeWrapper = _module("slicer.parameterNodeWrapper", parameterNodeWrapper=lambda cls: cls,
                                          parameterPack=lambda cls: cls, WithinRange=lambda *args: None)
    for name in ("vtk", "qt", "ctk"):
        sys.modules[name] = _AnyClassModule(name)
    sys.path.insert(0, moduleDir)
    import M2DiffModule

    print(M2DiffModule.unsupportedSlicerMessage(5, 8))


if __name__ == "__main__":
    main(sys.argv[1])
