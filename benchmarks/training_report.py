"""Loss curves and a Markdown summary of training runs (m2diff train --out RUN folders).

    python benchmarks/training_report.py --runs runs/m2diff runs/v1 runs/v2 runs/regression \
        --out benchmarks/training

Writes loss_curves.png (training loss, validation loss, validation x0 MSE with and without T1 per run) and
training.md (steps, wall clock, the validation numbers at the step with the lowest validation x0 MSE, which is how
the trainer picks best.pt). The x0 MSE on validation subjects at fixed timesteps and fixed noise is the one number
comparable across diffusion runs; the regression baseline's is its plain MSE. A dotted line marks where a run's
learning rate starts falling (--lr-decay-start).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def read_log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/training"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    lines = ["| run | mode / variant | steps | wall clock (min) | best step | val loss | val x0 MSE (T1) | "
             "val x0 MSE (no T1) |", "|---|---|---|---|---|---|---|---|"]
    for run in args.runs:
        records = read_log(run)
        config = json.loads((run / "train_config.json").read_text())
        train = [r for r in records if "loss" in r]
        val = [r for r in records if "val_loss" in r]
        axes[0].semilogy([r["step"] for r in train], [r["loss"] for r in train], label=run.name)
        axes[1].semilogy([r["step"] for r in val], [r["val_mse"] for r in val], "o-", label=run.name)
        axes[2].semilogy([r["step"] for r in val], [r["val_mse_mri_free"] for r in val], "o-", label=run.name)
        if config.get("lr_decay_start"):
            for axis in axes:
                axis.axvline(config["lr_decay_start"], color=axes[0].lines[-1].get_color(), ls=":", lw=1)
        best = min(val, key=lambda r: r["val_mse"]) if val else {}
        numbers = " | ".join(f"{best[key]:.4g}" if key in best else "" for key in ("val_loss", "val_mse",
                                                                                     "val_mse_mri_free"))
        lines.append(f"| {run.name} | {config['mode']} / {config['variant']} | {records[-1]['step']} | "
                     f"{records[-1]['elapsed_s'] / 60:.0f} | {best.get('step', '')} | {numbers} |")
    for axis, title in zip(axes, ("training loss (log)", "validation x0 MSE with T1", "validation x0 MSE without T1")):
        axis.set_title(title)
        axis.set_xlabel("step (batch 8)")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out / "loss_curves.png", dpi=90)
    (args.out / "training.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
