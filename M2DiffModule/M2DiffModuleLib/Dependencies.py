"""Install what the worker needs into Slicer's Python, at Apply time only.

Torch comes from the PyTorch extension (``PyTorchUtils``), which picks the CUDA build matching the driver. The
version floor is 2.6: older ``torch.load(weights_only=True)`` can still execute code from a crafted checkpoint
(CVE-2025-32434). Torch is never imported in the Slicer process by this module; only the worker imports it.
"""

import importlib.metadata
import logging

TORCH_REQUIREMENT = ">=2.6"

# The engine's pure-Python/numeric requirements (pyproject.toml [project.dependencies] minus torch and SimpleITK).
# Slicer ships its own SimpleITK (with Slicer's IO) and torch comes from PyTorchUtils: pip must not replace them.
ENGINE_REQUIREMENTS = ["numpy>=1.24", "scipy>=1.10", "PyWavelets>=1.4", "nibabel>=5.0", "tqdm>=4.60"]
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


def _satisfied(requirementText: str) -> bool:
    from packaging.requirements import Requirement

    requirement = Requirement(requirementText)
    try:
        version = importlib.metadata.version(requirement.name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return requirement.specifier.contains(version, prereleases=True)
