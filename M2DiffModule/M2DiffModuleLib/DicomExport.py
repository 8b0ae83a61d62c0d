"""Export an enhanced PET as a DICOM PET series derived from the low-dose PET's own DICOM series.

The series is written by the engine's writer (M2DiffSlicer/imaging/dicom.py, the same as ``m2diff enhance
--out-dicom``) in the worker's Python: ``PythonSlicer -m M2DiffSlicer.cli dicom --volume V --source SERIES --out
FOLDER``. The Slicer process only gathers the source files from the DICOM database and writes the volume; it
never imports torch or M2DiffSlicer.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence

from . import VolumeIO

# Voxel units (UCUM code values) the writer takes: the series' own Bq/ml, or SUVbw, which it stores back as Bq/ml.
VOLUME_UNITS = {"Bq/ml": "BQML", "Bq/mL": "BQML", "{SUVbw}g/ml": "SUVbw"}
TIMEOUT_S = 600


class DicomExportError(RuntimeError):
    """The engine refused or failed to write the series; the message is its own."""


def defaultCommand() -> list[str]:
    """``PythonSlicer -m M2DiffSlicer.cli dicom``: the engine's DICOM writer in Slicer's Python, its own process."""
    pythonSlicer = shutil.which("PythonSlicer")
    if pythonSlicer is None:
        raise RuntimeError("PythonSlicer was not found on PATH; it is needed to export the DICOM series")
    return [pythonSlicer, "-m", "M2DiffSlicer.cli", "dicom"]


def seriesFolderName(volumeName: str) -> str:
    """A folder name for a volume's series: its name with anything but letters, digits, '.', '-' as '_'."""
    return re.sub(r"[^A-Za-z0-9.-]+", "_", volumeName).strip("._") or "M2Diff_enhanced"


def sourceFilesOrRaise(volumeNode, fileForInstance: Callable[[str], str]) -> list[str]:
    """The DICOM files the volume was loaded from (its ``DICOM.instanceUIDs``, looked up in the database)."""
    uids = (volumeNode.GetAttribute("DICOM.instanceUIDs") or "").split()
    if not uids:
        raise ValueError(f"The low-dose PET '{volumeNode.GetName()}' was not loaded from DICOM, so there is no "
                         "series to derive a DICOM series from; load the PET with the DICOM module")
    files = [fileForInstance(uid) for uid in uids]
    missing = [uid for uid, path in zip(uids, files) if not path or not os.path.isfile(path)]
    if missing:
        raise ValueError(f"{len(missing)} of the {len(uids)} DICOM files of '{volumeNode.GetName()}' are not in "
                         "the DICOM database any more; import the series again")
    return files


def volumeUnitsOrRaise(volumeNode) -> str:
    """"BQML" or "SUVbw" for the enhanced volume's voxel units (none set: the series' stored Bq/ml)."""
    units = volumeNode.GetVoxelValueUnits()
    code = units.GetCodeValue() if units is not None else None
    if not code:
        return "BQML"
    if code not in VOLUME_UNITS:
        raise ValueError(f"The enhanced PET '{volumeNode.GetName()}' is in {code}; a DICOM PET series can be "
                         "written from Bq/ml or SUVbw only")
    return VOLUME_UNITS[code]


class DicomExportLogic:
    """Console-callable: ``DicomExportLogic().exportOrRaise(enhanced, ldPet, folder)``. Never opens dialogs."""

    def __init__(self, command: Sequence[str] | None = None, environment: Callable[[], dict] | None = None,
                 fileForInstance: Callable[[str], str] | None = None) -> None:
        self._command = list(command) if command is not None else None
        self._environment = environment or (lambda: dict(os.environ))
        self._fileForInstance = fileForInstance

    def fileForInstance(self, uid: str) -> str:
        if self._fileForInstance is not None:
            return self._fileForInstance(uid)
        import slicer

        return slicer.dicomDatabase.fileForInstance(uid)

    def exportOrRaise(self, enhancedVolume, sourceVolume, outputFolder: str, weights: str | None = None) -> str:
        """Write ``enhancedVolume`` (on ``sourceVolume``'s grid) as a new series in ``outputFolder`` (absent or
        empty); returns the folder. ``weights``: the model that made it, named in the series.

        :raises ValueError: the source was not loaded from DICOM, or the units cannot be written.
        :raises DicomExportError: the engine refused (grid, series, folder) or failed; nothing is left behind.
        """
        sources = sourceFilesOrRaise(sourceVolume, self.fileForInstance)
        units = volumeUnitsOrRaise(enhancedVolume)
        with tempfile.TemporaryDirectory(prefix="M2DiffDicom-") as temp:
            seriesFolder = os.path.join(temp, "source")
            os.makedirs(seriesFolder)
            for index, path in enumerate(sources):  # the series alone, whatever else shares its folder
                shutil.copyfile(path, os.path.join(seriesFolder, f"{index:05d}.dcm"))
            volumePath = os.path.join(temp, "enhanced.nii.gz")
            VolumeIO.writeVolume(enhancedVolume, volumePath)
            command = (self._command or defaultCommand()) + [
                "--volume", volumePath, "--source", seriesFolder, "--out", outputFolder, "--volume-units", units,
                *(["--weights", weights] if weights else [])]
            done = subprocess.run(command, env=self._environment(), capture_output=True, text=True,
                                  timeout=TIMEOUT_S, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            raise DicomExportError(lines[-1] if lines else f"the DICOM export exited with {done.returncode}")
        return outputFolder
