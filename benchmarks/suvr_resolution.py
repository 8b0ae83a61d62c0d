"""How much regional SUVR bias resolution loss alone causes: the SD-PET blurred by a Gaussian, scored against itself.

    python benchmarks/suvr_resolution.py --test data/test --fwhm 2 3 4 6 --out benchmarks/results

Uses quality.py's subjects and metrics (SUVR bias over the simulator's regions and over the lobes, reference as in
meta.json), so its numbers read against the quality table's: a method whose bias equals the SD-PET blurred by
x mm loses about as much regional contrast as that blur does. Writes suvr_resolution.md and .json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality  # noqa: E402 - the sibling benchmark script

from filters import gaussian_postfilter  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--test", type=Path, required=True, help="folder of sub-* folders")
    parser.add_argument("--fwhm", type=float, nargs="+", default=[2.0, 3.0, 4.0, 6.0], help="blurs in mm")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/results/cache"),
                        help="quality.py's cache: loading a subject reuses its T1 registration from there")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)

    folders = sorted(p for p in args.test.iterdir() if p.name.startswith("sub-"))
    args.cache.mkdir(parents=True, exist_ok=True)
    subjects = [quality.load_subject(f, [100], args.cache) for f in folders]
    rows = {f"{fwhm:g}": blur_row(subjects, fwhm) for fwhm in args.fwhm}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "suvr_resolution.json").write_text(json.dumps({"subjects": [s.name for s in subjects], "rows": rows},
                                                              indent=1))
    (args.out / "suvr_resolution.md").write_text(markdown(subjects, rows))
    return 0


def blur_row(subjects: list[quality.Subject], fwhm: float) -> dict[str, float]:
    """Mean SUVR biases of the SD-PET blurred by `fwhm` mm against itself, and the reference region's change (%)."""
    regions, lobes, reference = [], [], []
    for subject in subjects:
        spacing = subject.ld[100].GetSpacing()[::-1]
        blurred = gaussian_postfilter(subject.sd, fwhm, spacing)
        regions.append(quality.mean_abs_suvr_bias(blurred, subject, subject.labels))
        lobes.append(quality.mean_abs_suvr_bias(blurred, subject, subject.lobes))
        inside = subject.labels == subject.reference_label
        reference.append(100.0 * (blurred[inside].mean() / subject.sd[inside].mean() - 1.0))
    row = {"suvr_abs_bias_pct": float(np.mean(regions)), "suvr_abs_bias_lobar_pct": float(np.mean(lobes)),
           "reference_mean_change_pct": float(np.mean(reference))}
    print(f"FWHM {fwhm:g} mm: {row}", flush=True)
    return row


def markdown(subjects: list[quality.Subject], rows: dict[str, dict[str, float]]) -> str:
    """The rows (keyed by FWHM) as a Markdown table under a line naming the subjects and the reference region."""
    reference_name = subjects[0].names[subjects[0].reference_label]
    lines = [f"SD-PET blurred by a Gaussian, scored against the SD-PET ({len(subjects)} subjects: "
             f"{', '.join(s.name for s in subjects)}; reference region {reference_name}).",
             "", "| blur FWHM (mm) | mean abs SUVR bias, regions (%) | lobes (%) | reference-region mean change (%) |",
             "|---|---|---|---|"]
    lines += [f"| {fwhm} | {r['suvr_abs_bias_pct']:.2f} | {r['suvr_abs_bias_lobar_pct']:.2f} | "
              f"{r['reference_mean_change_pct']:+.2f} |" for fwhm, r in rows.items()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
