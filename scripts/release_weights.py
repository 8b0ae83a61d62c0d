"""Turn a training run's best EMA checkpoint into release weights with a catalogue entry.

    python scripts/release_weights.py --run runs/m2diff --id m2diff-small-sim --version 0.1.0 \
        --quality benchmarks/results/quality.json --quality-label M2Diff --default

Writes Resources/Models/<id>.pt (float16 tensors, loaded back as float32) and adds or replaces the entry in
Resources/Models/models.json: sha256, preset/variant, how it was trained (from the run's train_config.json and
log.jsonl) and its held-out metrics (from benchmarks/quality.py's JSON, or benchmarks/robustness.py's with
--robustness). The catalogue is validated against
models-schema.json before it is written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from M2DiffSlicer.model.catalogue import validate_catalogue
from M2DiffSlicer.model.checkpoint import load_checkpoint, save_checkpoint
from M2DiffSlicer.resources import resource_path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from robustness import catalogue_metrics  # noqa: E402  (the report's own module reads it)

# Not a default: runs written before --vlb-weight existed (9919eef) have no such key and were trained with the
# LossWeights default of that time, IDDPM's hybrid loss (1); today's default is the paper's 0 (LossWeights).
VLB_WEIGHT_BEFORE_THE_FLAG = 1.0


def training_summary(run: Path, best_step: int) -> dict:
    """Data, budget and validation numbers of a run, from its train_config.json and log.jsonl."""
    config = json.loads((run / "train_config.json").read_text())
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    validations = {r["step"]: r for r in records if "val_mse" in r}
    data = [Path(folder) for folder in config["data"]]
    subjects = sorted(p.name for folder in data for p in folder.iterdir() if p.name.startswith("sub-"))
    held_out = sorted(p.name for folder in config["val"] for p in Path(folder).iterdir() if p.name.startswith("sub-"))
    return {
        "data": f"simulated subjects (m2diff simulate): {len(subjects)} training subjects "
                f"({subjects[0]}..{subjects[-1]}), {len(held_out)} validation subjects ({', '.join(held_out)})",
        "drf": config["drf"],
        "every_dose": config.get("every_dose", False),
        "residual": config.get("residual", False),
        "noise_gain": config.get("noise_gain", 1.0),
        "mode": config["mode"],
        "patch_size": config.get("patch_size", 0),
        "steps": records[-1]["step"] if records else 0,
        "batch_size": config["batch_size"],
        "lr": config["lr"],
        "lr_decay_start": config.get("lr_decay_start", 0),
        "ema_rate": config["ema_rate"],
        "t1_dropout": config["t1_dropout"],
        "schedule": config["schedule"],
        "truncate_at": config.get("truncate_at", 0),
        "vlb_weight": config.get("vlb_weight", VLB_WEIGHT_BEFORE_THE_FLAG),
        "output_loss_weight": config.get("output_loss_weight", 0.0),
        "wall_clock_s": round(records[-1]["elapsed_s"]) if records else 0,
        "hardware": f"{config.get('threads') or 'all'} CPU thread(s) on a 2-core machine",
        "weights": f"EMA weights at step {best_step}, chosen on the validation x0 MSE",
        "val_mse": validations[best_step]["val_mse"] if best_step in validations else None,
        "val_mse_mri_free": validations[best_step]["val_mse_mri_free"] if best_step in validations else None,
        **_initialisation(config),
    }


def _initialisation(config: dict) -> dict:
    """{"initialised_from": summary of the run whose checkpoint started this one} for a fine-tuning run
    (--init-weights RUN/checkpoints/X.pt), else {}."""
    if not config.get("init_weights"):
        return {}
    weights = Path(config["init_weights"])
    _, _, meta = load_checkpoint(weights)
    if "id" in meta:  # released weights: their own catalogue entry tells how they were trained
        return {"initialised_from": {"checkpoint": str(weights), "release": f"{meta['id']} {meta['version']}"}}
    return {"initialised_from": dict(training_summary(weights.parent.parent, int(meta["step"])),
                                     checkpoint=str(weights))}


def held_out_metrics(quality: Path, label: str) -> dict:
    """Mean metrics of one method per DRF from benchmarks/quality.py's JSON."""
    report = json.loads(quality.read_text())
    metrics = {"subjects": report["subjects"], "sampling_steps": report["steps"]}
    for drf, block in report["drf"].items():
        rows = block["per_subject"].get(label)
        if rows:
            metrics[f"drf{drf}"] = {key: round(float(np.mean([r[key] for r in rows])), 4) for key in rows[0]}
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="training run folder (m2diff train --out)")
    parser.add_argument("--id", required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--quality", type=Path, help="benchmarks/quality.py JSON with this model's held-out rows")
    parser.add_argument("--quality-label", default="M2Diff", help="the method's row label in that JSON")
    parser.add_argument("--robustness", type=Path, help="benchmarks/robustness.py JSON scored with these weights")
    parser.add_argument("--robustness-config", default="default", help="its configuration the metrics come from")
    parser.add_argument("--default", action="store_true", help="make this the model enhance uses by default")
    args = parser.parse_args(argv)

    model, config, best_meta = load_checkpoint(args.run / "checkpoints" / "best.pt")
    train_config = json.loads((args.run / "train_config.json").read_text())
    file_name = f"{args.id}.pt"
    if train_config.get("init_weights"):
        _, _, init_meta = load_checkpoint(Path(train_config["init_weights"]))
        if (init_meta.get("id"), init_meta.get("version")) == (args.id, args.version):
            raise SystemExit(f"{train_config['init_weights']} already holds {args.id} {args.version} (an earlier "
                             "run of this release overwrote the weights this run started from): restore them, e.g. "
                             "git checkout, before releasing again")
    training = training_summary(args.run, int(best_meta["step"]))
    # The pipeline reads the schedule and model grid from meta["train_config"], as from a training checkpoint.
    sha256 = save_checkpoint(resource_path("Models", file_name), model, config,
                             meta={"id": args.id, "version": args.version, "train_config": train_config}, half=True)
    entry = {"id": args.id, "version": args.version, "preset": train_config["preset"],
             "variant": train_config["variant"], "file": file_name,
             "sha256": sha256, "default": args.default, "training": training,
             "metrics": (held_out_metrics(args.quality, args.quality_label) if args.quality else
                         catalogue_metrics(args.robustness, args.robustness_config) if args.robustness else {})}
    catalogue_path = resource_path("Models", "models.json")
    entries = [e for e in json.loads(catalogue_path.read_text()) if e["id"] != args.id]
    if args.default:
        entries = [dict(e, default=False) for e in entries]
    entries.insert(0, entry)
    validate_catalogue(entries)
    catalogue_path.write_text(json.dumps(entries, indent=2) + "\n")
    print(f"{file_name}: sha256 {sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
