"""Train an M2Diff network (or the regression baseline) on subject folders; resumable, runs under torchrun.

Examples:
  m2diff train --data sims/train --val sims/val --out runs/small --preset small --steps 20000
  torchrun --nproc_per_node 2 -m M2DiffSlicer.cli train --data sims/train --out runs/ddp --device cpu
Re-running with the same --out resumes from runs/.../checkpoints/state.pt.
"""

from __future__ import annotations

import argparse

from ..training.config import add_config_arguments, config_from_arguments


def register(parser: argparse.ArgumentParser) -> None:
    """Add one flag per TrainConfig field."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Train to --steps (rank 0 shows progress and writes logs and checkpoints); return 0."""
    from tqdm import tqdm

    from ..training.distributed import joined
    from ..training.trainer import Trainer

    config = config_from_arguments(args)
    with joined(config.device) as context:  # a failing rank leaves at once, so torchrun ends the job
        trainer = Trainer(config, context)
        with tqdm(total=config.steps, initial=trainer.step, disable=not context.is_main, unit="step",
                  dynamic_ncols=True) as bar:
            for event in trainer.run():
                bar.update(1)
                if event["log"] is not None:
                    shown = {k: event["log"][k] for k in ("loss", "val_loss") if k in event["log"]}
                    bar.set_postfix({k: f"{v:.4g}" for k, v in shown.items()})
        if context.is_main:
            print(f"finished at step {trainer.step}; checkpoints in {trainer.checkpoints}")
    return 0
