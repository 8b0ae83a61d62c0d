"""Likelihood helpers for the IDDPM variational bound, in nats (the caller converts to bits)."""

from __future__ import annotations

import math

import torch


def mean_flat(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over every dimension but the batch one: [N x ...] -> [N]."""
    return tensor.mean(dim=list(range(1, tensor.ndim)))


def normal_kl(
    mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor
) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))); all arguments broadcast together."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def gaussian_nll(x: torch.Tensor, mean: torch.Tensor, log_variance: torch.Tensor) -> torch.Tensor:
    """Elementwise negative log density of x under N(mean, exp(log_variance)).

    PET intensities are continuous (not 8-bit), so the t = 0 term of the bound uses this density instead of
    IDDPM's discretised decoder.
    """
    return 0.5 * (math.log(2.0 * math.pi) + log_variance + (x - mean) ** 2 * torch.exp(-log_variance))
