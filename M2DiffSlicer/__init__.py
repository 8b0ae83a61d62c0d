"""M2Diff engine: MRI-guided multi-modality multi-task diffusion for low-dose brain PET enhancement.

The engine never imports slicer, qt, ctk or vtk; the Slicer module drives it through the worker process.
"""

__version__ = "0.1.0"
