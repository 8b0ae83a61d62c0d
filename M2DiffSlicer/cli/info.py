"""Print a preset's network configuration and parameter count."""

from __future__ import annotations

import argparse

from ..model.presets import PRESETS, VARIANTS


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `info` options."""
    parser.add_argument("--preset", required=True, choices=list(PRESETS), help="network size")
    parser.add_argument("--variant", default="m2diff", choices=list(VARIANTS), help="architecture variant")


def run(args: argparse.Namespace) -> int:
    """Print the configuration (one `field: value` line each) and the parameter count."""
    import torch

    from ..model.config import model_config
    from ..model.unet import build_model

    config = model_config(args.preset, args.variant)
    # The meta device allocates no memory: counting the 270 M-parameter paper preset takes a fraction of a second.
    with torch.device("meta"):
        model = build_model(config)
    count = sum(p.numel() for p in model.parameters())
    print(f"preset: {args.preset}")
    print(f"variant: {args.variant}")
    for name, value in config.to_dict().items():
        print(f"{name}: {value}")
    print(f"parameters: {count / 1e6:.2f} M ({count:,})")
    return 0
