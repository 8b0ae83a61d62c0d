"""Reverse-process sampling: one progressive loop, with the ancestral (IDDPM) and DDIM steps passed in.

The loop is driven by the model's final x0 (mean of both decoders where T1 is present, the PET path alone when
cond["t1"] is None). Every random draw comes from the optional torch.Generator, so a fixed seed gives identical
output.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from .gaussian_diffusion import GaussianDiffusion, Model
from ..options import SamplingMethod, parse_enum, unhandled_choice

StepFn = Callable[[GaussianDiffusion, dict, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _nonzero_mask(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """[N x 1 x 1 x 1] 0 where t == 0 (the last step adds no noise), else 1."""
    return (t != 0).to(x.dtype).view(-1, *([1] * (x.ndim - 1)))


def ancestral_step(
    diffusion: GaussianDiffusion, out: dict, x_t: torch.Tensor, t: torch.Tensor, noise: torch.Tensor
) -> torch.Tensor:
    """x_{t-1} = mean + sigma * noise from p_mean_variance's `out`; x_t and noise are [N x 1 x H x W]."""
    return out["mean"] + _nonzero_mask(t, x_t) * torch.exp(0.5 * out["log_variance"]) * noise


def ddim_step(
    diffusion: GaussianDiffusion,
    out: dict,
    x_t: torch.Tensor,
    t: torch.Tensor,
    noise: torch.Tensor,
    eta: float = 0.0,
) -> torch.Tensor:
    """x_{t-1} by DDIM eq. 12 from the x0 estimate in `out`; eta = 0 ignores noise, eta = 1 matches DDPM's
    posterior variance."""
    x0 = out["x0"]
    eps = diffusion.predict_eps_from_x0(x_t, t, x0)
    alpha_bar = torch.as_tensor(diffusion.alphas_cumprod, device=x_t.device)[t].view(-1, *([1] * (x_t.ndim - 1)))
    alpha_bar_prev = torch.as_tensor(diffusion.alphas_cumprod_prev, device=x_t.device)[t].view_as(alpha_bar)
    sigma = eta * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar)) * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
    mean = x0 * torch.sqrt(alpha_bar_prev).to(x_t.dtype) + torch.sqrt(1 - alpha_bar_prev - sigma**2).to(x_t.dtype) * eps
    return mean + _nonzero_mask(t, x_t) * sigma.to(x_t.dtype) * noise


def initial_state(diffusion: GaussianDiffusion, ld_pet: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """x_T drawn from q(x_T | x_0 = LD-PET) with `noise` (all [N x 1 x H x W]): the reverse process's start.

    Exact for a truncated process (diffusion.process_betas), whose last step keeps most of the signal. On the whole
    1,000-step process it is noise up to a 0.006 x LD-PET term, i.e. the usual N(0, I) start.
    """
    last = torch.full((ld_pet.shape[0],), diffusion.num_timesteps - 1, device=ld_pet.device, dtype=torch.long)
    return diffusion.q_sample(ld_pet, last, noise=noise)


@torch.no_grad()
def _reverse_step(
    diffusion: GaussianDiffusion,
    model: Model,
    step_fn: StepFn,
    x_t: torch.Tensor,
    t: torch.Tensor,
    cond: Mapping[str, Any],
    noise: torch.Tensor,
    clip_x0: tuple[float, float] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    out = diffusion.p_mean_variance(model, x_t, t, cond, clip_x0=clip_x0)
    return step_fn(diffusion, out, x_t, t, noise), out["x0"]


def sample_progressive(
    diffusion: GaussianDiffusion,
    model: Model,
    shape: tuple[int, ...],
    cond: Mapping[str, Any],
    method: SamplingMethod | str = SamplingMethod.DDIM,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    x_T: torch.Tensor | None = None,
    clip_x0: tuple[float, float] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run the reverse process from x_T to x_0, yielding after every step.

    Gradients are off inside each step only, so the caller's code between yields is unaffected.

    :param diffusion: a (usually respaced) GaussianDiffusion.
    :param model: M2Diff forward contract (docs/DEVELOPING.md).
    :param shape: (N, 1, H, W) of the output.
    :param cond: {"ld_pet": [N x 1 x H x W], "t1": [N x 1 x H x W] | None, "t1_present": [N] bool | None};
        t1 None is the MRI-free mode.
    :param method: "ddim" or "ancestral".
    :param eta: DDIM stochasticity (0 = deterministic); must be 0 for ancestral sampling.
    :param generator: source of x_T and of every step's noise (on the device of cond["ld_pet"]).
    :param x_T: optional starting state of `shape`, used instead of initial_state's.
    :param clip_x0: optional (low, high) bounds for each step's x0 estimate.
    :return: iterator of dicts {"step": 1..total, "total": number of steps, "x_t": [N x 1 x H x W] state after
        the step, "x0": [N x 1 x H x W] the model's x0 estimate at this step}.
    """
    method = parse_enum(SamplingMethod, method, "method")
    if eta < 0:
        raise ValueError(f"eta must be >= 0, got {eta}")
    if method == SamplingMethod.DDIM:
        step_fn: StepFn = functools.partial(ddim_step, eta=eta)
    elif method == SamplingMethod.ANCESTRAL:
        if eta != 0:
            raise ValueError(f"eta applies to method='ddim' only, got eta={eta} with method='ancestral'")
        step_fn = ancestral_step
    else:
        unhandled_choice(method)

    ld_pet = cond["ld_pet"]
    device, dtype = ld_pet.device, ld_pet.dtype
    total = diffusion.num_timesteps
    if x_T is None:
        x_t = initial_state(diffusion, ld_pet, torch.randn(shape, generator=generator, device=device, dtype=dtype))
    else:
        if tuple(x_T.shape) != tuple(shape):
            raise ValueError(f"x_T has shape {tuple(x_T.shape)}, expected {tuple(shape)}")
        x_t = x_T.to(device=device, dtype=dtype)

    for k, index in enumerate(reversed(range(total)), start=1):
        t = torch.full((shape[0],), index, device=device, dtype=torch.long)
        noise = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x_t, x0 = _reverse_step(diffusion, model, step_fn, x_t, t, cond, noise, clip_x0)
        yield {"step": k, "total": total, "x_t": x_t, "x0": x0}


def sample(diffusion: GaussianDiffusion, model: Model, shape: tuple[int, ...], cond: Mapping[str, Any],
           **options: Any) -> torch.Tensor:
    """The final x0 [N x 1 x H x W] of sample_progressive (same arguments; `options` are its keywords)."""
    final = None
    for final in sample_progressive(diffusion, model, shape, cond, **options):
        pass
    assert final is not None
    return final["x0"]
