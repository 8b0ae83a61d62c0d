"""Robustness across scanners, doses and fields of view: LD, best Gaussian, M2Diff raw and behind its safeguard.

    python benchmarks/robustness.py --val data/val --test default=data/d4 sharp=data/sharp clinical=data/clin \
        --cache runs/robustness --out benchmarks/results [--weights ID] [--steps K] [--calibrate] \
        [--mri-free [NAME ...]]

Every low-dose PET of each subject folder (meta.json's DRFs) is enhanced once through the product's pipeline with
the default weights (or --weights), the default sampling steps (or --steps) and the safeguard off (cached); the
safeguard's blend and uptake anchor are then applied exactly as the pipeline applies them. The safeguard ramp
(noise_off, noise_full), then the anchor's law (FWHM at the reference noise, power) are chosen on the --val subjects
only (maximum mean PSNR); with --calibrate they, and the scores of the 'default' test configuration, are
recorded in the scored model's catalogue entry. The Gaussian FWHM is chosen per DRF on --val too.
Scores: 2D-slice PSNR/SSIM inside the subject's brain mask against its SD-PET, the mean |SUVR bias| over the
lobes (quality.py's LOBES, cerebellar reference) and paired t-tests over subjects; "meets bar" is issue 17's
criterion (meets_criteria). With --mri-free the test cases (of the NAMEd configurations; all when none is named)
are also enhanced without their T1.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import SimpleITK as sitk

from filters import gaussian_postfilter
from quality import lobar_labels, mean_abs_suvr_bias
from M2DiffSlicer.atomic import write_text_atomic
from M2DiffSlicer.enhance.job import EnhanceJob
from M2DiffSlicer.enhance.pipeline import enhance
from M2DiffSlicer.enhance.input_check import trained_ranges
from M2DiffSlicer.enhance.safeguard import ANCHOR_REFERENCE_NOISE, Safeguard, anchor_uptake
from M2DiffSlicer.errors import BadInputError
from M2DiffSlicer.imaging import metrics
from M2DiffSlicer.model.catalogue import default_entry, load_catalogue
from M2DiffSlicer.options import DEFAULT_SAMPLING_STEPS
from M2DiffSlicer.resources import resource_path
from M2DiffSlicer.subject_files import ld_file, ld_name
from M2DiffSlicer.training.data import low_dose_levels

METHODS = ("LD", "Gaussian", "M2Diff raw", "M2Diff", "M2Diff MRI-free")
SCORES = ("psnr", "ssim", "lobar_bias")
GAUSSIAN_FWHM_MM = (0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)
RAMP_GRID = np.round(np.arange(0.0, 0.0601, 0.001), 4)
WEIGHTS = np.linspace(0.0, 1.0, 21)
METRICS_CONFIGURATION = "default"  # the --test name whose rows --calibrate writes into the catalogue
ANCHOR_GRID_MM = (4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 30.0)  # spans safeguard.ANCHOR_FWHM_RANGE_MM
ANCHOR_FWHM_AT_REFERENCE = np.arange(4.0, 24.1, 1.0)
ANCHOR_POWERS = np.arange(0.0, 2.01, 0.25)


def enhanced_case(folder: Path, drf: float, cache: Path, mri_free: bool = False, weights: str | None = None,
                  steps: int = DEFAULT_SAMPLING_STEPS) -> dict:
    """LD, SD, mask, lobes, the raw M2Diff output(s) (arrays on the PET grid) and the input's noise level of one
    case at `steps` sampling steps; with `mri_free` also the network's output without the T1 (key
    "m2diff_mri_free")."""
    ld_path = folder / ld_file(drf)
    case_cache = cache / folder.parent.name / folder.name / f"{ld_name(drf).removeprefix('ld_')}-k{steps}"
    runs = {"m2diff": _enhanced(folder, ld_path, case_cache, True, weights, steps)}
    if mri_free:
        runs["m2diff_mri_free"] = _enhanced(folder, ld_path, case_cache.with_name(f"{case_cache.name}-mri-free"),
                                            False, weights, steps)
    read = lambda name: sitk.GetArrayFromImage(sitk.ReadImage(str(name), sitk.sitkFloat32))  # noqa: E731
    ld_image = sitk.ReadImage(str(ld_path), sitk.sitkFloat32)
    noise = json.loads((runs["m2diff"].parent / "report.json").read_text())["input_profile"]["noise_level"]["value"]
    meta = json.loads((folder / "meta.json").read_text())
    names = {int(k): v for k, v in meta["labels"].items()}
    regions = SimpleNamespace(name=folder.name, labels=read(folder / "roi_pet.nii.gz").astype(np.int32), names=names,
                              reference_label=next(k for k, v in names.items() if v == meta["reference_region"]))
    return {"subject": folder.name, "drf": drf, "ld": sitk.GetArrayFromImage(ld_image),
            "spacing": ld_image.GetSpacing()[::-1], "sd": read(folder / "pet_sd.nii.gz"),
            "mask": read(folder / "brain_pet.nii.gz") > 0.5, "regions": regions, "lobes": lobar_labels(regions),
            "noise_level": float(noise), **{key: read(path) for key, path in runs.items()}}


def _enhanced(folder: Path, ld_path: Path, out: Path, with_t1: bool, weights: str | None, steps: int) -> Path:
    """The product pipeline's output for one LD-PET (`weights`, None for the default; `steps`; safeguard off),
    enhanced once and cached."""
    output, report = out / "enhanced.nii.gz", out / "report.json"
    if not report.is_file():
        out.mkdir(parents=True, exist_ok=True)
        job = {"pet": str(ld_path), "output": str(output), "report": str(report), "device": "cpu",
               "safeguard": False, "weights": weights, "steps": steps}
        if with_t1:
            job["t1"] = str(folder / "t1.nii.gz")
        enhance(EnhanceJob.from_dict(job))
    return output


def cases(folders: list[Path], cache: Path, refused: list[str], drfs: list[float] | None,
          mri_free: bool = False, weights: str | None = None, steps: int = DEFAULT_SAMPLING_STEPS) -> list[dict]:
    """Every (subject, DRF) case of the subject folders (only `drfs` when given), enhanced (or read from the
    cache); inputs the pipeline refuses are listed in `refused` with its message."""
    found = []
    for folder in folders:
        for drf in low_dose_levels(folder):
            if drfs is not None and drf not in drfs:
                continue
            try:
                found.append(enhanced_case(folder, drf, cache, mri_free, weights, steps))
            except BadInputError as error:
                refused.append(f"{folder.parent.name}/{folder.name} DRF {drf:g}: {error}")
                print(refused[-1], file=sys.stderr)
                continue
            print(f"{folder.parent.name}/{folder.name} DRF {found[-1]['drf']:g}: noise "
                  f"{found[-1]['noise_level']:.4f}", file=sys.stderr)
    return found


def score(pred: np.ndarray, case: dict) -> dict[str, float]:
    """2D-slice PSNR and SSIM in the brain mask and the mean |lobar SUVR bias| (%) against the SD-PET."""
    result = metrics.slice_metrics(pred, case["sd"], case["mask"])
    regions = SimpleNamespace(**vars(case["regions"]), sd=case["sd"])
    return {"psnr": result["psnr"], "ssim": result["ssim"],
            "lobar_bias": mean_abs_suvr_bias(pred, regions, case["lobes"])}


def safeguarded(case: dict, ramp: Safeguard, key: str = "m2diff") -> np.ndarray:
    """The network output `key` blended with the input and anchored to its coarse uptake, as the pipeline's
    safeguard does it."""
    weight = ramp.weight(case["noise_level"])
    blended = case["ld"] + np.float32(weight) * (case[key] - case["ld"])
    fwhm = ramp.anchor_fwhm(case["noise_level"])
    return blended if fwhm is None or weight == 0.0 else _anchored(case, blended, fwhm)


def _anchored(case: dict, pred: np.ndarray, fwhm_mm: float) -> np.ndarray:
    anchored, _ = anchor_uptake(_image(case["ld"], case), _image(pred, case), fwhm_mm)
    return sitk.GetArrayFromImage(anchored)


def _image(array: np.ndarray, case: dict) -> sitk.Image:
    image = sitk.GetImageFromArray(np.asarray(array, np.float32))
    image.SetSpacing([float(s) for s in case["spacing"][::-1]])
    return image


def meets_criteria(row: dict, method: str = "M2Diff") -> bool:
    """Issue 17's bar for one cell: `method` >= its input and >= the best Gaussian in PSNR and SSIM, and a mean
    lobar SUVR bias at most max(1.5 %, the input's + 0.3 %)."""
    return (all(row[f"{method} {k}"] >= max(row[f"LD {k}"], row[f"Gaussian {k}"]) for k in ("psnr", "ssim"))
            and row[f"{method} lobar_bias"] <= max(1.5, row["LD lobar_bias"] + 0.3))


def calibrate_ramp(val: list[dict], ceiling: float) -> Safeguard:
    """The (noise_off, noise_full) of RAMP_GRID with the highest mean validation PSNR, with noise_full at most
    `ceiling` (the least noise among the training inputs): an input like the training data keeps the full
    correction, so the held-out quality table of the in-distribution setting stays what it measures."""
    curves = [_psnr_curve(c) for c in val]  # PSNR at each of WEIGHTS, interpolated in between
    best, best_psnr = None, -np.inf
    for low, high in itertools.combinations(RAMP_GRID[RAMP_GRID <= ceiling], 2):
        ramp = Safeguard(float(low), float(high))
        mean_psnr = float(np.mean([np.interp(ramp.weight(c["noise_level"]), WEIGHTS, curve)
                                   for c, curve in zip(val, curves)]))
        if mean_psnr > best_psnr:
            best, best_psnr = ramp, mean_psnr
    return best


def calibrate_anchor(val: list[dict], ramp: Safeguard) -> Safeguard:
    """`ramp` with the uptake anchor's (anchor_fwhm_mm, anchor_power) of ANCHOR_FWHM_AT_REFERENCE x ANCHOR_POWERS
    that gives the highest mean validation PSNR (each case's PSNR interpolated over ANCHOR_GRID_MM), or `ramp`
    without an anchor when none beats it."""
    curves = [[_slice_psnr(_anchored(c, safeguarded(c, ramp), f), c) for f in ANCHOR_GRID_MM] for c in val]
    plain = float(np.mean([_slice_psnr(safeguarded(c, ramp), c) for c in val]))
    best, best_psnr = ramp, plain
    for fwhm, power in itertools.product(ANCHOR_FWHM_AT_REFERENCE, ANCHOR_POWERS):
        law = dataclasses.replace(ramp, anchor_fwhm_mm=float(fwhm), anchor_power=float(power))
        mean_psnr = float(np.mean([np.interp(law.anchor_fwhm(c["noise_level"]), ANCHOR_GRID_MM, curve)
                                   for c, curve in zip(val, curves)]))
        if mean_psnr > best_psnr:
            best, best_psnr = law, mean_psnr
    return best


def _psnr_curve(case: dict) -> np.ndarray:
    """2D-slice PSNR (as metrics.slice_metrics computes it) of input + w (network - input) at each of WEIGHTS."""
    return np.array([_slice_psnr(case["ld"] + np.float32(w) * (case["m2diff"] - case["ld"]), case) for w in WEIGHTS])


def _slice_psnr(pred: np.ndarray, case: dict) -> float:
    p, r = metrics.normalise(pred, case["sd"], case["mask"])
    values = [10.0 * np.log10(1.0 / max(float(np.mean((p[k][m] - r[k][m]) ** 2)), 1e-20))
              for k, m in enumerate(case["mask"]) if m.sum() >= 100]
    return float(np.mean(values))


def gaussian_per_drf(val: list[dict]) -> dict[int, float]:
    """The Gaussian FWHM (mm) with the highest mean validation PSNR, per DRF."""
    chosen = {}
    for drf in sorted({c["drf"] for c in val}):
        at_drf = [c for c in val if c["drf"] == drf]
        chosen[drf] = max(GAUSSIAN_FWHM_MM, key=lambda f: np.mean(
            [score(gaussian_postfilter(c["ld"], f, c["spacing"]), c)["psnr"] for c in at_drf]))
    return chosen


def nearest_fwhm(chosen: dict[int, float], drf: int) -> float:
    """The validation choice at the DRF closest (in log dose) to `drf`."""
    return chosen[min(chosen, key=lambda d: abs(np.log(d) - np.log(drf)))]


def table(groups: dict[str, list[dict]], ramp: Safeguard, fwhm: dict[int, float]) -> list[dict]:
    """One row per (configuration, DRF): mean scores of every method and the paired tests of M2Diff."""
    rows = []
    for name, group in groups.items():
        for drf in sorted({c["drf"] for c in group}):
            at = [c for c in group if c["drf"] == drf]
            methods = {"LD": [c["ld"] for c in at],
                       "Gaussian": [gaussian_postfilter(c["ld"], nearest_fwhm(fwhm, drf), c["spacing"]) for c in at],
                       "M2Diff raw": [c["m2diff"] for c in at],
                       "M2Diff": [safeguarded(c, ramp) for c in at]}
            if all("m2diff_mri_free" in c for c in at):
                methods["M2Diff MRI-free"] = [safeguarded(c, ramp, "m2diff_mri_free") for c in at]
            scores = {m: [score(p, c) for p, c in zip(preds, at)] for m, preds in methods.items()}
            row = {"config": name, "drf": drf, "subjects": len(at), "subject_names": [c["subject"] for c in at],
                   "noise_level": float(np.mean([c["noise_level"] for c in at])),
                   "weight": float(np.mean([ramp.weight(c["noise_level"]) for c in at])),
                   **{f"{m} {k}": float(np.mean([s[k] for s in v])) for m, v in scores.items() for k in SCORES},
                   "p vs LD": _p(scores["M2Diff"], scores["LD"]),
                   "p vs Gaussian": _p(scores["M2Diff"], scores["Gaussian"])}
            row["meets"] = meets_criteria(row)
            rows.append(row)
    return rows


def _p(a: list[dict], b: list[dict]) -> float | None:
    if len(a) < 2:
        return None
    return metrics.paired_ttest([s["psnr"] for s in a], [s["psnr"] for s in b])["p"]


def markdown(rows: list[dict], ramp: Safeguard, fwhm: dict[int, float]) -> str:
    """The rows as a Markdown table: PSNR / SSIM / lobar bias of each method, paired p-values, the bar met."""
    methods = [m for m in METHODS if any(f"{m} psnr" in r for r in rows)]
    head = ("| config | DRF | n | noise | w | " + " | ".join(f"{m} PSNR / SSIM / bias %" for m in methods)
            + " | p vs LD | p vs Gauss | meets bar |")
    anchor = ("none" if ramp.anchor_fwhm_mm is None else
              f"FWHM {ramp.anchor_fwhm_mm:g} mm x (noise / {ANCHOR_REFERENCE_NOISE:g}) ^ {ramp.anchor_power:g}")
    lines = [f"Safeguard ramp: noise_off {ramp.noise_off}, noise_full {ramp.noise_full}; uptake anchor: {anchor}; "
             f"Gaussian FWHM per DRF (validation): {fwhm}", "", head, "|" + "---|" * (8 + len(methods))]
    for r in rows:
        cells = " | ".join(f"{r[f'{m} psnr']:.2f} / {r[f'{m} ssim']:.3f} / {r[f'{m} lobar_bias']:.2f}"
                           if f"{m} psnr" in r else "-" for m in methods)
        p = lambda v: "-" if v is None else f"{v:.2g}"  # noqa: E731
        lines.append(f"| {r['config']} | {r['drf']:g} | {r['subjects']} | {r['noise_level']:.4f} | {r['weight']:.2f} | "
                     f"{cells} | {p(r['p vs LD'])} | {p(r['p vs Gaussian'])} | {'yes' if r['meets'] else 'no'} |")
    return "\n".join(lines) + "\n"


def catalogue_entry(model_id: str | None):
    """The catalogue entry `model_id`, or the default one."""
    if model_id is None:
        return default_entry()
    found = [e for e in load_catalogue() if e.id == model_id]
    if not found:
        raise SystemExit(f"no catalogue entry {model_id!r}")
    return found[0]


def record_calibration(model_id: str, ramp: Safeguard, metrics: dict | None) -> None:
    """Write the calibrated safeguard into the catalogue entry `model_id`, and the `metrics` it scores (the
    entry's held-out metrics are M2Diff behind its safeguard, so a new safeguard makes the old ones stale)."""
    path = resource_path("Models", "models.json")
    catalogue = json.loads(path.read_text(encoding="utf-8"))
    entry = next(item for item in catalogue if item["id"] == model_id)
    entry["training"]["safeguard"] = {"noise_off": ramp.noise_off, "noise_full": ramp.noise_full,
                                      "anchor_fwhm_mm": ramp.anchor_fwhm_mm, "anchor_power": ramp.anchor_power,
                                      "chosen_on": "benchmarks/robustness.py --calibrate, validation subjects only"}
    if metrics is not None:
        entry["metrics"] = metrics
    write_text_atomic(path, json.dumps(catalogue, indent=2) + "\n")


def catalogue_metrics(robustness: Path, configuration: str) -> dict:
    """Mean M2Diff scores (behind its safeguard) per DRF of one held-out configuration of benchmarks/robustness.py's
    JSON, noisiest first."""
    report = json.loads(robustness.read_text())
    rows = [r for r in report["rows"] if r["config"] == configuration]
    if not rows:
        raise SystemExit(f"{robustness} has no rows for the configuration {configuration!r}")
    if "subject_names" not in rows[0]:
        raise SystemExit(f"{robustness} predates robustness.py naming each row's subjects: run it again (cached)")
    # Reports written before robustness.py recorded its steps ran at the default of that time, 2.
    metrics: dict = {"subjects": rows[0]["subject_names"], "sampling_steps": report.get("steps", 2),
                     "scored_by": f"benchmarks/robustness.py: held-out {configuration!r} configuration (never trained "
                                  f"on), M2Diff behind its safeguard; the other configurations in {robustness.name}"}
    for row in sorted(rows, key=lambda r: -r["drf"]):
        metrics[f"drf{row['drf']:g}"] = {"psnr_2d": round(row["M2Diff psnr"], 4),
                                         "ssim_2d": round(row["M2Diff ssim"], 4),
                                         "suvr_abs_bias_lobar_pct": round(row["M2Diff lobar_bias"], 4)}
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", nargs="+", type=Path, required=True, help="folders of validation subject folders")
    parser.add_argument("--test", nargs="*", default=[], metavar="NAME=DIR", help="held-out configurations")
    parser.add_argument("--cache", type=Path, default=Path("runs/robustness"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--drf", type=float, nargs="*", default=None, help="only these DRFs (default: every file)")
    parser.add_argument("--weights", default=None, metavar="ID", help="catalogue id to score (default: the default)")
    parser.add_argument("--steps", type=int, default=DEFAULT_SAMPLING_STEPS, help="sampling steps K")
    parser.add_argument("--calibrate", action="store_true", help="record the safeguard, and the "
                        f"{METRICS_CONFIGURATION!r} rows' scores, in the scored model's entry")
    parser.add_argument("--mri-free", nargs="*", default=None, metavar="NAME",
                        help="also score these test configurations (all when none is named) enhanced without T1")
    args = parser.parse_args(argv)
    refused: list[str] = []
    entry = catalogue_entry(args.weights)
    val = cases([s for folder in args.val for s in sorted(folder.glob("sub-*"))], args.cache, refused, args.drf,
                weights=entry.id, steps=args.steps)
    ceiling = trained_ranges(entry.path)["noise_level"][0]
    ramp, fwhm = calibrate_anchor(val, calibrate_ramp(val, ceiling)), gaussian_per_drf(val)
    groups = {"validation": val}
    for spec in args.test:
        name, folder = spec.split("=", 1)
        mri_free = args.mri_free is not None and (not args.mri_free or name in args.mri_free)
        groups[name] = cases(sorted(Path(folder).glob("sub-*")), args.cache, refused, args.drf, mri_free,
                             entry.id, args.steps)
    rows = table(groups, ramp, fwhm)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "robustness.json", json.dumps({"weights": f"{entry.id} {entry.version}",
                                                                 "steps": args.steps, "ramp": vars(ramp),
                                                                 "fwhm": fwhm, "rows": rows, "refused": refused},
                                                                indent=1))
    report = (f"Weights {entry.id} {entry.version}, {args.steps} sampling step(s).\n\n" + markdown(rows, ramp, fwhm)
              + "".join(f"\nRefused by the pipeline: {line}\n" for line in refused))
    write_text_atomic(args.out / "robustness.md", report)
    if args.calibrate:
        scored = any(r["config"] == METRICS_CONFIGURATION for r in rows)
        record_calibration(entry.id, ramp, catalogue_metrics(args.out / "robustness.json", METRICS_CONFIGURATION)
                           if scored else None)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
