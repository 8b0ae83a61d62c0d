"""Install what the worker needs into Slicer's Python, at Apply time only.

Torch comes from the PyTorch extension (``PyTorchUtils``), which picks the CUDA build matching the driver. The
version floor is 2.6: older ``torch.load(weights_only=True)`` can still execute code from a crafted checkpoint
(CVE-2025-32434). This module never imports torch itself (versions come from package metadata, or from the
worker's Python in a subprocess); ``PyTorchUtils.installTorch``, called only to install, imports the torch it
has just installed into Slicer's process.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import subprocess

from .ProcessRunner import hiddenConsoleKwargs

TORCH_REQUIREMENT = ">=2.6"

# The engine's pure-Python/numeric requirements (pyproject.toml [project.dependencies] minus torch and SimpleITK).
# Slicer ships its own SimpleITK (with Slicer's IO) and torch comes from PyTorchUtils: pip must not replace them.
# The engine's runtime requirements (pyproject.toml) that Slicer does not bring itself; matplotlib only draws the
# CLI demo's figure. Testing/module/test_engine_agreement.py keeps the two lists in step.
ENGINE_REQUIREMENTS = ["numpy>=1.24", "scipy>=1.10", "PyWavelets>=1.4", "nibabel>=5.0", "tqdm>=4.60",
                       "pydicom>=3.0", "jsonschema>=4"]
PACKAGES_TO_SKIP = ["torch", "SimpleITK", "requests"]


class InstallError(RuntimeError):
    """Dependencies could not be installed; ``restartRequired`` tells whether restarting Slicer is the fix."""

    def __init__(self, message: str, restartRequired: bool = False) -> None:
        super().__init__(message)
        self.restartRequired = restartRequired


def installedTorchVersion() -> str | None:
    """Version of the installed torch distribution, read from its metadata (does not import torch)."""
    try:
        return importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        return None


def torchSatisfies(version: str | None, requirement: str = TORCH_REQUIREMENT) -> bool:
    from packaging.specifiers import SpecifierSet
    from packaging.version import Version

    return version is not None and Version(version) in SpecifierSet(requirement)


def ensureTorchOrRaise(askConfirmation: bool = True) -> None:
    """Install torch >= 2.6 through the PyTorch extension when missing or too old."""
    version = installedTorchVersion()
    if torchSatisfies(version):
        return
    try:
        import PyTorchUtils
    except ImportError as error:
        raise InstallError("The PyTorch extension is required: install 'PyTorch' from the Extensions Manager, "
                           "restart Slicer, then click Enhance again.", restartRequired=True) from error
    if version is not None:
        # An already-imported older torch stays loaded until restart; say so instead of failing obscurely.
        logging.info("torch %s is older than %s; upgrading through PyTorchUtils", version, TORCH_REQUIREMENT)
    torch = PyTorchUtils.PyTorchUtilsLogic().installTorch(askConfirmation=askConfirmation,
                                                          torchVersionRequirement=TORCH_REQUIREMENT)
    if torch is None:
        raise InstallError(f"PyTorch {TORCH_REQUIREMENT} is required and was not installed.")
    if version is not None:
        raise InstallError(f"PyTorch was upgraded from {version}; restart Slicer to use it.", restartRequired=True)


def ensureEngineRequirementsOrRaise() -> None:
    """Install the engine's other requirements without letting pip touch torch/SimpleITK/requests."""
    import slicer

    missing = [requirement for requirement in ENGINE_REQUIREMENTS if not _satisfied(requirement)]
    if not missing:
        return
    try:
        import slicer.packaging

        slicer.packaging.pip_ensure(missing, skip_packages=PACKAGES_TO_SKIP, requester="M2DiffModule")
    except (ImportError, AttributeError):
        # Slicer < 5.12 has no slicer.packaging; --no-deps keeps pip from pulling torch or SimpleITK.
        for requirement in missing:
            slicer.util.pip_install(f"{requirement} --no-deps")


# Run by the worker's Python: versions from package metadata and import specs only, so nothing gets imported.
_CHECK_CODE = """
import importlib.metadata, importlib.util, json, sys
versions = {}
for name in sys.argv[1:]:
    try:
        versions[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        versions[name] = None
modules = {name: importlib.util.find_spec(name) is not None for name in ("SimpleITK", "M2DiffSlicer")}
print(json.dumps({"versions": versions, "modules": modules}))
"""


def missingWorkerRequirements(python: str, env: dict | None = None) -> list[str]:
    """What the worker's Python lacks, one readable item each (``"torch>=2.6 (not installed)"``); empty when the
    worker can run. Asked of that Python in a subprocess, so that what is checked is what the worker will see."""
    from packaging.requirements import Requirement

    requirements = [Requirement(f"torch{TORCH_REQUIREMENT}")] + [Requirement(text) for text in ENGINE_REQUIREMENTS]
    completed = subprocess.run([python, "-c", _CHECK_CODE, *[r.name for r in requirements]], env=env,
                               capture_output=True, text=True, timeout=120, **hiddenConsoleKwargs())
    if completed.returncode != 0:
        tail = "\n".join(completed.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"Could not ask the worker's Python ({python}) what it has installed "
                           f"(exit code {completed.returncode}):\n{tail}")
    found = json.loads(completed.stdout.strip().splitlines()[-1])
    missing = []
    for requirement in requirements:
        version = found["versions"][requirement.name]
        if version is None:
            missing.append(f"{requirement} (not installed)")
        elif not requirement.specifier.contains(version, prereleases=True):
            missing.append(f"{requirement} ({version} installed)")
    if not found["modules"]["SimpleITK"]:
        missing.append("SimpleITK (Slicer's own; not importable)")
    if not found["modules"]["M2DiffSlicer"]:
        missing.append("the M2DiffSlicer engine package (not found next to the module)")
    return missing


def _satisfied(requirementText: str) -> bool:
    from packaging.requirements import Requirement

    requirement = Requirement(requirementText)
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)
