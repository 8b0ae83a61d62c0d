"""M2DiffNet: dual-encoder, dual-decoder IDDPM U-Net with hierarchical feature fusion (paper section II-D)."""

from __future__ import annotations

import torch
from torch import nn

from ..options import VarianceType, unhandled_choice
from .config import AttentionBranches, HFFMode, ModelConfig, OutputMode, T1Input
from .nn import (
    AttentionBlock,
    Downsample,
    ResBlock,
    TimestepEmbedSequential,
    Upsample,
    conv1x1,
    conv3x3,
    normalization,
    timestep_embedding,
    zero_module,
)


class Encoder(nn.Module):
    """
    IDDPM U-Net encoder: input convolution, `num_res_blocks` ResBlocks per level with a Downsample between levels,
    then the middle block (ResBlock-Attention-ResBlock, or one ResBlock in a branch without attention, as in the
    released code's MRI branch).
    """

    def __init__(self, config: ModelConfig, in_channels: int, emb_channels: int, attention: bool):
        super().__init__()
        c, groups = config.model_channels, config.norm_groups
        self.input_blocks = nn.ModuleList([TimestepEmbedSequential(conv3x3(in_channels, c))])
        self.skip_channels = [c]
        ch, ds = c, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [ResBlock(ch, emb_channels, mult * c, config.dropout, groups)]
                ch = mult * c
                if attention and ds in config.attention_ds:
                    layers.append(AttentionBlock(ch, config.num_heads, groups))
                self.input_blocks.append(TimestepEmbedSequential(*layers))
                self.skip_channels.append(ch)
            if level != config.levels - 1:
                self.input_blocks.append(TimestepEmbedSequential(Downsample(ch)))
                self.skip_channels.append(ch)
                ds *= 2
        middle: list[nn.Module] = [ResBlock(ch, emb_channels, ch, config.dropout, groups)]
        if attention:
            middle.append(AttentionBlock(ch, config.num_heads, groups))
            middle.append(ResBlock(ch, emb_channels, ch, config.dropout, groups))
        self.middle_block = TimestepEmbedSequential(*middle)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """
        :param x: [N x in_channels x H x W] input.
        :param emb: [N x emb_channels] timestep embedding.
        :return: (skip features, one per input block, [N x skip_channels[i] x H/ds x W/ds]; middle-block output).
        """
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        return skips, self.middle_block(h, emb)


class Decoder(nn.Module):
    """
    IDDPM U-Net decoder: `num_res_blocks + 1` ResBlocks per level, each on concat(h, skip), Upsample between
    levels, then a GroupNorm-SiLU-conv head to `config.out_channels` channels.

    :param skip_channels: the encoder's skip widths, input-block order.
    :param skip_factor: skip tensors are `skip_factor` times as wide (2 for the released code's raw concat).
    """

    def __init__(
        self,
        config: ModelConfig,
        skip_channels: list[int],
        skip_factor: int,
        emb_channels: int,
        attention: bool,
        dropout: float,
    ):
        super().__init__()
        c, groups = config.model_channels, config.norm_groups
        skip_channels = list(skip_channels)
        ch, ds = c * config.channel_mult[-1], config.size_divisor
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                in_ch = ch + skip_factor * skip_channels.pop()
                layers: list[nn.Module] = [ResBlock(in_ch, emb_channels, mult * c, dropout, groups)]
                ch = mult * c
                if attention and ds in config.attention_ds:
                    layers.append(AttentionBlock(ch, config.num_heads, groups))
                if level and i == config.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(TimestepEmbedSequential(*layers))
        assert not skip_channels, "every skip feature is consumed"
        self.out = nn.Sequential(normalization(ch, groups), nn.SiLU(), zero_module(conv3x3(ch, config.out_channels)))

    def forward(self, h: torch.Tensor, skips: list[torch.Tensor], emb: torch.Tensor) -> torch.Tensor:
        """
        :param h: [N x C_mid x H/d x W/d] middle-block output (d = config.size_divisor).
        :param skips: skip features in encoder order (consumed last-first).
        :param emb: [N x emb_channels] timestep embedding.
        :return: [N x out_channels x H x W]: x0, then v with learned-range variance.
        """
        for block, skip in zip(self.output_blocks, reversed(skips)):
            h = block(torch.cat([h, skip], dim=1), emb)
        return self.out(h)


class FusionBlock(nn.Module):
    """
    Paper eq. 4: F_l = G(concat(W1 f1_l, W2 f2_l)) with learned 1x1 projections W1, W2 and a non-linear
    integration head G (3x3 conv halving the channels, GroupNorm, SiLU).
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.proj_pet = conv1x1(channels, channels)
        self.proj_mri = conv1x1(channels, channels)
        self.head = nn.Sequential(conv3x3(2 * channels, channels), normalization(channels, groups), nn.SiLU())

    def forward(self, f_pet: torch.Tensor, f_mri: torch.Tensor) -> torch.Tensor:
        """[N x C x h x w] twice -> [N x C x h x w]."""
        return self.head(torch.cat([self.proj_pet(f_pet), self.proj_mri(f_mri)], dim=1))


class M2DiffNet(nn.Module):
    """
    The M2Diff network (and its Table IV variants, chosen by `config`): encoder E1 on (x_t, LD-PET), encoder E2
    on (x_t, T1), hierarchical fusion of every encoder level's features, a PET decoder and an MRI decoder, each
    predicting x0 (and the variance interpolation v); the final x0 is the mean of both where T1 is present and the
    PET decoder's where it is absent. One sinusoidal timestep embedding feeds every block of every branch.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        c = config.model_channels
        emb_channels = 4 * c
        self.time_embed = nn.Sequential(nn.Linear(c, emb_channels), nn.SiLU(), nn.Linear(emb_channels, emb_channels))

        branch = config.t1_input == T1Input.BRANCH
        pet_in = 3 if config.t1_input == T1Input.CHANNEL else 2
        self.pet_encoder = Encoder(config, pet_in, emb_channels, attention=True)
        mri_attention = config.attention == AttentionBranches.BOTH
        self.mri_encoder = Encoder(config, 2, emb_channels, attention=mri_attention) if branch else None

        skips = self.pet_encoder.skip_channels
        self.fusion = (
            nn.ModuleList(FusionBlock(ch, config.norm_groups) for ch in skips) if config.hff == HFFMode.PROJ else None
        )
        skip_factor = 2 if config.hff == HFFMode.CONCAT else 1
        self.pet_decoder = Decoder(config, skips, skip_factor, emb_channels, attention=True, dropout=config.dropout)
        mri_dropout = config.dropout if config.mri_decoder_dropout is None else config.mri_decoder_dropout
        self.mri_decoder = (
            Decoder(config, skips, skip_factor, emb_channels, attention=mri_attention, dropout=mri_dropout)
            if config.num_decoders == 2
            else None
        )

    def forward(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ld_pet: torch.Tensor,
        t1: torch.Tensor | None = None,
        t1_present: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """
        Predict x0 from a noisy SD-PET slice and its conditions.

        :param x_t: [N x 1 x H x W] noisy SD-PET (LD-scale-normalised); H, W multiples of config.size_divisor.
        :param t: [N] long timesteps.
        :param ld_pet: [N x 1 x H x W] LD-PET, same normalisation.
        :param t1: [N x 1 x H x W] T1 on the same grid, or None (MRI-free for the whole batch).
        :param t1_present: [N] bool, False marks MRI-free samples (their T1 is ignored); None = all present.
        :return: dict with `x0` [N x 1 x H x W] (mean of both decoders where T1 is present and output is
            'mean', else the PET decoder), `x0_pet`, `x0_mri` (None with one decoder), `var_pet`, `var_mri`
            ([N x 1 x H x W] raw learned-range interpolation values v in about [-1, 1]; None with fixed
            variance or without that decoder).
        """
        present = self._check_inputs(x_t, t, ld_pet, t1, t1_present)
        config = self.config
        emb = self.time_embed(timestep_embedding(t, config.model_channels))
        mask = present[:, None, None, None]

        pet_input = [x_t, ld_pet]
        if config.t1_input == T1Input.CHANNEL:
            # where() rather than a product: an absent sample's placeholder T1 may hold NaN.
            pet_input.append(torch.zeros_like(x_t) if t1 is None else torch.where(mask, t1, 0.0))
        hs_pet, h_pet = self.pet_encoder(torch.cat(pet_input, dim=1), emb)

        if self.mri_encoder is None:
            return self._outputs(self.pet_decoder(h_pet, hs_pet, emb), None, present, ld_pet)

        hs_mri, h_mri = self._mri_features(x_t, t1, mask, emb, hs_pet, h_pet)
        if config.hff == HFFMode.PROJ:
            fused = [block(p, m) for block, p, m in zip(self.fusion, hs_pet, hs_mri)]
            skips_pet, skips_mri = fused, fused
        elif config.hff == HFFMode.CONCAT:
            # Released code: each decoder gets its own skip first, then the other encoder's.
            skips_pet = [torch.cat([p, m], dim=1) for p, m in zip(hs_pet, hs_mri)]
            skips_mri = [torch.cat([m, p], dim=1) for p, m in zip(hs_pet, hs_mri)]
        elif config.hff == HFFMode.NONE:
            skips_pet, skips_mri = hs_pet, hs_mri
        else:
            unhandled_choice(config.hff)

        out_pet = self.pet_decoder(h_pet, skips_pet, emb)
        out_mri = self.mri_decoder(h_mri, skips_mri, emb) if self.mri_decoder is not None else None
        return self._outputs(out_pet, out_mri, present, ld_pet)

    def _mri_features(
        self,
        x_t: torch.Tensor,
        t1: torch.Tensor | None,
        mask: torch.Tensor,
        emb: torch.Tensor,
        hs_pet: list[torch.Tensor],
        h_pet: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """E2's skip features and middle-block output, zeroed for MRI-free samples so the PET path alone
        reconstructs them.

        :param mask: [N x 1 x 1 x 1] bool, True where the T1 is present.
        :param hs_pet, h_pet: E1's skip features and middle-block output (the shapes of E2's).
        """
        if t1 is None:
            # MRI-free call, known without looking at a tensor: the zeroed features need no E2.
            return [torch.zeros_like(h) for h in hs_pet], torch.zeros_like(h_pet)
        # E2 runs on every sample whatever t1_present holds: every parameter stays in the graph (DDP needs no
        # find_unused_parameters) and no host sync reads the mask. An absent sample's placeholder T1 is zeroed
        # first, so a NaN there cannot reach the weight gradients (NaN x 0 is NaN).
        hs_mri, h_mri = self.mri_encoder(torch.cat([x_t, torch.where(mask, t1, 0.0)], dim=1), emb)
        return [torch.where(mask, h, 0.0) for h in hs_mri], torch.where(mask, h_mri, 0.0)

    @torch.no_grad()
    def zero_x_t_input_(self) -> None:
        """Zero the input-convolution weights that read x_t in every encoder.

        A network trained in regression mode always saw x_t = 0, so those weights never left their random
        initialisation; zeroing them makes a diffusion fine-tune start from exactly the regression's prediction.
        """
        for encoder in (self.pet_encoder, self.mri_encoder):
            if encoder is not None:
                encoder.input_blocks[0][0].weight[:, 0].zero_()

    @torch.no_grad()
    def zero_x0_output_(self) -> None:
        """Zero every decoder's x0 output channel, so that a residual network starts at x0 = LD-PET."""
        for decoder in (self.pet_decoder, self.mri_decoder):
            if decoder is not None:
                conv = decoder.out[-1]
                conv.weight[:1].zero_()
                conv.bias[:1].zero_()

    def _outputs(
        self, out_pet: torch.Tensor, out_mri: torch.Tensor | None, present: torch.Tensor, ld_pet: torch.Tensor
    ) -> dict[str, torch.Tensor | None]:
        learned = self.config.variance == VarianceType.LEARNED_RANGE
        base = ld_pet if self.config.residual else 0.0
        x0_pet = base + out_pet[:, :1]
        x0_mri = base + out_mri[:, :1] if out_mri is not None else None
        if self.config.output == OutputMode.MEAN:
            x0 = torch.where(present[:, None, None, None], 0.5 * (x0_pet + x0_mri), x0_pet)
        elif self.config.output == OutputMode.PET:
            x0 = x0_pet
        else:
            unhandled_choice(self.config.output)
        return {
            "x0": x0,
            "x0_pet": x0_pet,
            "x0_mri": x0_mri,
            "var_pet": out_pet[:, 1:] if learned else None,
            "var_mri": out_mri[:, 1:] if learned and out_mri is not None else None,
        }

    def _check_inputs(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        ld_pet: torch.Tensor,
        t1: torch.Tensor | None,
        t1_present: torch.Tensor | None,
    ) -> torch.Tensor:
        """Validate shapes; return the [N] bool T1-present mask."""
        if x_t.ndim != 4 or x_t.shape[1] != 1:
            raise ValueError(f"x_t must be [N, 1, H, W], got {tuple(x_t.shape)}")
        n, _, height, width = x_t.shape
        d = self.config.size_divisor
        if height % d or width % d:
            raise ValueError(
                f"x_t height and width must be divisible by {d} (2**(levels-1)), got {height} x {width}"
            )
        if ld_pet.shape != x_t.shape:
            raise ValueError(f"ld_pet must have the shape of x_t {tuple(x_t.shape)}, got {tuple(ld_pet.shape)}")
        if t1 is not None and t1.shape != x_t.shape:
            raise ValueError(f"t1 must have the shape of x_t {tuple(x_t.shape)}, got {tuple(t1.shape)}")
        if t.shape != (n,):
            raise ValueError(f"t must be [N] = [{n}], got {tuple(t.shape)}")
        if t1 is None:
            return torch.zeros(n, dtype=torch.bool, device=x_t.device)
        if t1_present is None:
            return torch.ones(n, dtype=torch.bool, device=x_t.device)
        if t1_present.shape != (n,) or t1_present.dtype != torch.bool:
            raise ValueError(
                f"t1_present must be a [{n}] bool tensor, got {t1_present.dtype} {tuple(t1_present.shape)}"
            )
        return t1_present


def build_model(config: ModelConfig) -> M2DiffNet:
    """Construct the network described by `config` (parameters on torch's current default device)."""
    return M2DiffNet(config)
