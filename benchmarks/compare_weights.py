"""Choose between candidate weights on validation subjects: each through the product pipeline, scored per case.

    python benchmarks/compare_weights.py --val data/val_hi --drf 50 200 400 --cache runs/compare \
        --weights old=m2diff-small-rand new=runs/candidate/checkpoints/best.pt [--out benchmarks/results]

Every case is enhanced once per candidate (default sampling steps, safeguard off, cached under --cache/LABEL in
benchmarks/robustness.py's layout) and scored as robustness.py scores it: 2D-slice PSNR / SSIM in the brain mask
and the mean |lobar SUVR bias| against the SD-PET, with the LD-PET's own scores beside. Validation subjects only:
this picks a release, so it must not look at held-out data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from robustness import cases, score
from M2DiffSlicer.atomic import write_text_atomic
from M2DiffSlicer.options import DEFAULT_SAMPLING_STEPS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", nargs="+", type=Path, required=True, help="folders of validation subject folders")
    parser.add_argument("--weights", nargs="+", required=True, metavar="LABEL=WEIGHTS",
                        help="candidates: a label and a catalogue id or checkpoint path")
    parser.add_argument("--drf", type=float, nargs="*", default=None, help="only these DRFs (default: every file)")
    parser.add_argument("--cache", type=Path, default=Path("runs/compare"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    candidates = dict(spec.split("=", 1) for spec in args.weights)
    subjects = [s for folder in args.val for s in sorted(folder.glob("sub-*"))]
    refused: list[str] = []
    rows = []
    for label, weights in candidates.items():
        for case in cases(subjects, args.cache / label, refused, args.drf, weights=weights):
            rows.append({"weights": label, "subject": case["subject"], "drf": case["drf"],
                         "noise_level": case["noise_level"], "LD psnr": score(case["ld"], case)["psnr"],
                         **score(case["m2diff"], case)})
    lines = [f"{len(subjects)} validation subject(s), {DEFAULT_SAMPLING_STEPS} sampling step(s), safeguard off; "
             + ", ".join(f"{label} = {weights}" for label, weights in candidates.items()), "",
             "| weights | subject | DRF | noise | LD PSNR | PSNR | SSIM | lobar bias % |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['weights']} | {r['subject']} | {r['drf']:g} | {r['noise_level']:.3f} | {r['LD psnr']:.2f} | "
              f"{r['psnr']:.2f} | {r['ssim']:.3f} | {r['lobar_bias']:.2f} |" for r in rows]
    lines += ["", "| weights | cases | mean PSNR | mean SSIM | mean lobar bias % |", "|---|---|---|---|---|"]
    for label in candidates:
        mine = [r for r in rows if r["weights"] == label]
        mean = lambda key: float(np.mean([r[key] for r in mine]))  # noqa: E731
        lines.append(f"| {label} | {len(mine)} | {mean('psnr'):.2f} | {mean('ssim'):.4f} | {mean('lobar_bias'):.2f} |")
    report = "\n".join(lines) + "\n" + "".join(f"\nRefused by the pipeline: {line}\n" for line in refused)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "compare_weights.json", json.dumps({"weights": candidates, "rows": rows,
                                                                      "refused": refused}, indent=1))
    write_text_atomic(args.out / "compare_weights.md", report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
