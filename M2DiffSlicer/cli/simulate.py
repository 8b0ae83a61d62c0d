"""Simulate paired LD-PET / SD-PET / T1 subjects (one folder per seed) and optionally a preview PNG."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options."""
    parser.add_argument("--out", required=True, help="output folder; subjects go to OUT/sub-<seed>")
    parser.add_argument("--subjects", type=int, default=1, help="number of subjects (seeds SEED .. SEED+N-1)")
    parser.add_argument("--seed", type=int, default=1000,
                        help="first seed; convention: training 1000+, held-out test 9000+, sample data 7")
    parser.add_argument("--drf", default="20,100", help="comma-separated dose reduction factors")
    parser.add_argument("--group", choices=["CN", "MCI", "AD"], default=None, help="force a group (default: drawn)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--reduced", action="store_true", help="coarse fast configuration (tests, smoke runs)")
    parser.add_argument("--preview", default=None, help="also write a T1/SD/LD preview PNG of the first subject")


def run(args: argparse.Namespace) -> int:
    """Simulate the subjects and print their folders."""
    from ..errors import BadInputError
    from ..simulation.subject import SimulationConfig, simulate_many

    try:
        drfs = tuple(int(d) for d in args.drf.split(",") if d.strip())
        config = (SimulationConfig.reduced if args.reduced else SimulationConfig)(drfs=drfs, group=args.group)
    except ValueError as error:
        raise BadInputError(f"--drf/--group: {error}") from error
    if args.subjects < 1:
        raise BadInputError(f"--subjects must be >= 1, got {args.subjects}")
    folders = simulate_many(args.out, list(range(args.seed, args.seed + args.subjects)), config, args.workers)
    for folder in folders:
        print(folder)
    if args.preview:
        from ..simulation.preview import write_preview

        print(write_preview(folders[0], args.preview, drf=max(drfs)))
    return 0
