"""Imports inside the engine point one way (docs/DEVELOPING.md "Layout"), read from the source with ast."""

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[2] / "M2DiffSlicer"
GUI_PACKAGES = {"slicer", "qt", "ctk", "vtk", "PythonQt", "vtkmodules", "mrml"}
# sub-package -> the sub-packages it must never import
FORBIDDEN = {
    "model": {"diffusion", "imaging", "training", "enhance", "cli", "simulation", "bids"},
    "diffusion": {"model", "imaging", "training", "enhance", "cli", "simulation", "bids"},
    "imaging": {"model", "diffusion", "training", "enhance", "cli", "simulation", "bids"},
    "training": {"enhance", "cli", "simulation", "bids"},
    "enhance": {"training", "cli", "simulation", "bids"},
    "simulation": {"model", "diffusion", "training", "enhance", "cli", "bids"},
    "bids": {"training", "cli", "simulation"},  # the BIDS App drives enhance, like the CLI but below it
    "": {"model", "diffusion", "imaging", "training", "enhance", "cli", "simulation", "bids"},  # errors, atomic...
    "cli": set(),  # the command line drives every part
    "__main__.py": set(),  # `python -m M2DiffSlicer` is the command line
}


def _engine_imports(path: Path) -> set[str]:
    """Dotted names (absolute, e.g. ``M2DiffSlicer.model.config`` or ``torch``) that one engine file imports."""
    package = path.relative_to(ENGINE.parent).with_suffix("").parts[:-1]
    if path.name == "__init__.py":
        package = path.relative_to(ENGINE.parent).parts[:-1]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import x` may import module x
    return names


def _subpackage(path: Path) -> str:
    parts = path.relative_to(ENGINE).parts
    return parts[0] if len(parts) > 1 or parts[0] == "__main__.py" else ""


ENGINE_FILES = sorted(ENGINE.rglob("*.py"))


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_file_imports_only_downstream_subpackages(path):
    own = _subpackage(path)
    imported = {name.split(".")[1] for name in _engine_imports(path)
                if name.startswith("M2DiffSlicer.") and len(name.split(".")) > 1}
    assert not imported & FORBIDDEN[own], f"{path.relative_to(ENGINE)} imports {sorted(imported & FORBIDDEN[own])}"


@pytest.mark.parametrize("path", ENGINE_FILES, ids=lambda p: str(p.relative_to(ENGINE)))
def test_engine_never_imports_slicer_qt_or_vtk(path):
    top_level = {name.split(".")[0] for name in _engine_imports(path)}
    assert not top_level & GUI_PACKAGES, f"{path.relative_to(ENGINE)} imports {sorted(top_level & GUI_PACKAGES)}"


def test_import_reader_sees_relative_and_absolute_imports(tmp_path):
    # The rule above is only as good as the reader: it must resolve `..x.y` from inside a sub-package.
    assert "M2DiffSlicer.training.data" in _engine_imports(ENGINE / "training" / "trainer.py")
    assert "M2DiffSlicer.errors" in _engine_imports(ENGINE / "enhance" / "worker.py")
    assert "M2DiffSlicer.imaging.validation" in _engine_imports(ENGINE / "enhance" / "pipeline.py")
