"""What the number of sampling steps K buys: M2Diff through the product pipeline at each K on validation subjects.

    python benchmarks/sampling_steps.py --val data/rob_val --steps 1 2 --drf 4 20 100 --cache runs/robustness \
        [--subjects 2] [--weights ID] [--out benchmarks/results]

Every case is enhanced (safeguard off, cached exactly as benchmarks/robustness.py caches it, so the two share
runs) and scored as robustness.py scores it: 2D-slice PSNR / SSIM in the brain mask and the mean |lobar SUVR bias|
against the SD-PET. Validation subjects only: this chooses a default, so it must not look at held-out data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from robustness import catalogue_entry, cases, score
from M2DiffSlicer.atomic import write_text_atomic


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", nargs="+", type=Path, required=True, help="folders of validation subject folders")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2], help="sampling steps K to compare")
    parser.add_argument("--drf", type=float, nargs="*", default=None, help="only these DRFs (default: every file)")
    parser.add_argument("--subjects", type=int, default=0, help="first N subjects of each folder (0: all)")
    parser.add_argument("--cache", type=Path, default=Path("runs/robustness"))
    parser.add_argument("--weights", default=None, metavar="ID", help="catalogue id (default: the default)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    entry = catalogue_entry(args.weights)
    subjects = [s for folder in args.val for s in sorted(folder.glob("sub-*"))[:args.subjects or None]]
    refused: list[str] = []
    rows = []
    for steps in args.steps:
        for case in cases(subjects, args.cache, refused, args.drf, weights=entry.id, steps=steps):
            rows.append({"steps": steps, "subject": case["subject"], "drf": case["drf"],
                         **score(case["m2diff"], case)})
    lines = [f"Weights {entry.id} {entry.version}; {len(subjects)} validation subject(s); safeguard off.", "",
             f"| K | DRF | n | PSNR | SSIM | lobar bias % | PSNR vs K = {args.steps[0]} |",
             "|---|---|---|---|---|---|---|"]
    first = {(r["subject"], r["drf"]): r["psnr"] for r in rows if r["steps"] == args.steps[0]}
    for steps in args.steps:
        for drf in sorted({r["drf"] for r in rows}):
            cell = [r for r in rows if r["steps"] == steps and r["drf"] == drf]
            mean = lambda key: float(np.mean([r[key] for r in cell]))  # noqa: E731
            delta = np.mean([r["psnr"] - first[(r["subject"], r["drf"])] for r in cell])
            lines.append(f"| {steps} | {drf:g} | {len(cell)} | {mean('psnr'):.2f} | {mean('ssim'):.4f} | "
                         f"{mean('lobar_bias'):.2f} | {delta:+.3f} |")
    report = "\n".join(lines) + "\n" + "".join(f"\nRefused by the pipeline: {line}\n" for line in refused)
    args.out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out / "sampling_steps.json", json.dumps({"weights": f"{entry.id} {entry.version}",
                                                                     "rows": rows, "refused": refused}, indent=1))
    write_text_atomic(args.out / "sampling_steps.md", report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
