"""FDG activity: regional uptake of real healthy controls, Alzheimer-like hypometabolism and resolution calibration.

Region ids 1..52 are the regions of the fdg-neurosegmenter normal table (`data/CN_quantification.csv`, pons-normalised
SUVR of 537 cognitively normal subjects); they are built from CerebrA labels (Desikan-Killiany-Tourville cortex as in
FastSurfer). Ids >= 100 are simulator-only tissue classes that are not reported.
"""

from __future__ import annotations

import csv
import enum
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

CN_TABLE = Path(__file__).with_name("data") / "CN_quantification.csv"

OTHER_DEEP_GM, VENTRICLE, CEREBELLAR_WM = 100, 101, 102

# CN-table region (without _left/_right) -> CerebrA label names; the table's own FastSurfer definition
# (label_correspondence.csv of fdg-neurosegmenter) mapped onto the same DKT parcels.
CN_TO_CEREBRA: dict[str, tuple[str, ...]] = {
    "superior_frontal_gyrus": ("Superior Frontal",),
    "orbitofrontal_cortex": ("Lateral Orbitofrontal", "Medial Orbitofrontal"),
    "dorsolateral_frontal_cortex": ("Caudal Middle Frontal", "Rostral Middle Frontal", "Pars Opercularis",
                                    "Pars Orbitalis", "Pars Triangularis", "Precentral"),
    "paracentral_lobule": ("Paracentral",),
    "postcentral_gyrus": ("Postcentral",),
    "dorsolateral_parietal_cortex": ("Superior Parietal", "Supramarginal", "Inferior Parietal"),
    "precuneus": ("Precuneus",),
    "anterior_cingulate_cortex": ("Caudal Anterior Cingulate", "Rostral Anterior Cingulate"),
    "posterior_cingulate_cortex": ("Posterior Cingulate",),
    "isthmus_cingulate_cortex": ("Isthmus Cingulate",),
    "lateral_temporal_cortex": ("Superior Temporal", "Transverse Temporal", "Middle Temporal", "Inferior temporal"),
    "mesial_temporal_cortex": ("Entorhinal", "Fusiform", "Parahippocampal"),
    "lateral_occipital_cortex": ("Lateral Occipital",),
    "pericalcarine_cortex": ("Pericalcarine",),
    "lingual_gyrus": ("Lingual",),
    "cuneus": ("Cuneus",),
    "insula": ("Insula",),
    "cerebellar_cortex": ("Cerebellum Gray Matter", "Vermal lobules I-V", "Vermal lobules VI-VII",
                          "Vermal lobules VIII-X"),
    "thalamus": ("Thalamus",),
    "caudate": ("Caudate",),
    "putamen": ("Putamen",),
    "globus_pallidus": ("Pallidum",),
    "hippocampus": ("Hippocampus",),
    "amygdala": ("Amygdala",),
    "ventral_diencephalon": ("Ventral Diencephalon",),
}
EXTRA_CEREBRA = {OTHER_DEEP_GM: ("Accumbens Area", "Basal Forebrain"),
                 VENTRICLE: ("Third Ventricle", "Fourth Ventricle", "Lateral Ventricle", "Inferior Lateral Ventricle"),
                 CEREBELLAR_WM: ("Cerebellum White Matter", "Optic Chiasm")}

# Regions whose whole label is grey tissue; cortical parcels instead carry activity on their GM fraction only.
WHOLE_LABEL = ("cerebellar_cortex", "thalamus", "caudate", "putamen", "globus_pallidus", "hippocampus", "amygdala",
               "ventral_diencephalon", "brainstem_wo_pons", "pons")

# Alzheimer-like hypometabolism weights (fraction of the severity), strongest posteriorly (posterior cingulate,
# precuneus, parietal, temporal), weaker frontal, sparing sensorimotor, occipital pole, cerebellum and deep nuclei.
AD_WEIGHTS = {
    "posterior_cingulate_cortex": 1.0, "isthmus_cingulate_cortex": 1.0, "precuneus": 1.0,
    "dorsolateral_parietal_cortex": 0.9, "lateral_temporal_cortex": 0.75, "mesial_temporal_cortex": 0.6,
    "hippocampus": 0.45, "amygdala": 0.3, "dorsolateral_frontal_cortex": 0.4, "superior_frontal_gyrus": 0.35,
    "orbitofrontal_cortex": 0.3, "anterior_cingulate_cortex": 0.2, "lateral_occipital_cortex": 0.25,
    "insula": 0.2, "cuneus": 0.1, "lingual_gyrus": 0.1, "paracentral_lobule": 0.05, "postcentral_gyrus": 0.05,
}


class Group(str, enum.Enum):
    """Diagnostic group; the severity range of each follows DATA.md."""

    CN = "CN"
    MCI = "MCI"
    AD = "AD"


SEVERITY = {Group.CN: (0.0, 0.0), Group.MCI: (0.05, 0.15), Group.AD: (0.15, 0.35)}


@functools.lru_cache(maxsize=1)
def cn_table() -> tuple[tuple[str, ...], np.ndarray]:
    """Region names (ids 1..52 in order) and the [537, 52] table of pons-normalised SUVR."""
    with CN_TABLE.open(newline="") as handle:
        rows = list(csv.reader(handle))
    return tuple(rows[0]), np.asarray(rows[1:], dtype=np.float64)


def region_names() -> dict[int, str]:
    """Region id -> name, e.g. 13 -> 'precuneus_left'."""
    return {index + 1: name for index, name in enumerate(cn_table()[0])}


def region_ids(name: str) -> tuple[int, int]:
    """(left id, right id) of a bilateral region such as 'precuneus'."""
    ids = {v: k for k, v in region_names().items()}
    return ids[f"{name}_left"], ids[f"{name}_right"]


def regions_from_cerebra(cerebra: np.ndarray, pons_slab: np.ndarray, labels: dict[str, tuple[int, int]],
                         x_mm: np.ndarray) -> np.ndarray:
    """Simulator region ids [Z, Y, X] int16 from a CerebrA labelmap; the pons is the brainstem inside `pons_slab`."""
    regions = np.zeros(cerebra.shape, np.int16)
    for name, parcels in CN_TO_CEREBRA.items():
        left, right = region_ids(name)
        for parcel in parcels:
            lh, rh = labels[parcel]
            if parcel.startswith("Vermal"):
                # Vermis labels are split at the midline by side only loosely; LPS x > 0 is the subject's left.
                vermis = (cerebra == lh) | (cerebra == rh)
                regions[vermis & (x_mm > 0)] = left
                regions[vermis & (x_mm <= 0)] = right
            else:
                regions[cerebra == lh] = left
                regions[cerebra == rh] = right
    brainstem = np.isin(cerebra, labels["Brainstem"])
    ids = {v: k for k, v in region_names().items()}
    regions[brainstem & pons_slab] = ids["pons"]
    regions[brainstem & ~pons_slab] = ids["brainstem_wo_pons"]
    for extra, parcels in EXTRA_CEREBRA.items():
        regions[np.isin(cerebra, [label for parcel in parcels for label in labels[parcel]])] = extra
    return regions


@dataclass(frozen=True)
class ActivityConfig:
    """Uptake model (WM = 1 before the global scale; DATA.md)."""

    pons_to_wm: tuple[float, float] = (1.6, 2.0)   # true pons/WM; sets where the cortical GM lands (~3-4.5)
    csf: float = 0.05
    scalp: float = 0.35
    skull: float = 0.15
    wm_bq_ml: float = 8000.0                       # WM activity concentration before the global scale
    global_scale: float = 0.2                      # +- fraction
    asymmetry: float = 0.3                         # +- L/R split of the hypometabolism
    resolution_mm: float = 6.5                     # FWHM of the SD reconstruction the table values refer to
    calibration_iterations: int = 4


def target_suvr(rng: np.random.Generator, group: Group, severity: float, config: ActivityConfig) -> np.ndarray:
    """Pons-relative regional SUVR targets [53] (index = region id, [0] unused) of one subject.

    A random real control's pattern, then hypometabolism `severity` weighted by AD_WEIGHTS with a random L/R split.
    """
    names, table = cn_table()
    row = table[rng.integers(len(table))]
    suvr = np.concatenate([[0.0], row / row[names.index("pons")]])
    split = rng.uniform(-config.asymmetry, config.asymmetry)  # drawn for every group: same stream for CN
    if group != Group.CN:
        for name, weight in AD_WEIGHTS.items():
            left, right = region_ids(name)
            suvr[left] *= 1.0 - severity * weight * (1.0 + split)
            suvr[right] *= 1.0 - severity * weight * (1.0 - split)
    return suvr


def activity_map(anatomy, suvr: np.ndarray, rng: np.random.Generator, config: ActivityConfig) -> tuple[np.ndarray, dict]:
    """True FDG activity [Z, Y, X] in Bq/ml-like units whose regional means, seen at `resolution_mm`, match `suvr`.

    Real regional SUVRs already contain the scanner's partial-volume loss, so the grey-matter values are solved for
    (multiplicative fixed point) such that the blurred truth has the table's pons-relative regional means.
    Returns (activity, info) with info keys `pons_to_wm`, `cortical_gm_to_wm`, `global_scale`.
    """
    n_regions = len(suvr) - 1
    regions = anatomy.regions
    brain, gm, wm, csf = anatomy.brain, anatomy.gm, anatomy.wm, anatomy.csf
    names = region_names()
    pons = [k for k, v in names.items() if v == "pons"][0]
    whole = np.zeros(n_regions + 1, bool)
    whole[[k for k, v in names.items() if v.rsplit("_", 1)[0] in WHOLE_LABEL or v in WHOLE_LABEL]] = True

    pons_value = rng.uniform(*config.pons_to_wm)
    values = np.where(whole, pons_value * suvr, 2.5 * pons_value * suvr / suvr[1:].mean())
    values[0] = 0.0
    sigma = config.resolution_mm / 2.3548 / anatomy.grid.spacing[0]
    flat = regions.ravel()
    in_table = (regions >= 1) & (regions <= n_regions)
    counts = np.bincount(flat, minlength=n_regions + 1)[: n_regions + 1]

    def build(values: np.ndarray) -> np.ndarray:
        lut = np.zeros(max(int(regions.max()), CEREBELLAR_WM) + 1)
        lut[: n_regions + 1] = values
        cortical_mean = float(np.average(values[1:][~whole[1:]]))
        lut[OTHER_DEEP_GM] = 0.9 * values[[k for k, v in names.items() if v.startswith("caudate")]].mean()
        grey = lut[regions]
        whole_voxel = np.zeros(regions.shape, bool)
        whole_voxel[in_table] = whole[regions[in_table]]
        grey_value = np.where(regions == 0, cortical_mean, grey)
        tissue = np.where(whole_voxel | (regions == OTHER_DEEP_GM), grey_value * (1 - csf) + config.csf * csf,
                          grey_value * gm + 1.0 * wm + config.csf * csf)
        tissue = np.where(regions == CEREBELLAR_WM, 1.0 * (1 - csf) + config.csf * csf, tissue)
        tissue = np.where(regions == VENTRICLE, config.csf, tissue)
        outside = anatomy.head * (config.scalp * (1 - anatomy.bone) + config.skull * anatomy.bone)
        return (brain * tissue + (1 - brain) * outside).astype(np.float32)

    for _ in range(config.calibration_iterations):
        seen = ndimage.gaussian_filter(build(values), sigma).ravel()
        means = np.bincount(flat, weights=seen, minlength=n_regions + 1)[: n_regions + 1] / np.maximum(counts, 1)
        ratio = np.where(counts > 0, suvr * means[pons] / np.maximum(means, 1e-9), 1.0)
        ratio[pons] = 1.0
        values = values * np.clip(ratio, 0.5, 2.0)
        values[0] = 0.0

    scale = 1.0 + rng.uniform(-config.global_scale, config.global_scale)
    cortical = float(np.average(values[1:][~whole[1:]]))
    info = {"pons_to_wm": float(pons_value), "cortical_gm_to_wm": cortical, "global_scale": float(scale)}
    return build(values) * (config.wm_bq_ml * scale), info
