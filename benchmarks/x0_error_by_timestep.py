"""Validation x0 error of trained runs per diffusion timestep: where a diffusion model stands against regression.

    python benchmarks/x0_error_by_timestep.py --runs runs/m2diff runs/v1 runs/v2 runs/regression \
        --out benchmarks/results/x0_error_by_timestep.md

Loads each run's best.pt and scores it with the trainer's own validation (the run's validation subjects, fixed
batches, fixed noise) one timestep at a time. Few-step sampling returns the x0 estimate made at the largest
timesteps (2 steps: t = 999 then t = 499), so those columns are what the quality table measures; the regression
baseline has one number (it never sees x_t). The MRI-free column is each run's estimate without T1 at its largest
timestep scored. A run trained on a truncated process (--truncate-at) is scored only at its own timesteps.
Relative paths in a run's train_config.json (data, val, cache) resolve from the current folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

from M2DiffSlicer.model.checkpoint import load_checkpoint
from M2DiffSlicer.training.trainer import Trainer
from M2DiffSlicer.training.config import TrainConfig, TrainMode


def errors_by_timestep(run: Path, timesteps: list[int], threads: int) -> dict[int, dict[str, float]]:
    """{t: trainer.validate() of the run's best EMA weights at that single timestep}."""
    config = TrainConfig.from_json((run / "train_config.json").read_text())
    model, _, _ = load_checkpoint(run / "checkpoints" / "best.pt")
    with tempfile.TemporaryDirectory() as scratch:  # a fresh run folder: nothing of `run` is resumed or written
        trainer = Trainer(dataclasses.replace(config, out=scratch, threads=threads))
        trainer.ema.load_state_dict(model.state_dict())
        if trainer.mode == TrainMode.REGRESSION:
            return {0: trainer.validate()}
        results = {}
        for t in (t for t in timesteps if t < config.process_steps):  # a truncated process has fewer steps
            trainer.config.val_timesteps = [t]
            results[t] = trainer.validate()
        return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="run folders (m2diff train --out)")
    parser.add_argument("--timesteps", type=int, nargs="+", default=[0, 50, 250, 499, 750, 950, 999])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="Markdown table (a .json with the raw numbers is written beside)")
    args = parser.parse_args(argv)
    table = {run.name: errors_by_timestep(run, args.timesteps, args.threads) for run in args.runs}
    text = markdown(table, args.timesteps)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(
            {name: {str(t): v for t, v in rows.items()} for name, rows in table.items()}, indent=1))
    return 0


def markdown(table: dict[str, dict[int, dict[str, float]]], timesteps: list[int]) -> str:
    """One row per run: val_mse at each timestep it was scored at, and its MRI-free error at its largest one."""
    lines = ["Validation x0 MSE (best.pt, fixed batches and noise) per timestep t; regression: its single number.", "",
             "| run | " + " | ".join(f"t = {t}" for t in timesteps) + " | largest t without T1 |",
             "|---|" + "---|" * (len(timesteps) + 1)]
    for name, rows in table.items():
        cells = [f"{rows[t]['val_mse']:.3g}" if t in rows else "" for t in timesteps]
        free = rows[max(rows)]["val_mse_mri_free"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {free:.3g} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
