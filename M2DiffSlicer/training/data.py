"""Slice dataset for training: paired LD-PET / SD-PET / T1 volumes on the model grid, cut in three orientations.

Subject folders (docs/DEVELOPING.md "Subject folders") are prepared once per subject and dose reduction factor
(DRF): the T1 is put on the PET through the saved true `t1_to_pet.tfm`, all three volumes are resampled onto the
model grid and divided by the LD-PET scale (T1 by its own), and the result is cached as one `.npy` file so later
epochs and runs never resample again. Batches hold slices of one orientation (their shapes differ between
orientations) and every random draw comes from a seed, so a batch is a pure function of (seed, epoch, step).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from ..atomic import atomic_path, write_text_atomic
from ..errors import BadInputError
from ..options import parse_enum
from ..subject_files import META_FILE, SD_FILE, T1_FILE, TRANSFORM_FILE, ld_file, ld_name
from ..imaging.model_grid import ModelGrid, prepare_inputs, prepare_target
from ..imaging.orientation import Orientation

CACHE_VERSION = 1


class CacheDtype(enum.Enum):
    """Storage type of cached prepared volumes (float16 halves disk and page cache; values are ~0..3)."""

    FLOAT16 = "float16"
    FLOAT32 = "float32"


@dataclass
class SubjectVolumes:
    """One subject at one DRF on the model grid, in network units.

    volumes: [3, z, y, x] array (LD-PET / scale, SD-PET / scale, T1 / its robust head intensity), possibly a
    read-only memory map of the cache file.
    """

    name: str
    drf: float
    volumes: np.ndarray
    scale: float


@dataclass(frozen=True)
class SliceRef:
    """Slice `index` of volume `volume` along `orientation`."""

    volume: int
    orientation: Orientation
    index: int


def find_subjects(data_dir: str | os.PathLike) -> list[Path]:
    """Subject folders (`sub-*` holding an SD-PET) under `data_dir`, sorted by name."""
    root = Path(data_dir)
    if not root.is_dir():
        raise BadInputError(f"data folder not found: {root}")
    subjects = sorted(p for p in root.glob("sub-*") if (p / SD_FILE).is_file())
    if not subjects:
        raise BadInputError(f"no subject folders (sub-*/{SD_FILE}) in {root}")
    return subjects


def subject_meta(subject_dir: str | os.PathLike) -> dict:
    """The subject folder's meta.json ({} when the folder has none, as for hand-made folders)."""
    path = Path(subject_dir) / META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def low_dose_levels(subject_dir: str | os.PathLike) -> list[float]:
    """Every low-dose DRF (> 1) the simulator wrote for a subject (meta.json "drfs"), continuous ones included.

    DRF 1 is a full-dose replicate, not a low-dose scan. Raises BadInputError when meta.json lists no level.
    """
    levels = sorted(float(drf) for drf in subject_meta(subject_dir).get("drfs", {}).values() if drf > 1)
    if not levels:
        raise BadInputError(f"subject {Path(subject_dir).name}: {META_FILE} lists no low-dose image (drfs > 1)")
    return levels


def _source_stamp(paths: Iterable[Path]) -> list[list]:
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in paths]


def load_subject(
    subject_dir: str | os.PathLike,
    drf: float,
    grid: ModelGrid = ModelGrid(),
    cache_dir: str | os.PathLike | None = None,
    cache_dtype: CacheDtype = CacheDtype.FLOAT32,
) -> SubjectVolumes:
    """Prepare (or read from `cache_dir`) one subject's LD, SD and T1 volumes on `grid` at dose reduction `drf`.

    The cache entry is keyed by subject, DRF and grid, and is rebuilt when a source file's size or modification
    time changed. Raises BadInputError when a file of the subject folder is missing.
    """
    subject_dir = Path(subject_dir)
    cache_dtype = parse_enum(CacheDtype, cache_dtype, "cache_dtype")
    sources = [subject_dir / ld_file(drf), subject_dir / SD_FILE, subject_dir / T1_FILE, subject_dir / TRANSFORM_FILE]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise BadInputError(f"subject {subject_dir.name} lacks {', '.join(missing)}")
    key = {
        "version": CACHE_VERSION,
        "subject": str(subject_dir.resolve()),
        "drf": drf,
        "grid": [grid.spacing_mm, list(grid.size_xyz)],
        "dtype": cache_dtype.value,
        "sources": _source_stamp(sources),
    }
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        grid_tag = f"{grid.spacing_mm:g}mm_{'x'.join(map(str, grid.size_xyz))}"
        # The folder's path hash keeps equally named subjects of different data sets apart.
        folder_tag = hashlib.sha256(key["subject"].encode()).hexdigest()[:8]
        stem = cache_dir / f"{subject_dir.name}_{folder_tag}_{ld_name(drf)}_{grid_tag}"
        array_path, meta_path = stem.with_suffix(".npy"), stem.with_suffix(".json")
        if array_path.is_file() and meta_path.is_file():
            meta = json.loads(meta_path.read_text())
            if meta.get("key") == key:
                return SubjectVolumes(subject_dir.name, drf, np.load(array_path, mmap_mode="r"), meta["scale"])
    volumes, scale = _prepare(sources, grid)
    volumes = volumes.astype(cache_dtype.value)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # Several DDP ranks may prepare the same subject at once; each writes its own temp file and renames it.
        with atomic_path(array_path) as temp:
            np.save(temp, volumes)
        write_text_atomic(meta_path, json.dumps({"key": key, "scale": scale}))
    return SubjectVolumes(subject_dir.name, drf, volumes, scale)


def _prepare(sources: Sequence[Path], grid: ModelGrid) -> tuple[np.ndarray, float]:
    ld_path, sd_path, t1_path, transform_path = sources
    prepared = prepare_inputs(
        sitk.ReadImage(str(ld_path)), sitk.ReadImage(str(t1_path)), sitk.ReadTransform(str(transform_path)), grid
    )
    target = prepare_target(sitk.ReadImage(str(sd_path)), prepared)
    assert prepared.t1 is not None
    return np.stack([prepared.pet, target, prepared.t1]), prepared.scale


class SliceDataset:
    """All non-empty slices of a set of subject volumes, batched per orientation.

    A slice is kept when at least `min_fraction` of its SD-PET pixels exceed `min_signal` (network units; the
    head's mean uptake is about 1): slices outside the head teach nothing and would dilute every batch.
    """

    def __init__(
        self,
        subjects: Sequence[SubjectVolumes],
        orientations: Sequence[Orientation | str] = tuple(Orientation),
        min_signal: float = 0.1,
        min_fraction: float = 0.01,
    ) -> None:
        if not subjects:
            raise ValueError("subjects must not be empty")
        self.subjects = list(subjects)
        self.min_signal = min_signal
        self.orientations = [parse_enum(Orientation, o, "orientations") for o in orientations]
        if not self.orientations:
            raise ValueError("orientations must not be empty")
        self.slices: dict[Orientation, list[SliceRef]] = {}
        for orientation in self.orientations:
            refs = []
            for v, subject in enumerate(self.subjects):
                sd = np.asarray(subject.volumes[1])
                other_axes = tuple(a for a in range(3) if a != orientation.axis)
                fractions = (sd > min_signal).mean(axis=other_axes)
                refs.extend(SliceRef(v, orientation, int(k)) for k in np.flatnonzero(fractions >= min_fraction))
            self.slices[orientation] = refs

    @classmethod
    def from_folders(
        cls,
        subject_dirs: Sequence[str | os.PathLike],
        drfs: Sequence[float] | None,
        grid: ModelGrid = ModelGrid(),
        cache_dir: str | os.PathLike | None = None,
        cache_dtype: CacheDtype = CacheDtype.FLOAT32,
        **kwargs,
    ) -> SliceDataset:
        """Load every subject folder at every DRF in `drfs` (one volume set per pair) and build the dataset.

        drfs None: each subject at every low-dose level it has (low_dose_levels).
        """
        if drfs is not None and not drfs:
            raise ValueError("drfs must list at least one dose reduction factor")
        subjects = [load_subject(d, drf, grid, cache_dir, cache_dtype)
                    for d in subject_dirs for drf in (low_dose_levels(d) if drfs is None else drfs)]
        return cls(subjects, **kwargs)

    def __len__(self) -> int:
        return sum(len(refs) for refs in self.slices.values())

    def epoch_batches(self, batch_size: int, seed: int, epoch: int, shuffle: bool = True) -> list[list[SliceRef]]:
        """The batches of one epoch: each orientation's slices shuffled and cut into full batches, then interleaved.

        With `shuffle` False the slices keep their order and the last, partial batch of each orientation is kept
        (the fixed validation set); otherwise incomplete batches are dropped so every step sees `batch_size`.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = np.random.default_rng([seed, epoch])
        batches = []
        for orientation in self.orientations:
            refs = self.slices[orientation]
            order = rng.permutation(len(refs)) if shuffle else np.arange(len(refs))
            stop = len(refs) - len(refs) % batch_size if shuffle else len(refs)
            batches.extend([refs[i] for i in order[start : start + batch_size]] for start in range(0, stop, batch_size))
        if shuffle:
            batches = [batches[i] for i in rng.permutation(len(batches))]
        return batches

    def collate(
        self,
        refs: Sequence[SliceRef],
        rng: np.random.Generator | None = None,
        t1_dropout: float = 0.0,
        flip: bool = False,
        patch_size: int = 0,
        noise_gain: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Stack the slices `refs` (one orientation) into a training batch.

        Each sample independently loses its T1 with probability `t1_dropout` (MRI-free training) and, with
        `flip`, is mirrored left/right with probability 1/2. Sagittal slices hold no left/right axis, so `flip`
        leaves them unchanged. With `patch_size` > 0 each sample is cut to a square patch of that side (or the
        slice's side where shorter) centred on a random pixel of the head (see random_patch). With `noise_gain`
        > 1 each sample's LD-PET noise is amplified (amplify_noise). `rng` drives every draw and is required when
        any is enabled.

        Returns (target, cond): target [N x 1 x H x W] SD-PET / scale; cond = {"ld_pet": [N x 1 x H x W],
        "t1": [N x 1 x H x W] (zeros where dropped), "t1_present": [N] bool}.
        """
        if not 0.0 <= t1_dropout <= 1.0:
            raise ValueError(f"t1_dropout must be in [0, 1], got {t1_dropout}")
        if patch_size < 0:
            raise ValueError(f"patch_size must be >= 0, got {patch_size}")
        if not noise_gain >= 1.0:
            raise ValueError(f"noise_gain must be >= 1, got {noise_gain}")
        if rng is None and (t1_dropout > 0 or flip or patch_size or noise_gain > 1.0):
            raise ValueError("rng is required when t1_dropout > 0, flip, patch_size or noise_gain > 1 is set")
        orientations = {r.orientation for r in refs}
        if len(orientations) != 1:
            raise ValueError(f"a batch must hold one orientation, got {sorted(o.value for o in orientations)}")
        orientation = orientations.pop()
        stack = np.stack([orientation.take(self.subjects[r.volume].volumes, r.index) for r in refs])
        stack = stack.astype(np.float32)  # [N, 3, H, W]: LD, SD, T1
        if patch_size:
            stack = np.stack([random_patch(sample, patch_size, rng, self.min_signal) for sample in stack])
        n = len(refs)
        if noise_gain > 1.0:
            stack[:, 0] = amplify_noise(stack[:, 0], stack[:, 1], rng.uniform(0.0, np.log(noise_gain), n))
        present = rng.random(n) >= t1_dropout if t1_dropout > 0 else np.ones(n, dtype=bool)
        if flip and orientation is not Orientation.SAGITTAL:
            mirrored = rng.random(n) < 0.5
            stack[mirrored] = stack[mirrored, :, :, ::-1]
        # Zeroing the dropped T1 (besides t1_present False) keeps variants that concatenate T1 from seeing it.
        stack[~present, 2] = 0.0
        tensor = torch.from_numpy(np.ascontiguousarray(stack))
        cond = {"ld_pet": tensor[:, 0:1], "t1": tensor[:, 2:3], "t1_present": torch.from_numpy(present)}
        return tensor[:, 1:2], cond


def amplify_noise(ld: np.ndarray, sd: np.ndarray, log_gain: np.ndarray) -> np.ndarray:
    """LD-PET samples [N, H, W] with their deviation from the SD-PET scaled by exp(log_gain) [N], kept >= 0.

    The deviation is the reconstruction's own noise and low-count bias, so a gain g imitates a dose about g^2
    times lower on the same scanner (what OSEM does to the noise's texture stays that scanner's).
    """
    gain = np.exp(log_gain).astype(np.float32)[:, None, None]
    return np.maximum(sd + gain * (ld - sd), 0.0)


def random_patch(sample: np.ndarray, size: int, rng: np.random.Generator, min_signal: float) -> np.ndarray:
    """A `size` x `size` window of `sample` [C, H, W] (each side capped at the slice's) centred, as far as the
    borders allow, on a random pixel whose SD-PET (channel 1) exceeds `min_signal`: patches of air teach nothing.
    """
    height, width = sample.shape[1:]
    ph, pw = min(size, height), min(size, width)
    rows, cols = np.nonzero(sample[1] > min_signal)
    if rows.size:
        pick = rng.integers(rows.size)
        centre_row, centre_col = rows[pick], cols[pick]
    else:
        centre_row, centre_col = height // 2, width // 2
    top = int(np.clip(centre_row - ph // 2, 0, height - ph))
    left = int(np.clip(centre_col - pw // 2, 0, width - pw))
    return sample[:, top : top + ph, left : left + pw]
