"""Register the bundled demo subject (low-dose PET, T1, standard-dose PET) with Slicer's Sample Data module."""

from __future__ import annotations

import os
import pathlib

# The simulated subject of Resources/SampleData (its README says how it was made).
DEMO_SUBJECT = "sub-0007"

# (file, node name, SHA256 fixed when the subject was bundled). Sample Data checks each copy it makes against these,
# so a truncated or modified installation is caught; Testing/module/test_sample_data.py checks the bundled files.
DEMO_FILES = (
    ("pet_ld_drf100.nii.gz", "M2Diff demo LD-PET", "5da3ad8eb0ef7bc1a16226e33bab64a183072fa5eee657d2d57cd2ab435aa76c"),
    ("t1.nii.gz", "M2Diff demo T1", "060c05863a69ac480741aada15c19ba8e7654e4b04b38478cdc579368ddb23c9"),
    ("pet_sd.nii.gz", "M2Diff demo SD-PET", "45d233c78b54adebfa6219bdd18c54650bb1071afb447786816e3efe12f732c4"),
)

CATEGORY = "M2Diff"


def demoSubjectFolder(resourcesDir: str) -> str | None:
    """``Resources/SampleData/sub-0007`` when all demo files are there, else None."""
    folder = os.path.join(resourcesDir, "SampleData", DEMO_SUBJECT)
    if all(os.path.isfile(os.path.join(folder, name)) for name, _, _ in DEMO_FILES):
        return folder
    return None


def registerSampleData(sampleDataLogic, resourcesDir: str, title: str) -> bool:
    """Register the demo subject as one sample (three volumes); returns False when it is not bundled.

    ``sampleDataLogic`` is Sample Data's ``SampleDataLogic`` class. The files are bundled, so the URIs are
    ``file://`` URLs; Sample Data still copies them into its cache and verifies the SHA256 checksums.
    """
    folder = demoSubjectFolder(resourcesDir)
    if folder is None:
        return False
    # Category titles are Slicer 5.12+; on 5.10 Sample Data shows the category name itself.
    if hasattr(sampleDataLogic, "registerCustomSampleDataCategory"):
        sampleDataLogic.registerCustomSampleDataCategory(CATEGORY, title=title)
    sampleDataLogic.registerCustomSampleDataSource(
        category=CATEGORY,
        sampleName="M2DiffDemoSubject",
        thumbnailFileName=os.path.join(resourcesDir, "Icons", "M2DiffModule.png"),
        uris=[pathlib.Path(folder, name).as_uri() for name, _, _ in DEMO_FILES],
        fileNames=[f"M2DiffDemo_{name}" for name, _, _ in DEMO_FILES],
        nodeNames=[nodeName for _, nodeName, _ in DEMO_FILES],
        checksums=[f"SHA256:{digest}" for _, _, digest in DEMO_FILES],
        loadFileTypes=["VolumeFile"] * len(DEMO_FILES),
    )
    return True
