"""TrainConfig: the one typed description of a training run (JSON round-trip; `m2diff train` flags come from it).

Kept free of torch and SimpleITK imports so that building the `m2diff` parser stays fast; choices whose enums live
in heavy modules (schedule, orientations, cache_dtype) are checked when the Trainer starts.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import json
from pathlib import Path

from ..diffusion.loss_weights import LossWeights
from ..options import add_dataclass_arguments, dataclass_values, parse_enum, reject_unknown_fields

_PAPER_LOSS = LossWeights()  # the loss weights' defaults, read here rather than repeated
DEFAULT_GRID_SIZE_XYZ = [96, 112, 96]  # preprocess.ModelGrid's default (x, y, z)


class TrainMode(enum.Enum):
    """What the network is trained to do."""

    DIFFUSION = "diffusion"  # M2Diff: x0 prediction from x_t at uniform t, multi-task (+ optional VLB) loss
    REGRESSION = "regression"  # baseline: direct (LD-PET, T1) -> SD-PET with MSE, x_t = 0 and t = 0


@dataclasses.dataclass
class TrainConfig:
    """Everything a training run depends on; JSON round-trip; `m2diff train` flags are generated from it."""

    data: list[str] = dataclasses.field(default_factory=list)  # folders holding sub-* subject folders
    out: str = "runs/m2diff"  # run folder: log.jsonl, checkpoints/, cache/
    val: list[str] = dataclasses.field(default_factory=list)  # folders of held-out validation subjects
    val_subjects: list[str] = dataclasses.field(default_factory=list)  # subject names in `data` held out
    preset: str = "small"
    variant: str = "m2diff"
    residual: bool = False  # the network predicts x0 - LD-PET (ModelConfig.residual)
    mode: str = "diffusion"
    schedule: str = "linear"
    diffusion_steps: int = 1000
    # Train and sample only the first `truncate_at` timesteps; sampling starts from the LD-PET diffused to the last
    # (diffusion.process_betas). 0 keeps the whole process.
    truncate_at: int = 0
    drf: list[float] = dataclasses.field(default_factory=lambda: [100.0])  # LD levels read (validation always)
    # Train on every low-dose image each training subject has (meta.json "drfs", e.g. the randomised simulator's
    # continuous DRF) instead of the `drf` list; validation keeps `drf` so its losses stay comparable.
    every_dose: bool = False
    # Side of the random square patches training batches are cut to (0: whole slices). The network is fully
    # convolutional; smaller inputs buy more steps per CPU hour. Must be a multiple of the preset's size divisor.
    patch_size: int = 0
    orientations: list[str] = dataclasses.field(default_factory=lambda: ["axial", "coronal", "sagittal"])
    grid_spacing_mm: float = 2.0
    grid_size: list[int] = dataclasses.field(default_factory=lambda: list(DEFAULT_GRID_SIZE_XYZ))  # x, y, z
    cache: str = ""  # prepared-volume cache folder; empty: <out>/cache
    cache_dtype: str = "float32"
    batch_size: int = 8
    lr: float = 1e-4
    # Step from which the learning rate falls linearly to 0 at `steps`; 0 keeps it constant throughout.
    lr_decay_start: int = 0
    weight_decay: float = 0.0
    # IDDPM uses 0.9999 over ~10^6 steps; CPU-length runs of 10^3-10^4 steps need a shorter memory.
    ema_rate: float = 0.999
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    t1_dropout: float = 0.3
    # Largest gain on a training input's noise: each sample's LD-PET becomes SD + g (LD - SD) with g log-uniform in
    # [1, noise_gain], so its own scanner's noise texture reaches noise levels beyond its simulated doses. 1: off.
    noise_gain: float = 1.0
    # Weight of the learned-variance VLB terms (LossWeights.vlb: 0 as in the paper's eq. 9; 1 is IDDPM's hybrid
    # loss). Their gradients reach the shared network: at 1 the x0 error stopped falling (benchmarks/training), and
    # deterministic DDIM sampling never uses the variance they train (ancestral sampling does).
    vlb_weight: float = _PAPER_LOSS.vlb
    # Weight of an extra MSE on the output sampling returns (for M2Diff the mean of its two decoders; not in the
    # paper). The paper's loss fits each decoder and their consistency, which cost the mean 0.8 dB here.
    output_loss_weight: float = _PAPER_LOSS.output
    flip: bool = True
    steps: int = 10000
    log_interval: int = 50
    val_interval: int = 500  # 0 disables validation
    checkpoint_interval: int = 1000
    val_timesteps: list[int] = dataclasses.field(default_factory=lambda: [50, 250, 500, 750, 950])
    val_batches: int = 16
    seed: int = 0
    # A checkpoint (.pt of save_checkpoint) of the same preset and variant whose weights start a new run (model and
    # EMA); a run that resumes from its own state.pt ignores it. Regression-mode weights may start a diffusion run:
    # the x_t input weights are zeroed first, so it begins at the regression's prediction. Direct-x0 weights may start
    # a residual run: the x0 output convolutions are zeroed first, so it begins at x0 = LD-PET.
    init_weights: str = ""
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "auto"

    def __post_init__(self) -> None:
        parse_enum(TrainMode, self.mode, "mode")  # the field stays a string: it is a JSON value and a CLI flag
        for name in ("batch_size", "steps", "log_interval", "checkpoint_interval", "diffusion_steps", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_interval", "threads", "patch_size", "weight_decay", "grad_clip", "vlb_weight", "output_loss_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.lr_decay_start < self.steps:
            raise ValueError(f"lr_decay_start must be in [0, steps={self.steps}), got {self.lr_decay_start}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_rate < 1.0:
            raise ValueError(f"ema_rate must be in [0, 1), got {self.ema_rate}")
        if not 0.0 <= self.t1_dropout <= 1.0:
            raise ValueError(f"t1_dropout must be in [0, 1], got {self.t1_dropout}")
        if not self.noise_gain >= 1.0:
            raise ValueError(f"noise_gain must be >= 1, got {self.noise_gain}")
        if not 0 <= self.truncate_at <= self.diffusion_steps:
            raise ValueError(f"truncate_at must be in [0, diffusion_steps={self.diffusion_steps}], "
                             f"got {self.truncate_at}")
        if any(not 0 <= t < self.process_steps for t in self.val_timesteps):
            raise ValueError(f"val_timesteps must lie in [0, {self.process_steps}), got {self.val_timesteps}")

    @property
    def process_steps(self) -> int:
        """Timesteps of the trained process: diffusion_steps, or truncate_at when the process is cut."""
        return self.truncate_at or self.diffusion_steps

    @property
    def cache_dir(self) -> Path:
        """Where prepared volumes are cached."""
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def to_json(self) -> str:
        """JSON text of every field."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of to_json; unknown keys raise ValueError."""
        data = json.loads(text)
        reject_unknown_fields(cls, data)
        return cls(**data)


def add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """One `--flag` per TrainConfig field (lists take several values, booleans get --no-flag)."""
    add_dataclass_arguments(parser, TrainConfig, dataclasses.fields(TrainConfig), defaults or TrainConfig())


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig held by parsed arguments (see add_config_arguments)."""
    return TrainConfig(**dataclass_values(args, dataclasses.fields(TrainConfig)))
