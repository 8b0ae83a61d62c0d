"""Named network sizes (presets) and Table IV ablation variants, as plain ModelConfig field values."""

from __future__ import annotations

from typing import Any

# Sizes. The network is fully convolutional; `image_size` is the nominal slice (H, W) the preset is made for.
PRESETS: dict[str, dict[str, Any]] = {
    # The paper's / released code's full size (IDDPM 256x256 settings): attention at 16x16 and 8x8, i.e. at
    # downsample factors 16 and 32; num_heads 4 as in improved-diffusion's defaults.
    "paper": dict(
        image_size=(256, 256),
        model_channels=128,
        channel_mult=(1, 1, 2, 2, 4, 4),
        num_res_blocks=2,
        attention_ds=(16, 32),
        num_heads=4,
        norm_groups=32,
        dropout=0.2,
    ),
    # Practical on 2 CPU cores for the 2 mm model grid (112x96, 96x96, 96x112 slices), chosen by measurement:
    # one m2diff forward of a 112x96 slice is 3.4 GFLOP (32 channels: 13.6 GFLOP), about 70 ms of one core, so
    # ~250 slices x ~7 steps fit a minute on 2 cores; attention only at the lowest resolution (14x12 axial).
    "small": dict(
        image_size=(112, 96),
        model_channels=16,
        channel_mult=(1, 2, 2, 4),
        num_res_blocks=1,
        attention_ds=(8,),
        num_heads=4,
        norm_groups=4,
        dropout=0.1,
    ),
    # For tests: builds and runs in milliseconds.
    "tiny": dict(
        image_size=(32, 32),
        model_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        attention_ds=(2,),
        num_heads=2,
        norm_groups=4,
        dropout=0.1,
    ),
}

# Variants: overrides of the paper-faithful defaults of ModelConfig (which are the `m2diff` variant).
VARIANTS: dict[str, dict[str, Any]] = {
    "m2diff": {},
    # Table IV calls the final model V6.
    "v6": {},
    # github Gnahy/M2Diff (BiTaskUNetModel): raw concat of both encoders' skips into each decoder block, fixed
    # variance, attention only in the PET branch, sampling driven by the PET decoder. Paper preset: 268,986,626
    # parameters; the released model has 268,987,523 because it also holds IDDPM's unused `out` head (+1,409) and
    # its two decoder heads are bare convolutions without GroupNorm (-512).
    "released-code": dict(hff="concat", variance="fixed_large", attention="pet", output="pet"),
    # V1: single task, LD-PET only.
    "v1": dict(t1_input="none", num_decoders=1, hff="none", output="pet"),
    # V2: single task, LD-PET and T1 as input channels of one encoder.
    "v2": dict(t1_input="channel", num_decoders=1, hff="none", output="pet"),
    # V3: two tasks without feature fusion (the loss is the only link).
    "v3": dict(hff="none"),
    # V4: both encoders fused into one decoder.
    "v4": dict(num_decoders=1, output="pet"),
    # V5: asymmetric decoders. The paper varies dropout between the branches without giving values; here the
    # PET decoder keeps the preset's dropout and the MRI decoder has none.
    "v5": dict(mri_decoder_dropout=0.0),
}
