"""Simulator benchmark: seconds per subject and the LD-vs-SD difficulty table on held-out seeds (9000+).

Run: `python benchmarks/simulator.py --subjects 4` (about 20 s per subject on one busy core). Metrics on the
subject's brain mask, both images scaled by the SD max in the mask (M2DiffSlicer.imaging.metrics).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from M2DiffSlicer.imaging import metrics
from M2DiffSlicer.simulation.anatomy import load_template
from M2DiffSlicer.simulation.subject import SimulationConfig, simulate_subject


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subjects", type=int, default=4)
    parser.add_argument("--seed", type=int, default=9000)
    args = parser.parse_args()
    config = SimulationConfig(noise_free=True)
    load_template(config.anatomy_mm)  # one-off per process; excluded from the per-subject time
    rows = {name: [] for name in ("ld_drf020", "ld_drf100", "noise_free")}
    seconds, suvr_errors = [], []
    for seed in range(args.seed, args.seed + args.subjects):
        start = time.perf_counter()
        subject = simulate_subject(seed, config)
        seconds.append(time.perf_counter() - start)
        sd, brain = subject.pets["sd"], subject.brain_pet
        for name in rows:
            two_d = metrics.slice_metrics(subject.pets[name], sd, brain)
            rows[name].append((two_d["psnr"], two_d["ssim"], metrics.psnr(subject.pets[name], sd, brain),
                               metrics.ssim(subject.pets[name], sd, brain)))
        suvr = subject.meta["regional_suvr"]
        suvr_errors.append(np.mean([abs(suvr["ld_drf100"][k] / suvr["sd"][k] - 1) for k in suvr["sd"]]))
        print(f"seed {seed} {subject.meta['group']}: {seconds[-1]:.1f} s (incl. the extra noise-free recon)",
              flush=True)
    print(f"\nseconds per subject: {np.mean(seconds):.1f} (with 4 reconstructions; `m2diff simulate` does 3)")
    print("| vs SD | PSNR 2D (dB) | SSIM 2D | PSNR 3D (dB) | SSIM 3D |\n|---|---|---|---|---|")
    for name, values in rows.items():
        v = np.asarray(values)
        print(f"| {name} | " + " | ".join(f"{m:.2f} ± {s:.2f}" for m, s in zip(v.mean(0), v.std(0))) + " |")
    print(f"\nLD100 regional SUVR mean |error| vs SD: {100 * np.mean(suvr_errors):.1f} %")


if __name__ == "__main__":
    main()
