"""IDDPM-style network building blocks (Nichol & Dhariwal 2021): norms, timestep embedding, ResBlock, attention."""

from __future__ import annotations

import abc
import math

import torch
import torch.nn.functional as F
from torch import nn


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 so half-precision inference keeps stable statistics."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


def normalization(channels: int, groups: int) -> GroupNorm32:
    """A GroupNorm32 layer over `channels` in `groups` groups (`channels` must be a multiple of `groups`)."""
    return GroupNorm32(groups, channels)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero the parameters of `module` and return it (residual branches start as the identity)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """A 3x3 convolution that keeps the spatial size (or halves it with stride 2)."""
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def conv1x1(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 convolution: a per-pixel linear map of the channels."""
    return nn.Conv2d(in_channels, out_channels, 1)


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """
    Sinusoidal timestep embedding (Vaswani et al. 2017, as in IDDPM).

    :param timesteps: [N] timesteps, integer or fractional.
    :param dim: embedding width (even).
    :param max_period: the lowest frequency's period.
    :return: [N x dim] float32 embedding, cosines then sines.
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    )
    args = timesteps.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class TimestepBlock(nn.Module, abc.ABC):
    """A module whose forward takes the timestep embedding as a second argument."""

    @abc.abstractmethod
    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """[N x C x H x W] features and [N x emb_channels] embedding -> features."""


class TimestepEmbedSequential(nn.Sequential):
    """A sequence that passes the timestep embedding to the children that take it."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


class Downsample(nn.Module):
    """Halve H and W with a strided 3x3 convolution: [N x C x H x W] -> [N x C x H/2 x W/2]."""

    def __init__(self, channels: int):
        super().__init__()
        self.op = conv3x3(channels, channels, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W (nearest) then a 3x3 convolution: [N x C x H x W] -> [N x C x 2H x 2W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = conv3x3(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class ResBlock(TimestepBlock):
    """
    Residual block with scale-shift timestep conditioning: out = skip(x) + conv(SiLU(norm(h)(1+scale)+shift)).

    :param channels: input channels.
    :param emb_channels: timestep-embedding width.
    :param out_channels: output channels (a 1x1 skip convolution when they differ from `channels`).
    :param dropout: dropout probability before the last convolution.
    :param groups: GroupNorm groups.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float, groups: int):
        super().__init__()
        self.in_layers = nn.Sequential(normalization(channels, groups), nn.SiLU(), conv3x3(channels, out_channels))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_norm = normalization(out_channels, groups)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(p=dropout), zero_module(conv3x3(out_channels, out_channels))
        )
        self.skip_connection = nn.Identity() if out_channels == channels else conv1x1(channels, out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """
        :param x: [N x channels x H x W] features.
        :param emb: [N x emb_channels] timestep embedding.
        :return: [N x out_channels x H x W].
        """
        h = self.in_layers(x)
        scale, shift = self.emb_layers(emb).type(h.dtype)[..., None, None].chunk(2, dim=1)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip_connection(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """
    Multi-head self-attention over all spatial positions, residual: [N x C x H x W] -> [N x C x H x W].

    :param channels: feature channels (a multiple of `num_heads`).
    :param num_heads: attention heads.
    :param groups: GroupNorm groups.
    """

    def __init__(self, channels: int, num_heads: int, groups: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm = normalization(channels, groups)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        flat = x.reshape(n, c, -1)
        # [N, 3C, T] -> 3 x [N, heads, T, C/heads] for the fused scaled-dot-product kernel.
        qkv = self.qkv(self.norm(flat)).reshape(n, 3, self.num_heads, c // self.num_heads, -1)
        q, k, v = qkv.transpose(-1, -2).unbind(1)
        h = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(n, c, -1)
        return (flat + self.proj_out(h)).reshape(n, c, *spatial)
