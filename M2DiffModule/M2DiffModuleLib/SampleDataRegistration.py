"""Register the bundled demo subject (low-dose PET, T1, standard-dose PET) with Slicer's Sample Data module."""

import glob
import hashlib
import os
import pathlib

# (file in the simulator's subject folder, node name); see docs/DEVELOPING.md "Subject folders".
DEMO_FILES = (
    ("pet_ld_drf100.nii.gz", "M2Diff demo LD-PET"),
    ("t1.nii.gz", "M2Diff demo T1"),
    ("pet_sd.nii.gz", "M2Diff demo SD-PET"),
)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def demoSubjectFolder(resourcesDir: str) -> str | None:
    """The first ``sub-*`` folder of ``Resources/SampleData`` holding all demo files, or None."""
    for folder in sorted(glob.glob(os.path.join(resourcesDir, "SampleData", "sub-*"))):
        if all(os.path.isfile(os.path.join(folder, name)) for name, _ in DEMO_FILES):
            return folder
    return None


def registerSampleData(sampleDataLogic, resourcesDir: str, title: str) -> bool:
    """Register the demo subject as one sample (three volumes); returns False when it is not bundled.

    The files are bundled, so the URIs are ``file://`` URLs; SampleData still copies them into its cache and
    verifies the SHA256 checksums, which catches a truncated or modified installation.
    """
    folder = demoSubjectFolder(resourcesDir)
    if folder is None:
        return False
    paths = [os.path.join(folder, name) for name, _ in DEMO_FILES]
    sampleDataLogic.registerCustomSampleDataCategory("M2Diff", title=title)
    sampleDataLogic.registerCustomSampleDataSource(
        category="M2Diff",
        sampleName="M2DiffDemoSubject",
        thumbnailFileName=os.path.join(resourcesDir, "Icons", "M2DiffModule.png"),
        uris=[pathlib.Path(path).as_uri() for path in paths],
        fileNames=[f"M2DiffDemo_{name}" for name, _ in DEMO_FILES],
        nodeNames=[nodeName for _, nodeName in DEMO_FILES],
        checksums=[f"SHA256:{sha256(path)}" for path in paths],
        loadFileTypes=["VolumeFile"] * len(DEMO_FILES),
    )
    return True
