"""Training loop: Adam, EMA, gradient clipping, fixed-noise validation, JSON-line logs and exact resumption.

One loop serves two modes: `diffusion` (M2Diff's multi-task IDDPM loss at uniform timesteps) and `regression`
(a plain supervised baseline: the same network called with x_t = 0 and t = 0, trained with MSE to the SD-PET).
Every random draw of step s on rank r is seeded from (seed, s, r), so a run's state is its weights, optimiser
and step count: resuming from a checkpoint continues exactly as if the run had never stopped. Distributed
training (torchrun) enters only through the DistContext passed in (see distributed.py).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import enum
import json
import math
import os
import tempfile
import time
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import checkpoint
from .config import ModelConfig, build_model, model_config
from .dataset import CacheDtype, Orientation, SliceDataset, SliceRef, find_subjects
from .diffusion import BetaSchedule, GaussianDiffusion, get_beta_schedule, parse_enum
from .distributed import DistContext
from .losses import mean_flat
from .preprocess import ModelGrid

STATE_FORMAT = "m2diff-train-state-v1"
STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
EMA_FILE = "ema.pt"
LOG_FILE = "log.jsonl"
# Validation noise has its own seed so validation losses stay comparable across runs with different seeds.
VALIDATION_SEED = 20240607
# Fields that define what is being trained; a resumed run must keep them.
ARCHITECTURE_FIELDS = ("preset", "variant", "mode", "schedule", "diffusion_steps")


class TrainMode(enum.Enum):
    """What the network is trained to do."""

    DIFFUSION = "diffusion"  # M2Diff: x0 prediction from x_t at uniform t, multi-task (+ VLB) loss
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
    mode: str = "diffusion"
    schedule: str = "linear"
    diffusion_steps: int = 1000
    drf: list[int] = dataclasses.field(default_factory=lambda: [100])
    orientations: list[str] = dataclasses.field(default_factory=lambda: [o.value for o in Orientation])
    grid_spacing_mm: float = 2.0
    grid_size: list[int] = dataclasses.field(default_factory=lambda: list(ModelGrid().size_xyz))  # x, y, z
    cache: str = ""  # prepared-volume cache folder; empty: <out>/cache
    cache_dtype: str = "float32"
    batch_size: int = 8
    lr: float = 1e-4
    weight_decay: float = 0.0
    # IDDPM uses 0.9999 over ~10^6 steps; CPU-length runs of 10^3-10^4 steps need a shorter memory.
    ema_rate: float = 0.999
    grad_clip: float = 1.0  # max gradient norm; 0 disables clipping
    t1_dropout: float = 0.3
    flip: bool = True
    steps: int = 10000
    log_interval: int = 50
    val_interval: int = 500  # 0 disables validation
    checkpoint_interval: int = 1000
    val_timesteps: list[int] = dataclasses.field(default_factory=lambda: [50, 250, 500, 750, 950])
    val_batches: int = 16
    seed: int = 0
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    device: str = "auto"

    def __post_init__(self) -> None:
        parse_enum(TrainMode, self.mode, "mode")
        parse_enum(BetaSchedule, self.schedule, "schedule")
        parse_enum(CacheDtype, self.cache_dtype, "cache_dtype")
        for orientation in self.orientations:
            parse_enum(Orientation, orientation, "orientations")
        for name in ("batch_size", "steps", "log_interval", "checkpoint_interval", "diffusion_steps", "val_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("val_interval", "threads", "weight_decay", "grad_clip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_rate < 1.0:
            raise ValueError(f"ema_rate must be in [0, 1), got {self.ema_rate}")
        if not 0.0 <= self.t1_dropout <= 1.0:
            raise ValueError(f"t1_dropout must be in [0, 1], got {self.t1_dropout}")
        if any(not 0 <= t < self.diffusion_steps for t in self.val_timesteps):
            raise ValueError(f"val_timesteps must lie in [0, {self.diffusion_steps}), got {self.val_timesteps}")

    @property
    def grid(self) -> ModelGrid:
        return ModelGrid(spacing_mm=self.grid_spacing_mm, size_xyz=tuple(self.grid_size))

    @property
    def cache_dir(self) -> Path:
        return Path(self.cache) if self.cache else Path(self.out) / "cache"

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> TrainConfig:
        """Inverse of to_json; unknown keys raise ValueError."""
        data = json.loads(text)
        unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s): {', '.join(unknown)}")
        return cls(**data)


def add_config_arguments(parser: argparse.ArgumentParser, defaults: TrainConfig | None = None) -> None:
    """One `--flag` per TrainConfig field (lists take several values, booleans get --no-flag)."""
    defaults = defaults or TrainConfig()
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        default = getattr(defaults, field.name)
        kind = hints[field.name]
        if kind is bool:
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=default)
        elif typing.get_origin(kind) is list:
            (item,) = typing.get_args(kind)
            parser.add_argument(flag, dest=field.name, type=item, nargs="*", default=default, metavar=item.__name__.upper())
        else:
            parser.add_argument(flag, dest=field.name, type=kind, default=default, help=f"default: {default}")


def config_from_arguments(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig held by parsed arguments (see add_config_arguments)."""
    return TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})


LossFn = Callable[[torch.nn.Module, torch.Tensor, dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]


def diffusion_loss(diffusion: GaussianDiffusion) -> LossFn:
    """Per-sample M2Diff losses at uniformly drawn timesteps with generator-drawn noise."""

    def loss(model, target, cond, generator):
        t = torch.randint(0, diffusion.num_timesteps, (target.shape[0],), generator=generator).to(target.device)
        noise = torch.randn(target.shape, generator=generator).to(target.device)
        return diffusion.training_losses(model, target, t, cond, noise=noise)

    return loss


def regression_loss(model, target, cond, generator) -> dict[str, torch.Tensor]:
    """Per-sample MSE of the network's direct prediction (x_t = 0, t = 0) to the SD-PET target [N x 1 x H x W]."""
    zeros_t = torch.zeros(target.shape[0], dtype=torch.long, device=target.device)
    out = model(torch.zeros_like(target), zeros_t, cond["ld_pet"], cond["t1"], cond["t1_present"])
    mse = mean_flat((out["x0"] - target) ** 2)
    return {"loss": mse, "mse": mse}


def _step_seeds(seed: int, step: int, rank: int) -> tuple[np.random.Generator, int, int]:
    """Independent random sources of one step: numpy (data), torch generator (t, noise), global torch (dropout)."""
    sequence = np.random.SeedSequence([seed, step, rank])
    data_seq, torch_seq, dropout_seq = sequence.spawn(3)
    return (
        np.random.default_rng(data_seq),
        int(torch_seq.generate_state(1, dtype=np.uint64)[0] >> 1),
        int(dropout_seq.generate_state(1, dtype=np.uint64)[0] >> 1),
    )


def _to_device(batch: tuple[torch.Tensor, dict[str, torch.Tensor]], device: torch.device):
    target, cond = batch
    return target.to(device), {k: v.to(device) for k, v in cond.items()}


def _write_atomic(path: Path, payload: Any) -> None:
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        torch.save(payload, temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class Trainer:
    """One training run of `config` on this process's share of the work (`context`).

    Build it, then iterate `run()`: it yields one dict per step. The run folder `config.out` gets log.jsonl and
    checkpoints/{state.pt (latest, for resuming), ema.pt (latest EMA weights), best.pt (EMA weights with the lowest
    validation loss)}; an existing state.pt is resumed.
    """

    def __init__(self, config: TrainConfig, context: DistContext | None = None) -> None:
        self.config = config
        self.context = context or DistContext()
        self.mode = TrainMode(config.mode)
        self.out = Path(config.out)
        self.checkpoints = self.out / "checkpoints"
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.context.is_main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)

        self.train_set, self.val_set = self._datasets()
        self.model_config: ModelConfig = model_config(config.preset, config.variant)
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = build_model(self.model_config).to(self.context.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.network = self.context.wrap(self.model)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        betas = get_beta_schedule(config.schedule, config.diffusion_steps)
        self.diffusion = GaussianDiffusion(betas, variance=self.model_config.variance.value)
        if self.mode == TrainMode.DIFFUSION:
            self.loss_fn: LossFn = diffusion_loss(self.diffusion)
        elif self.mode == TrainMode.REGRESSION:
            self.loss_fn = regression_loss
        else:
            raise NotImplementedError(self.mode)

        self.step = 0
        self.best_val = math.inf
        self.elapsed_s = 0.0
        self._epoch_cache: tuple[int, list[list[SliceRef]]] | None = None
        self.batches_per_epoch = len(self._epoch(0))
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training set ({len(self.train_set)} slices) holds less than one batch of {config.batch_size} "
                f"per orientation and rank"
            )
        self._validation_batches = self._fixed_validation_batches()
        if (self.checkpoints / STATE_FILE).is_file():
            self._load_state(self.checkpoints / STATE_FILE)

    # ---- data --------------------------------------------------------------------------------------------------

    def _datasets(self) -> tuple[SliceDataset, SliceDataset | None]:
        config = self.config
        if not config.data:
            raise ValueError("data must name at least one folder of subject folders")
        subjects = [s for folder in config.data for s in find_subjects(folder)]
        held_out = set(config.val_subjects)
        unknown = held_out - {s.name for s in subjects}
        if unknown:
            raise ValueError(f"val_subjects {sorted(unknown)} are not in the data folders")
        train_dirs = [s for s in subjects if s.name not in held_out]
        val_dirs = [s for s in subjects if s.name in held_out] + [s for f in config.val for s in find_subjects(f)]
        if not train_dirs:
            raise ValueError("every subject is held out for validation; nothing is left to train on")

        def build(dirs):
            return SliceDataset.from_folders(
                dirs, config.drf, config.grid, config.cache_dir, CacheDtype(config.cache_dtype),
                orientations=config.orientations,
            )

        # The main rank fills the cache first so the other ranks read it instead of resampling the same volumes.
        if not self.context.is_main:
            self.context.barrier()
        datasets = build(train_dirs), (build(val_dirs) if val_dirs else None)
        if self.context.is_main:
            self.context.barrier()
        return datasets

    def _epoch(self, epoch: int) -> list[list[SliceRef]]:
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            batches = self.train_set.epoch_batches(self.config.batch_size, self.config.seed, epoch)
            self._epoch_cache = (epoch, self.context.shard(batches))
        return self._epoch_cache[1]

    def _fixed_validation_batches(self) -> list[list[SliceRef]]:
        if self.val_set is None:
            return []
        batches = self.val_set.epoch_batches(self.config.batch_size, seed=0, epoch=0, shuffle=False)
        picks = np.unique(np.linspace(0, len(batches) - 1, min(self.config.val_batches, len(batches))).round())
        chosen = [batches[int(i)] for i in picks]
        # Not shard(): validation keeps every chosen batch, and ranks simply sum their parts.
        return chosen[self.context.rank :: self.context.world_size]

    # ---- one step ----------------------------------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        """Run step `self.step` (forward, backward, clip, Adam, EMA) and return its mean loss terms."""
        config = self.config
        refs = self._epoch(self.step // self.batches_per_epoch)[self.step % self.batches_per_epoch]
        data_rng, torch_seed, dropout_seed = _step_seeds(config.seed, self.step, self.context.rank)
        batch = self.train_set.collate(refs, data_rng, config.t1_dropout, config.flip)
        target, cond = _to_device(batch, self.context.device)
        generator = torch.Generator().manual_seed(torch_seed)
        self.model.train()
        devices = [self.context.device] if self.context.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(dropout_seed)
            terms = self.loss_fn(self.network, target, cond, generator)
            loss = terms["loss"].mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        self.optimizer.step()
        self._update_ema()
        self.step += 1
        record = {k: float(v.detach().mean()) for k, v in terms.items()}
        record["grad_norm"] = float(norm)
        return record

    @torch.no_grad()
    def _update_ema(self) -> None:
        rate = self.config.ema_rate
        for ema, param in zip(self.ema.parameters(), self.model.parameters()):
            ema.mul_(rate).add_(param.detach(), alpha=1.0 - rate)
        for ema, buffer in zip(self.ema.buffers(), self.model.buffers()):
            ema.copy_(buffer)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """EMA model's mean loss on the fixed validation batches, with and without T1, at fixed t and noise."""
        if self.val_set is None:
            raise ValueError("no validation subjects: set val or val_subjects")
        self.ema.eval()
        timesteps = self.config.val_timesteps if self.mode == TrainMode.DIFFUSION else [0]
        sums = [0.0, 0.0, 0.0]  # loss with T1, loss MRI-free, samples
        for b, refs in enumerate(self._validation_batches):
            target, cond = _to_device(self.val_set.collate(refs), self.context.device)
            mri_free = dict(cond, t1_present=torch.zeros_like(cond["t1_present"]))
            for t_value in timesteps:
                generator = torch.Generator().manual_seed(VALIDATION_SEED + 1000 * (b * self.context.world_size + self.context.rank) + t_value)
                for slot, c in ((0, cond), (1, mri_free)):
                    generator_state = generator.get_state()
                    if self.mode == TrainMode.DIFFUSION:
                        t = torch.full((target.shape[0],), t_value, dtype=torch.long, device=target.device)
                        noise = torch.randn(target.shape, generator=generator).to(target.device)
                        losses = self.diffusion.training_losses(self.ema, target, t, c, noise=noise)
                    else:
                        losses = regression_loss(self.ema, target, c, generator)
                    generator.set_state(generator_state)  # the same noise with and without T1
                    sums[slot] += float(losses["loss"].sum())
                sums[2] += target.shape[0]
        total_loss, total_free, count = self.context.sum(sums)
        return {"val_loss": total_loss / count, "val_loss_mri_free": total_free / count}

    # ---- state -------------------------------------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """Everything needed to continue this run exactly (weights_only-loadable)."""
        return {
            "format": STATE_FORMAT,
            "config": self.config.to_json(),
            "model_config": self.model_config.to_json(),
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "elapsed_s": self.elapsed_s,
        }

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.context.device, weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not a training state ({STATE_FORMAT})")
        saved = json.loads(state["config"])
        for name in ARCHITECTURE_FIELDS:
            if saved[name] != getattr(self.config, name):
                raise ValueError(
                    f"cannot resume {path}: it was trained with {name}={saved[name]!r}, this run asks for "
                    f"{getattr(self.config, name)!r}; use another --out"
                )
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.best_val, self.elapsed_s = int(state["step"]), float(state["best_val"]), float(state["elapsed_s"])

    def save(self, validation: Mapping[str, float] | None = None) -> None:
        """Write the latest state and EMA weights (main rank only); best.pt too when `validation` improved."""
        if not self.context.is_main:
            return
        meta = {"step": self.step, "train_config": json.loads(self.config.to_json())}
        if validation is not None and validation["val_loss"] < self.best_val:
            self.best_val = validation["val_loss"]
            checkpoint.save_checkpoint(self.checkpoints / BEST_FILE, self.ema, self.model_config, dict(meta, **validation))
        checkpoint.save_checkpoint(self.checkpoints / EMA_FILE, self.ema, self.model_config, meta)
        _write_atomic(self.checkpoints / STATE_FILE, self.state())

    def _log(self, record: Mapping[str, Any]) -> None:
        if self.context.is_main:
            with open(self.out / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---- the loop ----------------------------------------------------------------------------------------------

    def run(self) -> Iterator[dict[str, Any]]:
        """Train until `config.steps`; yield {"step", "steps", "loss", "log" (the logged record or None)} per step."""
        config = self.config
        window: dict[str, list[float]] = {}
        window_start = time.perf_counter()
        while self.step < config.steps:
            started = time.perf_counter()
            terms = self.train_step()
            self.elapsed_s += time.perf_counter() - started
            for key, value in terms.items():
                window.setdefault(key, []).append(value)
            record: dict[str, Any] | None = None
            last = self.step == config.steps
            if self.step % config.log_interval == 0 or last:
                seconds = time.perf_counter() - window_start
                record = {"step": self.step, **self.context.mean({k: float(np.mean(v)) for k, v in window.items()})}
                record.update(lr=self.optimizer.param_groups[0]["lr"], step_s=seconds / len(window["loss"]),
                              elapsed_s=self.elapsed_s)
                window, window_start = {}, time.perf_counter()
            validation = None
            if self.val_set is not None and config.val_interval and (self.step % config.val_interval == 0 or last):
                validation = self.validate()
                record = {**(record or {"step": self.step}), **validation}
            if record is not None:
                self._log(record)
            if validation is not None or self.step % config.checkpoint_interval == 0 or last:
                self.save(validation)
                self.context.barrier()
            yield {"step": self.step, "steps": config.steps, "loss": terms["loss"], "log": record}


def train(config: TrainConfig, context: DistContext | None = None) -> Trainer:
    """Run (or resume) a whole training run and return the finished Trainer."""
    trainer = Trainer(config, context)
    for _ in trainer.run():
        pass
    return trainer
