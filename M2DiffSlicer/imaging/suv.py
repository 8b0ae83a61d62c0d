"""SUVbw of a DICOM PET slice: the factor from its Bq/ml voxel values to body-weight SUV (g/ml).

The vendor-neutral recipe of the QIBA SUV profile for Units BQML: SUVbw = C * weight[g] / dose(scan), where the
injected RadionuclideTotalDose decays from the radiopharmaceutical start to the scan time, which is SeriesDate/
SeriesTime for DecayCorrection START (images decay-corrected to the series start) and the injection itself for
ADMIN. Vendor-specific corrections (GE's post-processed series times, Philips' private SUV factors) are not
applied; a slice they would change is not one this engine writes (imaging/dicom.py keeps SeriesDate/Time).
"""

from __future__ import annotations

import datetime

from pydicom.dataset import Dataset

from ..errors import BadInputError


def suv_bw_factor(dataset: Dataset) -> float:
    """Multiply a Bq/ml voxel value of `dataset`'s slice by this to get SUVbw.

    :raises BadInputError: Units other than BQML, a DecayCorrection other than START/ADMIN, or a missing
        weight, dose, half-life or time.
    """
    if dataset.get("Units") != "BQML":
        raise BadInputError(f"SUV needs Units BQML, the series has {dataset.get('Units')!r}")
    correction = dataset.get("DecayCorrection")
    if correction not in ("START", "ADMIN"):
        raise BadInputError(f"SUV needs DecayCorrection START or ADMIN, the series has {correction!r}")
    try:
        drug = dataset.RadiopharmaceuticalInformationSequence[0]
        weight_g = float(dataset.PatientWeight) * 1000.0
        dose_bq, half_life_s = float(drug.RadionuclideTotalDose), float(drug.RadionuclideHalfLife)
    except (AttributeError, IndexError, TypeError, ValueError) as error:
        raise BadInputError(f"SUV needs PatientWeight, RadionuclideTotalDose and RadionuclideHalfLife: {error}") from None
    if weight_g <= 0 or dose_bq <= 0 or half_life_s <= 0:
        raise BadInputError("SUV needs a positive PatientWeight, RadionuclideTotalDose and RadionuclideHalfLife")
    elapsed_s = 0.0
    if correction == "START":
        elapsed_s = (_datetime(dataset.SeriesDate, dataset.SeriesTime) - _injection(drug, dataset)).total_seconds()
    return weight_g / (dose_bq * 2.0 ** (-elapsed_s / half_life_s))


def _injection(drug: Dataset, dataset: Dataset) -> datetime.datetime:
    stamp = str(drug.get("RadiopharmaceuticalStartDateTime") or "")
    if stamp:
        return _datetime(stamp[:8], stamp[8:])
    if not drug.get("RadiopharmaceuticalStartTime"):
        raise BadInputError("SUV needs RadiopharmaceuticalStartDateTime or RadiopharmaceuticalStartTime")
    return _datetime(dataset.SeriesDate, drug.RadiopharmaceuticalStartTime)  # same day as the series


def _datetime(date: str, time: str) -> datetime.datetime:
    """A DICOM DA + TM pair (TM may omit seconds or fractions; a UTC offset in a DT is ignored)."""
    time = str(time).split("+")[0].split("-")[0]
    whole, _, fraction = time.partition(".")
    whole = whole.ljust(6, "0")
    try:
        moment = datetime.datetime.strptime(f"{date}{whole}", "%Y%m%d%H%M%S")
    except ValueError:
        raise BadInputError(f"unreadable DICOM date/time {date!r} {time!r}") from None
    return moment + datetime.timedelta(seconds=float(f"0.{fraction or 0}"))
