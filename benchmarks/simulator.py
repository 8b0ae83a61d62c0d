"""Simulator benchmark: seconds per subject and the LD-vs-SD difficulty table on held-out seeds (9000+).

Run: `python benchmarks/simulator.py --subjects 4` (about 20 s per subject on one busy core); `--domain randomised`
draws each subject's scanner, dose, FOV and T1; `--scanner`/`--fov` pick a held-out test configuration (e.g.
`--fov clinical`). Metrics on the subject's brain mask, both images scaled by the SD max in the mask
(M2DiffSlicer.imaging.metrics).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from M2DiffSlicer.imaging import metrics
from M2DiffSlicer.simulation.anatomy import load_template
from M2DiffSlicer.simulation.domain import DOMAINS, FIELDS_OF_VIEW, SCANNER_MODELS, held_out_overrides
from M2DiffSlicer.simulation.subject import SimulationConfig, simulate_subject


ROWS = ("ld_drf020", "ld_drf100", "noise_free")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=9000)
    parser.add_argument("--domain", choices=sorted(DOMAINS), default="fixed")
    parser.add_argument("--scanner", choices=sorted(SCANNER_MODELS), default="default")
    parser.add_argument("--fov", choices=sorted(FIELDS_OF_VIEW), default="brain")
    args = parser.parse_args()
    config = SimulationConfig(noise_free=True, **held_out_overrides(args.scanner, args.fov))
    load_template(config.anatomy_mm)  # one-off per process; excluded from the per-subject time
    rows = {name: [] for name in ROWS}
    seconds, suvr_errors = [], []
    for seed in range(args.seed, args.seed + args.subjects):
        start = time.perf_counter()
        subject = simulate_subject(seed, config, DOMAINS[args.domain])
        seconds.append(time.perf_counter() - start)
        for name, values in subject_metrics(subject).items():
            rows[name].append(values)
        suvr = subject.meta["regional_suvr"]
        suvr_errors.append(np.mean([abs(suvr["ld_drf100"][k] / suvr["sd"][k] - 1) for k in suvr["sd"]]))
        print(f"seed {seed} {subject.meta['group']}: {seconds[-1]:.1f} s (incl. the extra noise-free recon)",
              flush=True)
    print_report(rows, seconds, suvr_errors)


def subject_metrics(subject) -> dict[str, tuple[float, float, float, float]]:
    """{row: (PSNR 2D, SSIM 2D, PSNR 3D, SSIM 3D)} of each PET of ROWS against the SD-PET in the brain mask."""
    sd, brain = subject.pets["sd"], subject.brain_pet
    metrics_by_row = {}
    for name in ROWS:
        two_d = metrics.slice_metrics(subject.pets[name], sd, brain)
        metrics_by_row[name] = (two_d["psnr"], two_d["ssim"], metrics.psnr(subject.pets[name], sd, brain),
                                metrics.ssim(subject.pets[name], sd, brain))
    return metrics_by_row


def print_report(rows: dict[str, list[tuple]], seconds: list[float], suvr_errors: list[float]) -> None:
    """Seconds per subject, the difficulty table (mean +- SD over subjects) and the LD100 regional SUVR error."""
    print(f"\nseconds per subject: {np.mean(seconds):.1f} (with 4 reconstructions; `m2diff simulate` does 3)")
    print("| vs SD | PSNR 2D (dB) | SSIM 2D | PSNR 3D (dB) | SSIM 3D |\n|---|---|---|---|---|")
    for name, values in rows.items():
        v = np.asarray(values)
        print(f"| {name} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(v.mean(0), v.std(0))) + " |")
    print(f"\nLD100 regional SUVR mean |error| vs SD: {100 * np.mean(suvr_errors):.1f} %")


if __name__ == "__main__":
    main()
