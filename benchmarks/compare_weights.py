"""Choose weights or sampling steps on validation subjects: each candidate through the product pipeline, per case.

    python benchmarks/compare_weights.py --val data/val_hi --drf 50 200 400 --cache runs/compare \
        --weights old=m2diff-small-rand new=runs/candidate/checkpoints/best.pt [--steps 1 2] [--out DIR --name N]

Every case is enhanced once per candidate weights and sampling steps K (safeguard off, cached under --cache/LABEL
in benchmarks/robustness.py's layout) and scored as robustness.py scores it: 2D-slice PSNR / SSIM in the brain
mask and the mean |lobar SUVR bias| against the SD-PET, with the LD-PET's own PSNR beside. Validation subjects
only: this picks a release or a default, so it must not look at held-out data.
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
    parser.add_argument("--steps", type=int, nargs="+", default=[DEFAULT_SAMPLING_STEPS], help="sampling steps K")
    parser.add_argument("--drf", type=float, nargs="*", default=None, help="only these DRFs (default: every file)")
    parser.add_argument("--subjects", type=int, default=0, help="first N subjects of each folder (0: all)")
    parser.add_argument("--cache", type=Path, default=Path("runs/compare"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--name", default="compare_weights", help="file name of the .md and .json written")
    args = parser.parse_args(argv)
    candidates = dict(spec.split("=", 1) for spec in args.weights)
    subjects = [s for folder in args.val for s in sorted(folder.glob("sub-*"))[:args.subjects or None]]
    refused: list[str] = []
    rows = []
    for label, weights in candidates.items():
        for steps in args.steps:
            for case in cases(subjects, args.cache / label, refused, args.drf, weights=weights, steps=steps):
                rows.append({"weights": label, "steps": steps, "subject": case["subject"], "drf": case["drf"],
                             "noise_level": case["noise_level"], "LD psnr": score(case["ld"], case)["psnr"],
                             **score(case["m2diff"], case)})
    report = markdown(rows, candidates, len(subjects)) + "".join(f"\nRefused by the pipeline: {line}\n"
                                                                 for line in refused)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / f"{args.name}.json", json.dumps({"weights": candidates, "rows": rows,
                                                                   "refused": refused}, indent=1))
    write_text_atomic(args.out / f"{args.name}.md", report)
    print(report)
    return 0


def markdown(rows: list[dict], candidates: dict[str, str], subjects: int) -> str:
    """Every case, then the mean per (weights, K, DRF) and per (weights, K)."""
    lines = [f"{subjects} validation subject(s), safeguard off; "
             + ", ".join(f"{label} = {weights}" for label, weights in candidates.items()), "",
             "| weights | K | subject | DRF | noise | LD PSNR | PSNR | SSIM | lobar bias % |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['weights']} | {r['steps']} | {r['subject']} | {r['drf']:g} | {r['noise_level']:.3f} | "
              f"{r['LD psnr']:.2f} | {r['psnr']:.2f} | {r['ssim']:.3f} | {r['lobar_bias']:.2f} |" for r in rows]
    lines += ["", "| weights | K | DRF | cases | mean PSNR | mean SSIM | mean lobar bias % |",
              "|---|---|---|---|---|---|---|"]
    groups = sorted({(r["weights"], r["steps"]) for r in rows}, key=lambda g: (list(candidates).index(g[0]), g[1]))
    for label, steps in groups:
        mine = [r for r in rows if (r["weights"], r["steps"]) == (label, steps)]
        for drf in [*sorted({r["drf"] for r in mine}), None]:
            cell = [r for r in mine if drf is None or r["drf"] == drf]
            mean = lambda key: float(np.mean([r[key] for r in cell]))  # noqa: E731
            lines.append(f"| {label} | {steps} | {'all' if drf is None else f'{drf:g}'} | {len(cell)} | "
                         f"{mean('psnr'):.2f} | {mean('ssim'):.4f} | {mean('lobar_bias'):.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
