"""Quality table on held-out simulated subjects: LD input, classical filters, regression UNet, V1, V2, M2Diff.

    python benchmarks/quality.py --test data/test --val data/val --runs runs --out benchmarks/results

`--test` subjects must never have been seen in training (the simulator's seeds 9000+); the Gaussian FWHM and the
guided-filter settings are chosen on the `--val` subjects (seeds 8000+), never on the test ones. Every method
works on the same inputs: the LD-PET and the T1 registered to it by the pipeline's own rigid registration
(not the simulator's true transform). Metrics are computed on the PET grid against the SD-PET inside the brain
mask: 2D axial-slice means (as the paper reports them) and 3D, plus the mean |SUVR bias| over the simulator's
regions and over the cortical lobes they make up (`LOBES`; reference region as in the subject's meta.json).
Writes quality.json and quality.md; paired t-tests compare each method with M2Diff over subjects.

Each (method, weights sha256, subject, DRF, steps) score and each registration is kept in `--cache`, so a rerun
(e.g. once the last model has finished training) only computes what is new.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

from M2DiffSlicer.imaging import metrics
from M2DiffSlicer.model.checkpoint import load_checkpoint
from filters import gaussian_postfilter, guided_filter
from M2DiffSlicer.enhance.job import InferenceOptions
from M2DiffSlicer.enhance.slice_inference import run_inference
from M2DiffSlicer.options import DEFAULT_SAMPLING_STEPS
from M2DiffSlicer.imaging.model_grid import prepare_inputs, resample_like, restore_output
from M2DiffSlicer.imaging.registration import register_rigid
from M2DiffSlicer.diffusion.respace import trained_process_diffusion
from M2DiffSlicer.subject_files import META_FILE, SD_FILE, T1_FILE, TRANSFORM_FILE, ld_file

GAUSSIAN_FWHM_MM = (0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0)
GUIDED_RADIUS_MM = (2.0, 4.0, 6.0, 8.0)
GUIDED_EPSILON = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
# Cortical lobes (per hemisphere) as unions of the simulator's regions, for the issue's "lobar SUVR bias".
LOBES = {
    "frontal": ("superior_frontal_gyrus", "orbitofrontal_cortex", "dorsolateral_frontal_cortex", "paracentral_lobule"),
    "parietal": ("postcentral_gyrus", "dorsolateral_parietal_cortex", "precuneus"),
    "temporal": ("lateral_temporal_cortex", "mesial_temporal_cortex", "hippocampus", "amygdala"),
    "occipital": ("lateral_occipital_cortex", "pericalcarine_cortex", "lingual_gyrus", "cuneus"),
    "cingulate": ("anterior_cingulate_cortex", "posterior_cingulate_cortex", "isthmus_cingulate_cortex"),
    "insula": ("insula",),
}


@dataclass
class Subject:
    """One held-out subject on its PET grid ([z, y, x] arrays) with its T1 registered to the PET."""

    name: str
    ld: dict[int, sitk.Image]
    sd: np.ndarray
    t1: sitk.Image
    t1_on_pet: np.ndarray
    t1_to_pet: sitk.Transform
    registration_error_mm: float
    brain: np.ndarray
    labels: np.ndarray
    names: dict[int, str]
    reference_label: int

    @cached_property
    def lobes(self) -> np.ndarray:
        """`labels` merged into lobes (lobar_labels), built once for every method scored on this subject."""
        return lobar_labels(self)


def load_subject(folder: Path, drfs: list[int], cache: Path) -> Subject:
    meta = json.loads((folder / META_FILE).read_text())
    ld = {drf: sitk.ReadImage(str(folder / ld_file(drf)), sitk.sitkFloat32) for drf in drfs}
    sd_image = sitk.ReadImage(str(folder / SD_FILE), sitk.sitkFloat32)
    t1 = sitk.ReadImage(str(folder / T1_FILE), sitk.sitkFloat32)
    # Registered to the noisiest PET the table uses: the harder, honest case for every MR-guided method.
    registered = cache / f"{folder.parent.name}-{folder.name}-drf{max(drfs)}-t1_to_pet.tfm"
    if not registered.exists():
        sitk.WriteTransform(register_rigid(ld[max(drfs)], t1).transform, str(registered))
    transform = sitk.ReadTransform(str(registered))
    true_transform = sitk.ReadTransform(str(folder / TRANSFORM_FILE))
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "roi_pet.nii.gz"))).astype(np.int32)
    names = {int(k): v for k, v in meta["labels"].items()}
    reference = [k for k, v in names.items() if v == meta["reference_region"]]
    return Subject(
        name=folder.name,
        ld=ld,
        sd=sitk.GetArrayFromImage(sd_image),
        t1=t1,
        t1_on_pet=sitk.GetArrayFromImage(resample_like(t1, sd_image, transform)),
        t1_to_pet=transform,
        registration_error_mm=_transform_distance_mm(transform, true_transform, labels, sd_image),
        brain=sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "brain_pet.nii.gz"))) > 0,
        labels=labels,
        names=names,
        reference_label=reference[0],
    )


def _transform_distance_mm(a: sitk.Transform, b: sitk.Transform, labels: np.ndarray, grid: sitk.Image) -> float:
    """Mean distance between where two transforms send the brain's voxel centres."""
    points = np.argwhere(labels > 0)[::50]
    distances = []
    for z, y, x in points:
        p = grid.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        distances.append(np.linalg.norm(np.subtract(a.TransformPoint(p), b.TransformPoint(p))))
    return float(np.mean(distances))


def score(pred: np.ndarray, subject: Subject) -> dict:
    """2D-slice and 3D metrics in the brain mask, and the mean |SUVR bias| vs the SD-PET (%) over the simulator's
    regions and over the lobes."""
    result = metrics.evaluate(pred, subject.sd, subject.brain)
    return {
        "psnr_2d": result["slices_2d"]["psnr"],
        "ssim_2d": result["slices_2d"]["ssim"],
        "nmse_2d": result["slices_2d"]["nmse"],
        "psnr_3d": result["psnr_3d"],
        "ssim_3d": result["ssim_3d"],
        "nmse_3d": result["nmse_3d"],
        "suvr_abs_bias_pct": mean_abs_suvr_bias(pred, subject, subject.labels),
        "suvr_abs_bias_lobar_pct": mean_abs_suvr_bias(pred, subject, subject.lobes),
    }


def lobar_labels(subject: Subject) -> np.ndarray:
    """The subject's labelmap with each lobe (and hemisphere) merged into one label and the reference region kept
    (as label 1); every other region is 0."""
    merged = np.zeros_like(subject.labels)
    merged[subject.labels == subject.reference_label] = 1
    by_name = {name: label for label, name in subject.names.items()}
    next_label = 2
    for regions in LOBES.values():
        for side in ("left", "right"):
            members = [by_name[f"{region}_{side}"] for region in regions if f"{region}_{side}" in by_name]
            if not members:
                raise ValueError(f"{subject.name}: no region of lobe {regions} ({side}) in its labels")
            merged[np.isin(subject.labels, members)] = next_label
            next_label += 1
    return merged


def mean_abs_suvr_bias(pred: np.ndarray, subject: Subject, labels: np.ndarray) -> float:
    """Mean over labels other than the reference of |SUVR(pred) - SUVR(SD)| / SUVR(SD), in %."""
    reference = int(np.unique(labels[subject.labels == subject.reference_label])[0])
    ref_suvr, pred_suvr = _suvr(subject.sd, labels, reference), _suvr(pred, labels, reference)
    return float(np.mean([100.0 * abs(pred_suvr[k] - ref_suvr[k]) / ref_suvr[k] for k in ref_suvr if k != reference]))


def _suvr(volume: np.ndarray, labels: np.ndarray, reference_label: int) -> dict[int, float]:
    flat = labels.ravel()
    counts = np.bincount(flat)
    means = np.bincount(flat, weights=volume.ravel().astype(np.float64)) / np.maximum(counts, 1)
    return {k: means[k] / means[reference_label] for k in range(1, len(counts)) if counts[k] > 0}


class NetworkMethod:
    """A trained checkpoint run through the product's own inference path (prepare -> sample -> fuse -> restore)."""

    def __init__(self, checkpoint: Path, steps: int, use_t1: bool, orientations: tuple[str, ...], fast: bool = False):
        self.sha256 = hashlib.sha256(checkpoint.read_bytes()).hexdigest()
        self.model, self.config, meta = load_checkpoint(checkpoint)
        train_config = meta.get("train_config", {})
        self.regression = train_config.get("mode") == "regression"
        self.steps = 1 if self.regression else steps
        self.diffusion = trained_process_diffusion(train_config, self.config.variance, self.steps)
        self.use_t1 = use_t1
        self.orientations = orientations
        self.fast = fast  # the speed levers bf16 autocast + channels-last

    def __call__(self, subject: Subject, drf: int, seed: int) -> np.ndarray:
        pet = subject.ld[drf]
        prepared = prepare_inputs(pet, subject.t1 if self.use_t1 else None, subject.t1_to_pet)
        options = InferenceOptions(steps=self.steps, orientations=self.orientations, seed=seed, device="cpu",
                                   bf16=self.fast, channels_last=self.fast)
        model = _RegressionCall(self.model) if self.regression else self.model
        generator = run_inference(model, self.diffusion, prepared.pet, prepared.t1, options, torch.device("cpu"))
        try:
            while True:
                next(generator)
        except StopIteration as stop:
            result = stop.value
        return sitk.GetArrayFromImage(restore_output(result.volume, prepared, pet))


class _RegressionCall:
    """The regression baseline sees x_t = 0 and t = 0 (how it was trained), whatever the sampler passes."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __call__(self, x_t, t, ld_pet, t1=None, t1_present=None):
        return self.model(torch.zeros_like(x_t), torch.zeros_like(t), ld_pet, t1, t1_present)

    def parameters(self):
        return self.model.parameters()


def choose_filters(val_subjects: list[Subject], drf: int) -> dict:
    """Gaussian FWHM and guided-filter (radius, epsilon) maximising the mean 2D PSNR on validation subjects."""
    def mean_psnr(filter_fn) -> float:
        return float(np.mean([score(filter_fn(s), s)["psnr_2d"] for s in val_subjects]))

    spacing = lambda s: s.ld[drf].GetSpacing()[::-1]  # noqa: E731 - [z, y, x]
    ld = lambda s: sitk.GetArrayFromImage(s.ld[drf])  # noqa: E731
    fwhm = max(GAUSSIAN_FWHM_MM, key=lambda f: mean_psnr(lambda s: gaussian_postfilter(ld(s), f, spacing(s))))
    radius, epsilon = max(
        itertools.product(GUIDED_RADIUS_MM, GUIDED_EPSILON),
        key=lambda p: mean_psnr(lambda s: guided_filter(ld(s), s.t1_on_pet, p[0], p[1], spacing(s))),
    )
    return {"gaussian_fwhm_mm": fwhm, "guided_radius_mm": radius, "guided_epsilon": epsilon}


# label: (run folder under --runs, use the T1, bf16 + channels-last)
NETWORKS = {
    "Regression UNet (LD-PET + T1)": ("regression", True, False),
    "V1 diffusion (PET only)": ("v1", True, False),
    "V2 diffusion (PET + T1 concatenated)": ("v2", True, False),
    "M2Diff": ("m2diff", True, False),
    "M2Diff without T1 (MRI-free)": ("m2diff", False, False),
}
FAST_ROW = {"M2Diff, bf16 + channels-last": ("m2diff", True, True)}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    test, val = _load_subjects(args)
    cached = _ScoreCache(args.cache / "scores.json")
    networks = {**NETWORKS, **(FAST_ROW if args.fast_row else {})}
    report: dict = {"subjects": [s.name for s in test], "validation_subjects": [s.name for s in val],
                    "registration_error_mm": {s.name: s.registration_error_mm for s in test},
                    "steps": args.steps, "orientations": list(args.orientations), "drf": {}}
    for drf in args.drf:
        report["drf"][str(drf)] = _drf_block(args, drf, test, val, networks, cached)
    sweep = _steps_sweep(args, test, cached)
    if sweep is not None:
        report["steps_sweep"] = sweep
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality.json").write_text(json.dumps(report, indent=1))
    (args.out / "quality.md").write_text(markdown(report))
    print(markdown(report))
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, required=True, help="folder of held-out sub-* folders")
    parser.add_argument("--val", type=Path, required=True, help="folder of validation sub-* folders (filter tuning)")
    parser.add_argument("--runs", type=Path, required=True, help="folder with <run>/checkpoints/best.pt")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--drf", type=int, nargs="+", default=[100])
    parser.add_argument("--network-drf", type=int, nargs="*", default=None,
                        help="DRFs at which the trained networks are evaluated (default: every --drf)")
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLING_STEPS,
                        help="sampling steps of the diffusion methods")
    parser.add_argument("--sweep", type=int, nargs="*", default=[1, 2, 5, 10, 25], help="M2Diff steps to sweep")
    parser.add_argument("--sweep-subjects", type=int, default=4)
    parser.add_argument("--sweep-orientations", nargs="+", default=None,
                        help="orientations of the steps sweep (default: --orientations)")
    parser.add_argument("--orientations", nargs="+", default=["axial", "coronal", "sagittal"])
    parser.add_argument("--fast-row", action="store_true",
                        help="also score M2Diff with bf16 autocast + channels-last (the speed levers)")
    parser.add_argument("--cached-only", action="store_true",
                        help="table rows only from --cache: a method not scored on every subject is left out")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/results/cache"),
                        help="scores and registrations already computed")
    return parser


def _load_subjects(args: argparse.Namespace) -> tuple[list[Subject], list[Subject]]:
    """(test, validation) subjects, registered (or their registration read from --cache)."""
    test_folders = sorted(p for p in args.test.iterdir() if p.name.startswith("sub-"))[: args.subjects]
    val_folders = sorted(p for p in args.val.iterdir() if p.name.startswith("sub-"))
    if len(test_folders) < 2:
        raise SystemExit("need at least 2 held-out subjects for paired t-tests")
    print(f"loading and registering {len(test_folders)} test + {len(val_folders)} validation subjects", flush=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    return ([load_subject(f, args.drf, args.cache) for f in test_folders],
            [load_subject(f, args.drf, args.cache) for f in val_folders])


def _drf_block(args: argparse.Namespace, drf: int, test: list[Subject], val: list[Subject], networks: dict,
               cached: _ScoreCache) -> dict:
    """One DRF's table: filters chosen on `val`, every method scored on `test`, t-tests against M2Diff."""
    chosen = choose_filters(val, drf)
    print(f"DRF {drf}: filters chosen on validation subjects: {chosen}", flush=True)
    methods = _classical_methods(drf, chosen)
    keys: dict[str, str] = {}
    if args.network_drf is None or drf in args.network_drf:
        network_methods, keys = _network_methods(args, drf, networks)
        methods.update(network_methods)
    rows = {}
    for label, method in methods.items():
        started = time.perf_counter()
        key = f"{label}|{keys.get(label, json.dumps(chosen, sort_keys=True))}|drf{drf}"
        if args.cached_only and not all(cached.has(f"{key}|{s.name}") for s in test):
            print(f"  {label}: not scored on every subject at DRF {drf} (--cached-only): left out", flush=True)
            continue
        rows[label] = [cached.get(f"{key}|{s.name}", lambda s=s: score(method(s), s)) for s in test]
        print(f"  {label}: {_summary(rows[label])} ({time.perf_counter() - started:.0f} s)", flush=True)
    return {"filters": chosen, "per_subject": rows, "ttest_vs_m2diff": _ttests(rows)}


def _classical_methods(drf: int, chosen: dict) -> dict:
    """label: subject -> [z, y, x] prediction, for the LD input and the two classical filters."""
    def ld(s: Subject) -> np.ndarray:
        return sitk.GetArrayFromImage(s.ld[drf])

    def spacing(s: Subject) -> tuple[float, ...]:
        return s.ld[drf].GetSpacing()[::-1]

    return {
        "LD input": ld,
        f"Gaussian post-filter (FWHM {chosen['gaussian_fwhm_mm']:g} mm)": lambda s: gaussian_postfilter(
            ld(s), chosen["gaussian_fwhm_mm"], spacing(s)),
        "MR-guided filter": lambda s: guided_filter(
            ld(s), s.t1_on_pet, chosen["guided_radius_mm"], chosen["guided_epsilon"], spacing(s)),
    }


def _network_methods(args: argparse.Namespace, drf: int, networks: dict) -> tuple[dict, dict[str, str]]:
    """(label: subject -> prediction, label: cache key of its weights and settings) of the runs found."""
    orientations = tuple(args.orientations)
    methods, keys = {}, {}
    for label, (run, use_t1, fast) in networks.items():
        checkpoint = args.runs / run / "checkpoints" / "best.pt"
        if not checkpoint.exists():
            print(f"  skipping {label}: {checkpoint} not found", flush=True)
            continue
        network = NetworkMethod(checkpoint, args.steps, use_t1, orientations, fast)
        methods[label] = lambda s, n=network: n(s, drf, seed=0)
        keys[label] = (f"{network.sha256[:16]}-steps{network.steps}-{'-'.join(orientations)}"
                       + ("-fast" if fast else ""))
    return methods, keys


def _steps_sweep(args: argparse.Namespace, test: list[Subject], cached: _ScoreCache) -> dict | None:
    """M2Diff scored at each --sweep step count on the first --sweep-subjects (None without a sweep or weights)."""
    m2diff_checkpoint = args.runs / "m2diff" / "checkpoints" / "best.pt"
    if not args.sweep or not m2diff_checkpoint.exists():
        return None
    drf = args.drf[0]
    subjects = test[: args.sweep_subjects]
    orientations = tuple(args.sweep_orientations or args.orientations)
    sweep = {}
    for steps in args.sweep:
        network = NetworkMethod(m2diff_checkpoint, steps, True, orientations)
        key = f"M2Diff|{network.sha256[:16]}-steps{network.steps}-{'-'.join(orientations)}|drf{drf}"
        sweep[str(steps)] = [cached.get(f"{key}|{s.name}", lambda s=s, n=network: score(n(s, drf, seed=0), s))
                             for s in subjects]
        print(f"  M2Diff {steps} steps: {_summary(sweep[str(steps)])}", flush=True)
    return {"drf": drf, "subjects": [s.name for s in subjects], "orientations": list(orientations), "rows": sweep}


class _ScoreCache:
    """Scores already computed, in one JSON file written after each new entry."""

    def __init__(self, path: Path):
        self.path = path
        self.scores = json.loads(path.read_text()) if path.exists() else {}

    def has(self, key: str) -> bool:
        """Scored, with every metric of KEYS (entries from before a metric was added are recomputed)."""
        return key in self.scores and set(KEYS) <= self.scores[key].keys()

    def get(self, key: str, compute) -> dict:
        if not self.has(key):
            self.scores[key] = compute()
            self.path.write_text(json.dumps(self.scores, indent=1))
        return self.scores[key]


KEYS = ("psnr_2d", "ssim_2d", "nmse_2d", "psnr_3d", "ssim_3d", "suvr_abs_bias_pct",
        "suvr_abs_bias_lobar_pct")


def _summary(rows: list[dict]) -> str:
    return ", ".join(f"{k} {np.mean([r[k] for r in rows]):.4g}" for k in KEYS)


def _ttests(rows: dict[str, list[dict]]) -> dict:
    if "M2Diff" not in rows:
        return {}
    return {label: {k: metrics.paired_ttest([r[k] for r in values], [r[k] for r in rows["M2Diff"]]) for k in KEYS}
            for label, values in rows.items() if label != "M2Diff"}


def markdown(report: dict) -> str:
    lines = [f"Held-out subjects: {', '.join(report['subjects'])}; diffusion sampling: {report['steps']} DDIM steps, "
             f"orientations {', '.join(report['orientations'])}. Mean ± SD over subjects; p: paired t-test vs M2Diff "
             "(PSNR 2D).", ""]
    for drf, block in report["drf"].items():
        lines += [f"### DRF {drf}", "",
                  "| method | PSNR 2D (dB) | SSIM 2D | NMSE 2D | PSNR 3D (dB) | SSIM 3D "
                  "| mean abs SUVR bias, regions (%) | mean abs SUVR bias, lobes (%) | p |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for label, rows in block["per_subject"].items():
            cells = [f"{np.mean([r[k] for r in rows]):.4g} ± {np.std([r[k] for r in rows]):.2g}" for k in KEYS]
            p = block["ttest_vs_m2diff"].get(label, {}).get("psnr_2d", {}).get("p")
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {'' if p is None else f'{p:.2g}'} |")
        lines.append("")
    if "steps_sweep" in report:
        sweep = report["steps_sweep"]
        lines += [f"### M2Diff quality vs sampling steps (DRF {sweep['drf']}, {len(sweep['subjects'])} subjects, "
                  f"orientations {', '.join(sweep['orientations'])})", "",
                  "| steps | PSNR 2D (dB) | SSIM 2D | mean abs SUVR bias, regions (%) | lobes (%) |",
                  "|---|---|---|---|---|"]
        columns = ("psnr_2d", "ssim_2d", "suvr_abs_bias_pct", "suvr_abs_bias_lobar_pct")
        for steps, rows in sweep["rows"].items():
            lines.append(f"| {steps} | " + " | ".join(f"{np.mean([r[k] for r in rows]):.4g}" for k in columns) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
