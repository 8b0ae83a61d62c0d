"""IDDPM Gaussian diffusion for an x0-predicting, two-decoder M2Diff network: schedules, posterior, losses.

The network predicts x0 directly (paper section II-B) and, with learned-range variance, one interpolation value
v per pixel and decoder (IDDPM, Nichol & Dhariwal 2021, equation 15). Conditioning travels as one dict
`cond = {"ld_pet": [N x 1 x H x W], "t1": [N x 1 x H x W] | None, "t1_present": [N] bool | None}`; the
model is any callable honouring the forward contract of docs/DEVELOPING.md.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from ..options import VarianceType
from .loss_weights import LossWeights  # also imported from here (respace, callers)
from .losses import gaussian_nll, mean_flat, normal_kl
from ..options import parse_enum, unhandled_choice

NUM_TIMESTEPS = 1000

Model = Callable[..., Mapping[str, Any]]


class BetaSchedule(enum.Enum):
    """Named noise schedules."""

    LINEAR = "linear"  # Ho et al. 2020, rescaled to the number of steps
    COSINE = "cosine"  # Nichol & Dhariwal 2021, equation 17


def get_beta_schedule(schedule: BetaSchedule | str, num_timesteps: int = NUM_TIMESTEPS) -> np.ndarray:
    """The float64 betas [T] of a named schedule."""
    schedule = parse_enum(BetaSchedule, schedule, "schedule")
    if num_timesteps < 1:
        raise ValueError(f"num_timesteps must be >= 1, got {num_timesteps}")
    if schedule == BetaSchedule.LINEAR:
        scale = 1000 / num_timesteps
        return np.linspace(scale * 0.0001, scale * 0.02, num_timesteps, dtype=np.float64)
    elif schedule == BetaSchedule.COSINE:
        return betas_for_alpha_bar(num_timesteps, lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2)
    else:
        unhandled_choice(schedule)


def process_betas(
    schedule: BetaSchedule | str, num_timesteps: int = NUM_TIMESTEPS, truncate_at: int = 0
) -> np.ndarray:
    """The betas of the process a model is trained and sampled on: the named schedule over `num_timesteps`, cut
    after its first `truncate_at` steps when truncate_at > 0.

    A cut process ends at a step that still holds most of the signal, and sampling starts from the LD-PET diffused
    to it (sampling.initial_state), as in Come-Closer-Diffuse-Faster (Chung et al. 2022). Every trained x_t then
    carries information; on the whole process x_t says more than the LD-PET only at the last few steps before 0.
    """
    betas = get_beta_schedule(schedule, num_timesteps)
    if not 0 <= truncate_at <= num_timesteps:
        raise ValueError(f"truncate_at must be in [0, {num_timesteps}] (0 keeps the whole process), got {truncate_at}")
    return betas[:truncate_at] if truncate_at else betas


def betas_for_alpha_bar(num_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """Betas [T] that discretise a continuous alpha_bar(s), s in [0, 1]; clipped at max_beta to avoid a
    singular last step."""
    betas = [
        min(1.0 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
        for i in range(num_timesteps)
    ]
    return np.array(betas, dtype=np.float64)


def _extract(
    values: np.ndarray, t: torch.Tensor, shape: torch.Size | tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """Gather the float64 table `values` [T] at timesteps t [N] and reshape to broadcast against `shape`
    ([N x ...]); the table stays float64 until this single cast."""
    table = torch.from_numpy(values).to(device=t.device)
    out = table[t.long()].to(dtype)
    return out.reshape(t.shape[0], *([1] * (len(shape) - 1)))


def t1_present_mask(cond: Mapping[str, Any], batch: int, device: torch.device) -> torch.Tensor:
    """Which samples have a T1 [N] bool: none if cond["t1"] is None, else cond["t1_present"] (default all)."""
    if cond.get("t1") is None:
        return torch.zeros(batch, dtype=torch.bool, device=device)
    present = cond.get("t1_present")
    if present is None:
        return torch.ones(batch, dtype=torch.bool, device=device)
    return present.to(device=device, dtype=torch.bool)


class GaussianDiffusion:
    """The IDDPM forward process, its posterior, the x0-driven reverse step and the M2Diff training loss.

    :param betas: float64 [T] noise schedule (see get_beta_schedule).
    :param variance: "learned_range" or "fixed_large".
    :param loss_weights: multi-task loss weights; the paper's eq. 9 by default (LossWeights(): no VLB term).
    """

    def __init__(
        self,
        betas: np.ndarray,
        variance: VarianceType | str = VarianceType.LEARNED_RANGE,
        loss_weights: LossWeights | None = None,
    ) -> None:
        self.variance = parse_enum(VarianceType, variance, "variance")
        self.loss_weights = loss_weights if loss_weights is not None else LossWeights()
        betas = np.asarray(betas, dtype=np.float64)
        if betas.ndim != 1 or not ((betas > 0).all() and (betas <= 1).all()):
            raise ValueError("betas must be a 1-D array with values in (0, 1]")
        self.betas = betas
        self.num_timesteps = int(betas.shape[0])

        alphas = 1.0 - betas
        self.alphas_cumprod = np.cumprod(alphas)
        self.alphas_cumprod_prev = np.append(1.0, self.alphas_cumprod[:-1])
        self.sqrt_alphas_cumprod = np.sqrt(self.alphas_cumprod)
        self.sqrt_one_minus_alphas_cumprod = np.sqrt(1.0 - self.alphas_cumprod)
        self.sqrt_recip_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod)
        self.sqrt_recipm1_alphas_cumprod = np.sqrt(1.0 / self.alphas_cumprod - 1.0)

        # q(x_{t-1} | x_t, x_0), DDPM equations 6-7.
        self.posterior_variance = betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        # The posterior variance is 0 at t = 0; its log is clipped to the t = 1 value (IDDPM).
        self.posterior_log_variance_clipped = np.log(
            np.append(self.posterior_variance[1], self.posterior_variance[1:])
            if self.num_timesteps > 1
            else self.betas
        )
        self.posterior_mean_coef1 = betas * np.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef2 = (1.0 - self.alphas_cumprod_prev) * np.sqrt(alphas) / (1.0 - self.alphas_cumprod)
        # Fixed-large variance starts at the posterior variance of t = 1 for a better t = 0 likelihood (IDDPM).
        self.log_betas = np.log(betas)
        self.fixed_large_log_variance = np.log(
            np.append(self.posterior_variance[1], betas[1:]) if self.num_timesteps > 1 else betas
        )

    # ---- forward process -------------------------------------------------------------------------------------

    def q_mean_variance(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and variance of q(x_t | x_0) for x0 [N x C x H x W] and t [N]; both of x0's shape."""
        mean = _extract(self.sqrt_alphas_cumprod, t, x0.shape, x0.dtype) * x0
        variance = _extract(1.0 - self.alphas_cumprod, t, x0.shape, x0.dtype).expand_as(x0)
        return mean, variance

    def q_sample(
        self,
        x0: torch.Tensor,
        t: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw x_t ~ q(x_t | x_0) (DDPM eq. 4) for x0 [N x C x H x W] and t [N]; `noise` (x0's shape) or
        `generator` makes the draw reproducible."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        assert noise.shape == x0.shape
        return (
            _extract(self.sqrt_alphas_cumprod, t, x0.shape, x0.dtype) * x0
            + _extract(self.sqrt_one_minus_alphas_cumprod, t, x0.shape, x0.dtype) * noise
        )

    def q_posterior_mean_variance(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mean, variance and clipped log-variance of q(x_{t-1} | x_t, x_0) (DDPM eq. 6-7); x0 and x_t are
        [N x C x H x W], t is [N]; all three outputs have x_t's shape."""
        assert x0.shape == x_t.shape
        mean = (
            _extract(self.posterior_mean_coef1, t, x_t.shape, x_t.dtype) * x0
            + _extract(self.posterior_mean_coef2, t, x_t.shape, x_t.dtype) * x_t
        )
        variance = _extract(self.posterior_variance, t, x_t.shape, x_t.dtype).expand_as(x_t)
        log_variance = _extract(self.posterior_log_variance_clipped, t, x_t.shape, x_t.dtype).expand_as(x_t)
        return mean, variance, log_variance

    def predict_eps_from_x0(self, x_t: torch.Tensor, t: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """The noise eps that, with x0, gives x_t under q_sample (inverts DDPM eq. 4); [N x C x H x W]."""
        return (
            _extract(self.sqrt_recip_alphas_cumprod, t, x_t.shape, x_t.dtype) * x_t - x0
        ) / _extract(self.sqrt_recipm1_alphas_cumprod, t, x_t.shape, x_t.dtype)

    # ---- reverse process -------------------------------------------------------------------------------------

    def model_log_variance(self, v: torch.Tensor | None, t: torch.Tensor, x_t: torch.Tensor) -> torch.Tensor:
        """log Sigma_theta at t [N], of x_t's shape and dtype: IDDPM eq. 15 with frac = (v + 1) / 2 for learned
        range (v [N x C x H x W]; -1 .. 1 spans posterior variance .. beta_t), the fixed-large log-variance
        otherwise."""
        shape, dtype = x_t.shape, x_t.dtype
        if self.variance == VarianceType.LEARNED_RANGE:
            if v is None:
                raise ValueError("variance='learned_range' needs a model that returns variance values (var_pet)")
            min_log = _extract(self.posterior_log_variance_clipped, t, shape, dtype)
            max_log = _extract(self.log_betas, t, shape, dtype)
            frac = (v + 1.0) / 2.0
            return frac * max_log + (1.0 - frac) * min_log
        elif self.variance == VarianceType.FIXED_LARGE:
            return _extract(self.fixed_large_log_variance, t, shape, dtype).expand(shape)
        else:
            unhandled_choice(self.variance)

    def p_mean_variance(
        self,
        model: Model,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Mapping[str, Any],
        clip_x0: tuple[float, float] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Apply the model to get p(x_{t-1} | x_t) and its x0 estimate.

        :param model: M2Diff forward contract (docs/DEVELOPING.md).
        :param x_t: [N x 1 x H x W] state at step t.
        :param t: [N] long timesteps of this diffusion.
        :param cond: {"ld_pet", "t1", "t1_present"}; t1 None is the MRI-free mode.
        :param clip_x0: optional (low, high) bounds for the x0 estimate, in normalised PET units.
        :return: dict with "mean", "variance", "log_variance" and "x0" (the model's final x0: both decoders'
            mean where T1 is present, the PET decoder's where not), all [N x 1 x H x W].
        """
        out = self._call_model(model, x_t, t, cond)
        x0 = out["x0"]
        if clip_x0 is not None:
            x0 = x0.clamp(*clip_x0)
        v = None
        if self.variance == VarianceType.LEARNED_RANGE:
            v = out["var_pet"]
            if out.get("var_mri") is not None:
                present = t1_present_mask(cond, x_t.shape[0], x_t.device).view(-1, *([1] * (x_t.ndim - 1)))
                v = torch.where(present, (out["var_pet"] + out["var_mri"]) / 2.0, out["var_pet"])
        log_variance = self.model_log_variance(v, t, x_t)
        mean, _, _ = self.q_posterior_mean_variance(x0, x_t, t)
        assert mean.shape == log_variance.shape == x0.shape == x_t.shape
        return {"mean": mean, "variance": torch.exp(log_variance), "log_variance": log_variance, "x0": x0}

    # ---- training --------------------------------------------------------------------------------------------

    def training_losses(
        self,
        model: Model,
        x0: torch.Tensor,
        t: torch.Tensor,
        cond: Mapping[str, Any],
        noise: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Per-sample M2Diff training loss at timesteps t.

        loss = lambda1 (MSE_pet + MSE_mri) + lambda2 MSE(x0_pet, x0_mri) + w_vlb (VLB_pet + VLB_mri)
        + w_output MSE(x0, output) (w_output = 0 in the paper); a single-decoder model's loss is its MSE (+ VLB).
        For MRI-free samples (t1 None or t1_present False) only the PET decoder's terms count. VLB terms exist only
        with learned-range variance; they see the x0 estimate detached, so they train the variance alone (IDDPM
        section 3.1).

        :param model: M2Diff forward contract (docs/DEVELOPING.md).
        :param x0: [N x 1 x H x W] SD-PET target, normalised.
        :param t: [N] long timesteps.
        :param cond: {"ld_pet", "t1", "t1_present"}.
        :param noise: optional [N x 1 x H x W] noise for q_sample.
        :return: dict of [N] tensors: "loss", "mse_pet" and, as they apply, "mse_mri", "consistency", "vb_pet",
            "vb_mri" (MRI-decoder terms are 0 for MRI-free samples).
        """
        x_t = self.q_sample(x0, t, noise=noise)
        out = self._call_model(model, x_t, t, cond)
        learned = self.variance == VarianceType.LEARNED_RANGE
        terms = {"mse_pet": mean_flat((x0 - out["x0_pet"]) ** 2)}
        if learned:
            terms["vb_pet"] = self._vb_term(x0, x_t, t, out["x0_pet"].detach(), out["var_pet"])
        if out.get("x0_mri") is None:
            terms["loss"] = terms["mse_pet"] + (self.loss_weights.vlb * terms["vb_pet"] if learned else 0.0)
            return self._add_output_term(terms, x0, out)

        present = t1_present_mask(cond, x0.shape[0], x0.device).to(x0.dtype)
        terms["mse_mri"] = present * mean_flat((x0 - out["x0_mri"]) ** 2)
        terms["consistency"] = present * mean_flat((out["x0_pet"] - out["x0_mri"]) ** 2)
        w = self.loss_weights
        loss = w.task * (terms["mse_pet"] + terms["mse_mri"]) + w.consistency * terms["consistency"]
        if learned:
            terms["vb_mri"] = present * self._vb_term(x0, x_t, t, out["x0_mri"].detach(), out["var_mri"])
            loss = loss + w.vlb * (terms["vb_pet"] + terms["vb_mri"])
        terms["loss"] = loss
        return self._add_output_term(terms, x0, out)

    def _add_output_term(self, terms: dict[str, torch.Tensor], x0: torch.Tensor, out) -> dict[str, torch.Tensor]:
        """Add loss_weights.output x the MSE of the network's output x0 (what sampling uses), when it is set."""
        if self.loss_weights.output:
            terms["mse_output"] = mean_flat((x0 - out["x0"]) ** 2)
            terms["loss"] = terms["loss"] + self.loss_weights.output * terms["mse_output"]
        return terms

    def _vb_term(
        self, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor, x0_pred: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        """One decoder's VLB term [N] in bits per dim: KL(q(x_{t-1}|x_t,x_0) || p(x_{t-1}|x_t)) for t > 0, the
        continuous Gaussian NLL of x_0 at t = 0."""
        true_mean, _, true_log_variance = self.q_posterior_mean_variance(x0, x_t, t)
        model_mean, _, _ = self.q_posterior_mean_variance(x0_pred, x_t, t)
        model_log_variance = self.model_log_variance(v, t, x_t)
        kl = mean_flat(normal_kl(true_mean, true_log_variance, model_mean, model_log_variance)) / math.log(2.0)
        nll = mean_flat(gaussian_nll(x0, model_mean, model_log_variance)) / math.log(2.0)
        return torch.where(t == 0, nll, kl)

    # ---- model calls -----------------------------------------------------------------------------------------

    def wrap_model(self, model: Model) -> Model:
        """The model as this diffusion calls it; SpacedDiffusion maps its timesteps to the original ones."""
        return model

    def _call_model(
        self, model: Model, x_t: torch.Tensor, t: torch.Tensor, cond: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        out = self.wrap_model(model)(x_t, t, cond["ld_pet"], cond.get("t1"), cond.get("t1_present"))
        assert out["x0"].shape == x_t.shape, (out["x0"].shape, x_t.shape)
        return out
