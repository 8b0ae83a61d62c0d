"""DICOM output of `m2diff enhance`: with --out-dicom FOLDER, or when --pet is a DICOM series and --out a folder.

Everything that can refuse (the source is one PET series, the destination is new or empty and writable) is
checked before the enhance starts, so a refusal costs nothing and leaves nothing; the series itself is written
by imaging.dicom.write_pet_series from the volume the job wrote.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BadInputError
from ..imaging.dicom import check_series_destination, read_source_series, write_pet_series
from ..imaging.volumes import is_dicom_series_folder, read_image
from ..model.provenance import describe_weights, weights_provenance


class DicomOutput:
    """What a run writes besides (or instead of) its volume file; the base class writes no series."""

    def __init__(self, volume_path: str) -> None:
        self.volume_path = volume_path  # where the enhance job writes its float volume

    def write(self, result: dict[str, Any], weights: str | None) -> dict[str, Any]:
        """Write the series for a finished job's result event; returns the result with outputs["dicom"]."""
        return result


class _SeriesOutput(DicomOutput):
    def __init__(self, volume_path: str, source_folder: str, series_folder: Path, volume_is_temporary: bool):
        super().__init__(volume_path)
        self.source = read_source_series(source_folder)
        self.series_folder = series_folder
        self.volume_is_temporary = volume_is_temporary

    def write(self, result: dict[str, Any], weights: str | None) -> dict[str, Any]:
        write_pet_series(read_image(self.volume_path), self.source, self.series_folder, derivation_text(weights),
                         f"M2DiffSlicer {__version__}")
        outputs = dict(result.get("outputs", {}), dicom=str(self.series_folder))
        if self.volume_is_temporary:
            outputs["output"] = None
        return {**result, "outputs": outputs}


def derivation_text(weights: str | None) -> str:
    """The DerivationDescription of a series the weights `weights` (as resolve_weights takes them) made."""
    return (f"Low-dose PET enhanced by M2Diff (diffusion model) {describe_weights(weights_provenance(weights))}. "
            "Research use only, not for diagnosis.")


def wants_series(pet: str, out: str) -> bool:
    """A DICOM series input with an output path that names a folder (existing, ending in a slash, or without
    an extension) asks for a DICOM series out."""
    if not is_dicom_series_folder(pet):
        return False
    return Path(out).is_dir() or out.endswith(("/", "\\")) or not Path(out).suffix


@contextlib.contextmanager
def dicom_output(pet: str, out: str | None, out_dicom: str | None) -> Iterator[DicomOutput]:
    """The DICOM output `--pet/--out/--out-dicom` ask for, checked now; a temporary volume is removed after.

    :param out: --out; when it is None or names the series folder itself, the volume goes to a temporary file.
    :raises BadInputError: --out-dicom without a DICOM PET series input, or an unusable destination folder.
    """
    if out is None and out_dicom is None:
        raise BadInputError("give --out (a volume file, or a folder for a DICOM series input) or --out-dicom FOLDER")
    series = out_dicom if out_dicom is not None else (out if wants_series(pet, out) else None)
    if series is None:
        yield DicomOutput(out)
        return
    if not is_dicom_series_folder(pet):
        raise BadInputError(f"DICOM output is derived from the input series, but --pet {pet} is not a DICOM "
                            "series folder")
    folder = check_series_destination(series)
    scratch = None
    if out is None or Path(out) == Path(series):
        scratch = Path(tempfile.mkdtemp(prefix="m2diff-dicom-"))
        out = str(scratch / "enhanced.nii.gz")
    try:
        yield _SeriesOutput(out, pet, folder, volume_is_temporary=scratch is not None)
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
