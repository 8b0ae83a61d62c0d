"""Training loop: Adam, EMA, gradient clipping, fixed-noise validation, JSON-line logs and exact resumption.

One loop serves two modes: `diffusion` (M2Diff's multi-task IDDPM loss at uniform timesteps) and `regression`
(a plain supervised baseline: the same network called with x_t = 0 and t = 0, trained with MSE to the SD-PET).
Every random draw of step s on rank r is seeded from (seed, s, r), so a run's state is its weights, optimiser
and step count: resuming from a checkpoint continues exactly as if the run had never stopped. Distributed
training (torchrun) enters only through the DistContext passed in (see distributed.py).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..model import checkpoint
from ..atomic import atomic_path
from ..model.config import ModelConfig, OutputMode, T1Input, model_config
from ..model.unet import build_model
from ..imaging.orientation import Orientation
from .data import CacheDtype, SliceDataset, SliceRef, find_subjects, subject_meta
from ..diffusion.gaussian_diffusion import BetaSchedule, GaussianDiffusion, LossWeights, process_betas
from .distributed import DistContext
from ..diffusion.losses import mean_flat
from ..errors import BadInputError
from ..options import parse_enum, unhandled_choice
from ..imaging.model_grid import ModelGrid
from .config import TrainConfig, TrainMode

STATE_FORMAT = "m2diff-train-state-v1"
STATE_FILE = "state.pt"
BEST_FILE = "best.pt"
EMA_FILE = "ema.pt"
LOG_FILE = "log.jsonl"
CONFIG_FILE = "train_config.json"
# Validation noise has its own seed so validation losses stay comparable across runs with different seeds.
VALIDATION_SEED = 20240607
# Fields that define what is being trained; a resumed run must keep them.
ARCHITECTURE_FIELDS = ("preset", "variant", "mode", "schedule", "diffusion_steps", "truncate_at")


LossFn = Callable[[torch.nn.Module, torch.Tensor, dict[str, torch.Tensor], torch.Generator], dict[str, torch.Tensor]]


def diffusion_loss(diffusion: GaussianDiffusion) -> LossFn:
    """Per-sample M2Diff losses at uniformly drawn timesteps with generator-drawn noise."""

    def loss(
        model: torch.nn.Module, target: torch.Tensor, cond: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        t = torch.randint(0, diffusion.num_timesteps, (target.shape[0],), generator=generator).to(target.device)
        noise = torch.randn(target.shape, generator=generator).to(target.device)
        return diffusion.training_losses(model, target, t, cond, noise=noise)

    return loss


def regression_loss(
    model: torch.nn.Module, target: torch.Tensor, cond: dict[str, torch.Tensor], generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Per-sample MSE of the network's direct prediction (x_t = 0, t = 0) to the SD-PET target [N x 1 x H x W]."""
    zeros_t = torch.zeros(target.shape[0], dtype=torch.long, device=target.device)
    out = model(torch.zeros_like(target), zeros_t, cond["ld_pet"], cond["t1"], cond["t1_present"])
    mse = mean_flat((out["x0"] - target) ** 2)
    return {"loss": mse, "mse": mse}


def loss_leaves_parameters_unused(mode: TrainMode, config: ModelConfig) -> bool:
    """Whether some parameters get no gradient from the loss (DDP must then look for them at every step).

    M2DiffNet runs every branch whatever t1_present holds, and the diffusion loss reads every decoder. Two cases
    remain: E2's middle block feeds only the MRI decoder, so without one (v4) it is never used; regression fits
    `x0` alone, which with output 'pet' is the PET decoder's, so a second decoder (released-code) gets nothing.
    """
    no_mri_decoder = config.t1_input == T1Input.BRANCH and config.num_decoders == 1
    mri_decoder_unread = mode == TrainMode.REGRESSION and config.output == OutputMode.PET and config.num_decoders == 2
    return no_mri_decoder or mri_decoder_unread


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


class Trainer:
    """One training run of `config` on this process's share of the work (`context`).

    Build it, then iterate `run()`: it yields one dict per step. The run folder `config.out` gets log.jsonl and
    checkpoints/{state.pt (latest, for resuming), ema.pt (latest EMA weights), best.pt (EMA weights with the lowest
    validation x0 error)}; an existing state.pt is resumed.
    """

    def __init__(self, config: TrainConfig, context: DistContext | None = None) -> None:
        self.config = config
        self.context = context or DistContext()
        self.mode = TrainMode(config.mode)
        schedule = parse_enum(BetaSchedule, config.schedule, "schedule")
        self.cache_dtype = parse_enum(CacheDtype, config.cache_dtype, "cache_dtype")
        self.orientations = [parse_enum(Orientation, o, "orientations") for o in config.orientations]
        self.grid = ModelGrid(spacing_mm=config.grid_spacing_mm, size_xyz=tuple(config.grid_size))
        self.out = Path(config.out)
        self.checkpoints = self.out / "checkpoints"
        if config.threads:
            torch.set_num_threads(config.threads)
        if self.context.is_main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            (self.out / CONFIG_FILE).write_text(json.dumps(json.loads(config.to_json()), indent=2) + "\n")

        self.train_set, self.val_set = self._datasets()
        self.model_config: ModelConfig = dataclasses.replace(model_config(config.preset, config.variant),
                                                             residual=config.residual)
        if config.patch_size % self.model_config.size_divisor:
            raise ValueError(f"patch_size={config.patch_size} must be a multiple of {self.model_config.size_divisor} "
                             f"(the {config.preset} preset's size divisor)")
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        self.model = build_model(self.model_config).to(self.context.device)
        self.ema = copy.deepcopy(self.model).requires_grad_(False)
        self.network = self.context.wrap(self.model, loss_leaves_parameters_unused(self.mode, self.model_config))
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        betas = process_betas(schedule, config.diffusion_steps, config.truncate_at)
        self.diffusion = GaussianDiffusion(betas, variance=self.model_config.variance.value,
                                           loss_weights=LossWeights(vlb=config.vlb_weight,
                                                                    output=config.output_loss_weight))
        if self.mode == TrainMode.DIFFUSION:
            self.loss_fn: LossFn = diffusion_loss(self.diffusion)
        elif self.mode == TrainMode.REGRESSION:
            self.loss_fn = regression_loss
        else:
            unhandled_choice(self.mode)

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
        elif config.init_weights:
            self._load_initial_weights(Path(config.init_weights))

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
        held_out_configs = {d.name: subject_meta(d).get("held_out") for d in train_dirs + val_dirs}
        test_only = [f"{name} ({configuration})" for name, configuration in held_out_configs.items() if configuration]
        if test_only:
            raise BadInputError(f"subjects simulated for a held-out test configuration must never be trained or "
                                f"validated on: {', '.join(test_only)}")

        def build(dirs, drfs):
            return SliceDataset.from_folders(
                dirs, drfs, self.grid, config.cache_dir, self.cache_dtype, orientations=self.orientations,
            )

        # The main rank fills the cache first so the other ranks read it instead of resampling the same volumes.
        if not self.context.is_main:
            self.context.barrier()
        datasets = (build(train_dirs, None if config.every_dose else config.drf),
                    build(val_dirs, config.drf) if val_dirs else None)
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

    def learning_rate(self, step: int) -> float:
        """Adam's rate at `step`: `lr`, falling linearly to 0 at `steps` from `lr_decay_start` (when set)."""
        config = self.config
        if not config.lr_decay_start or step < config.lr_decay_start:
            return config.lr
        return config.lr * (config.steps - step) / (config.steps - config.lr_decay_start)

    def train_step(self) -> dict[str, float]:
        """Run step `self.step` (forward, backward, clip, Adam, EMA) and return its mean loss terms."""
        config = self.config
        for group in self.optimizer.param_groups:  # set every step: a resumed run may change the schedule
            group["lr"] = self.learning_rate(self.step)
        refs = self._epoch(self.step // self.batches_per_epoch)[self.step % self.batches_per_epoch]
        data_rng, torch_seed, dropout_seed = _step_seeds(config.seed, self.step, self.context.rank)
        batch = self.train_set.collate(refs, data_rng, config.t1_dropout, config.flip, config.patch_size,
                                       config.noise_gain)
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
        """The EMA model on the fixed validation batches at fixed timesteps and noise (comparable across time).

        Returns {"val_loss": the training objective with T1, "val_mse": MSE of the final x0 estimate to the
        SD-PET with T1, "val_mse_mri_free": the same without T1}, each a mean over samples and timesteps.
        """
        if self.val_set is None:
            raise ValueError("no validation subjects: set val or val_subjects")
        self.ema.eval()
        timesteps = self.config.val_timesteps if self.mode == TrainMode.DIFFUSION else [0]
        sums = [0.0, 0.0, 0.0, 0.0]  # loss, mse, mse MRI-free, samples
        for b, refs in enumerate(self._validation_batches):
            target, cond = _to_device(self.val_set.collate(refs), self.context.device)
            mri_free = dict(cond, t1_present=torch.zeros_like(cond["t1_present"]))
            batch_index = b * self.context.world_size + self.context.rank  # index in the unsharded list
            for t_value in timesteps:
                generator = torch.Generator().manual_seed(VALIDATION_SEED + 1000 * batch_index + t_value)
                t = torch.full((target.shape[0],), t_value, dtype=torch.long, device=target.device)
                noise = torch.randn(target.shape, generator=generator).to(target.device)
                if self.mode == TrainMode.DIFFUSION:
                    sums[0] += float(self.diffusion.training_losses(self.ema, target, t, cond, noise=noise)["loss"].sum())
                    x_t = self.diffusion.q_sample(target, t, noise=noise)
                elif self.mode == TrainMode.REGRESSION:
                    sums[0] += float(regression_loss(self.ema, target, cond, generator)["loss"].sum())
                    x_t = torch.zeros_like(target)
                else:
                    unhandled_choice(self.mode)
                for slot, c in ((1, cond), (2, mri_free)):
                    x0 = self.ema(x_t, t, c["ld_pet"], c["t1"], c["t1_present"])["x0"]
                    sums[slot] += float(mean_flat((x0 - target) ** 2).sum())
                sums[3] += target.shape[0]
        loss, mse, mse_free, count = self.context.sum(sums)
        return {"val_loss": loss / count, "val_mse": mse / count, "val_mse_mri_free": mse_free / count}

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
            "best_val_mse": self.best_val,
            "elapsed_s": self.elapsed_s,
        }

    def _load_state(self, path: Path) -> None:
        state = torch.load(path, map_location=self.context.device, weights_only=True)
        if state.get("format") != STATE_FORMAT:
            raise ValueError(f"{path} is not a training state ({STATE_FORMAT})")
        saved = json.loads(state["config"])
        defaults = TrainConfig()  # states written before a field existed were trained with its default
        for name in ARCHITECTURE_FIELDS:
            trained = saved.get(name, getattr(defaults, name))
            if trained != getattr(self.config, name):
                raise ValueError(
                    f"cannot resume {path}: it was trained with {name}={trained!r}, this run asks for "
                    f"{getattr(self.config, name)!r}; use another --out"
                )
        self.model.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step, self.elapsed_s = int(state["step"]), float(state["elapsed_s"])
        # States written before best.pt was chosen on val_mse hold "best_val" (a val_loss): start selection afresh.
        self.best_val = float(state.get("best_val_mse", math.inf))

    def _load_initial_weights(self, path: Path) -> None:
        """Start model and EMA from a checkpoint's weights (fine-tuning); its network must be this run's.

        A diffusion run started from regression weights first zeroes the x_t input weights (zero_x_t_input_); a
        residual run started from direct-x0 weights first zeroes the x0 outputs (zero_x0_output_).
        """
        model, config, meta = checkpoint.load_checkpoint(path, device=self.context.device)
        if dataclasses.replace(config, residual=self.model_config.residual) != self.model_config or (
                config.residual and not self.model_config.residual):
            raise ValueError(f"init_weights {path} holds another network than preset={self.config.preset!r}, "
                             f"variant={self.config.variant!r}, residual={self.config.residual} of this run")
        trained_mode = meta.get("train_config", {}).get("mode")
        if trained_mode == TrainMode.REGRESSION.value and self.mode == TrainMode.DIFFUSION:
            model.zero_x_t_input_()
        if self.model_config.residual and not config.residual:
            model.zero_x0_output_()
        self.model.load_state_dict(model.state_dict())
        self.ema.load_state_dict(model.state_dict())

    def save(self, validation: Mapping[str, float] | None = None) -> None:
        """Write the latest state and EMA weights (main rank only); best.pt too when `validation` improved."""
        if not self.context.is_main:
            return
        meta = {"step": self.step, "train_config": json.loads(self.config.to_json())}
        # Select on the x0 error (what sampling returns); the diffusion objective adds VLB terms that do not track it.
        if validation is not None and validation["val_mse"] < self.best_val:
            self.best_val = validation["val_mse"]
            checkpoint.save_checkpoint(self.checkpoints / BEST_FILE, self.ema, self.model_config, dict(meta, **validation))
        checkpoint.save_checkpoint(self.checkpoints / EMA_FILE, self.ema, self.model_config, meta)
        with atomic_path(self.checkpoints / STATE_FILE) as temp:
            torch.save(self.state(), temp)

    def _log(self, record: Mapping[str, Any]) -> None:
        if self.context.is_main:
            with open(self.out / LOG_FILE, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---- the loop ----------------------------------------------------------------------------------------------

    def run(self) -> Iterator[dict[str, Any]]:
        """Train until `config.steps`; yield {"step", "steps", "loss", "log" (the logged record or None)} per step."""
        config = self.config
        window: dict[str, list[float]] = {}
        window_s = 0.0  # training time in the current log window (validation and checkpoints excluded)
        while self.step < config.steps:
            started = time.perf_counter()
            terms = self.train_step()
            seconds = time.perf_counter() - started
            window_s += seconds
            self.elapsed_s += seconds
            for key, value in terms.items():
                window.setdefault(key, []).append(value)
            record: dict[str, Any] | None = None
            last = self.step == config.steps
            if self.step % config.log_interval == 0 or last:
                record = {"step": self.step, **self.context.mean({k: float(np.mean(v)) for k, v in window.items()})}
                record.update(lr=self.optimizer.param_groups[0]["lr"], step_s=window_s / len(window["loss"]),
                              elapsed_s=self.elapsed_s)
                window, window_s = {}, 0.0
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
