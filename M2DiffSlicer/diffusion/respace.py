"""Timestep respacing: run a T = 1000 model on a shorter schedule (IDDPM section 4, DDIM striding)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from .gaussian_diffusion import (
    NUM_TIMESTEPS,
    BetaSchedule,
    GaussianDiffusion,
    LossWeights,
    Model,
    VarianceType,
    process_betas,
)


class RespacingError(ValueError):
    """The asked-for number of sampling steps cannot be taken from the process (too many, or no such stride)."""


def space_timesteps(num_timesteps: int, section_counts: str | Sequence[int]) -> set[int]:
    """The original timesteps to keep.

    :param num_timesteps: length of the original process (T).
    :param section_counts: "10" (10 evenly spaced steps), "5,5,5" (the process cut into equal sections with that
        many steps each), "ddim10" (DDIM's integer stride giving exactly 10 steps), "trailing10" (10 steps ending
        at T - 1, Lin et al. 2024, table 2: the first step then sees pure noise, which few-step sampling of an
        x0-predicting model needs; "ddim1" or "1" would query the model at t = 0 with pure noise), or a sequence
        of counts.
    :return: set of kept timesteps in [0, num_timesteps); 0 is kept except by "trailing".
    """
    if isinstance(section_counts, str):
        text = section_counts.strip()
        if text.startswith("trailing"):
            desired = _parse_count(text[len("trailing"):], section_counts)
            if not 1 <= desired <= num_timesteps:
                raise RespacingError(f"section_counts={section_counts!r}: need 1 to {num_timesteps} steps")
            return {round(num_timesteps - k * num_timesteps / desired) - 1 for k in range(desired)}
        if text.startswith("ddim"):
            desired = _parse_count(text[len("ddim"):], section_counts)
            for stride in range(1, num_timesteps + 1):
                if len(range(0, num_timesteps, stride)) == desired:
                    return set(range(0, num_timesteps, stride))
            raise RespacingError(f"section_counts={section_counts!r}: no integer stride gives exactly {desired} of "
                             f"{num_timesteps} steps")
        counts = [_parse_count(part, section_counts) for part in text.split(",")]
    else:
        counts = [int(count) for count in section_counts]
    if not counts or any(count < 1 for count in counts):
        raise ValueError(f"section_counts must be positive step counts, got {section_counts!r}")

    size_per, extra = divmod(num_timesteps, len(counts))
    start = 0
    kept: list[int] = []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if size < count:
            raise RespacingError(f"section_counts={section_counts!r}: cannot take {count} steps from a section of "
                                 f"{size}")
        stride = (size - 1) / (count - 1) if count > 1 else 1.0
        kept.extend(start + round(stride * k) for k in range(count))
        start += size
    return set(kept)


def _parse_count(text: str, section_counts: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"section_counts must look like '10', 'ddim10' or '5,5,5', got {section_counts!r}") from None


class SpacedDiffusion(GaussianDiffusion):
    """A GaussianDiffusion over a subset of a base process's timesteps.

    The kept steps' alphas_cumprod equal the base's; betas are re-derived from them (IDDPM eq. 19). Models are
    wrapped so that they always receive original timesteps (0 .. T-1).

    :param use_timesteps: original timesteps to keep (see space_timesteps).
    :param betas: float64 [T] base schedule.
    :param variance, loss_weights: as for GaussianDiffusion.
    """

    def __init__(
        self,
        use_timesteps: Iterable[int],
        betas: np.ndarray,
        variance: VarianceType | str = VarianceType.LEARNED_RANGE,
        loss_weights: LossWeights | None = None,
    ) -> None:
        base = GaussianDiffusion(betas, variance=variance, loss_weights=loss_weights)
        kept = sorted(set(use_timesteps))
        if not kept or kept[0] < 0 or kept[-1] >= base.num_timesteps:
            raise ValueError(f"use_timesteps must be a non-empty subset of 0..{base.num_timesteps - 1}")
        self.original_num_steps = base.num_timesteps
        self.timestep_map = kept
        last_alpha_cumprod = 1.0
        new_betas = []
        for step in kept:
            new_betas.append(1.0 - base.alphas_cumprod[step] / last_alpha_cumprod)
            last_alpha_cumprod = base.alphas_cumprod[step]
        super().__init__(np.array(new_betas), variance=variance, loss_weights=loss_weights)

    def wrap_model(self, model: Model) -> Model:
        """The model behind a wrapper that maps this diffusion's step indices to original timesteps."""
        if isinstance(model, _TimestepMappedModel):
            return model
        return _TimestepMappedModel(model, self.timestep_map)


class _TimestepMappedModel:
    """Calls the wrapped network with original timesteps: index i of the spaced process -> timestep_map[i]."""

    def __init__(self, model: Model, timestep_map: Sequence[int]) -> None:
        self.model = model
        self.timestep_map = torch.tensor(timestep_map, dtype=torch.long)

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, *args: Any) -> Mapping[str, Any]:
        original_t = self.timestep_map.to(t.device)[t.long()]
        return self.model(x_t, original_t, *args)


def create_diffusion(
    *,
    steps: int = NUM_TIMESTEPS,
    schedule: BetaSchedule | str = BetaSchedule.LINEAR,
    variance: VarianceType | str = VarianceType.LEARNED_RANGE,
    respacing: str | Sequence[int] | None = None,
    loss_weights: LossWeights | None = None,
    truncate_at: int = 0,
) -> SpacedDiffusion:
    """The diffusion for training (respacing None: every step) or fast sampling (e.g. respacing "ddim10"), over the
    first `truncate_at` of the schedule's `steps` when truncate_at > 0 (see diffusion.process_betas)."""
    betas = process_betas(schedule, steps, truncate_at)
    length = len(betas)
    use_timesteps = range(length) if respacing in (None, "") else space_timesteps(length, respacing)
    return SpacedDiffusion(use_timesteps, betas, variance=variance, loss_weights=loss_weights)


def trained_process_diffusion(
    train_config: Mapping[str, Any], variance: VarianceType | str, steps: int
) -> SpacedDiffusion:
    """`steps` DDIM steps ending at the last timestep ("trailing", docs/DEVELOPING.md "Sampling schedule") of the
    process a checkpoint was trained on, as its meta["train_config"] records it (diffusion_steps, schedule,
    truncate_at; a field older checkpoints lack takes the value they were trained with)."""
    return create_diffusion(
        steps=int(train_config.get("diffusion_steps", NUM_TIMESTEPS)),
        schedule=train_config.get("schedule", BetaSchedule.LINEAR.value),
        variance=variance,
        respacing=f"trailing{steps}",
        truncate_at=int(train_config.get("truncate_at", 0)),
    )
