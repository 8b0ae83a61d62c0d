"""Simulate paired LD-PET / SD-PET / T1 subjects (one folder per seed), fixed or domain-randomised, and a preview."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options (names are checked in `run`: importing the simulator here would slow every
    m2diff command)."""
    parser.add_argument("--out", required=True, help="output folder; subjects go to OUT/sub-<seed>")
    parser.add_argument("--subjects", type=int, default=1, help="number of subjects (seeds SEED .. SEED+N-1)")
    parser.add_argument("--seed", type=int, default=1000,
                        help="first seed; convention: training 1000+, held-out test 9000+, sample data 7")
    parser.add_argument("--drf", default="20,100",
                        help="comma-separated dose reduction factors (1 = an independent full-dose replicate)")
    parser.add_argument("--domain", default="fixed",
                        help="fixed: today's one configuration; randomised: each subject draws its own scanner, "
                             "dose (plus one continuous log-uniform DRF 2-200), FOV and T1 (simulation/domain.py)")
    parser.add_argument("--randomise", dest="domain", action="store_const", const="randomised",
                        help="same as --domain randomised")
    parser.add_argument("--scanner", default="default",
                        help="held-out TEST scanner model: default, sharp (PSF 3 mm, 6 it., 2 mm filter) or smooth "
                             "(PSF 6 mm, 5 mm filter); fixed domain only, never train on it")
    parser.add_argument("--fov", default="brain",
                        help="held-out TEST field of view: brain (today's) or clinical (1.6x1.6x2 mm, 180x180x110, "
                             "head off-centre above a warm neck/shoulder block)")
    parser.add_argument("--group", choices=["CN", "MCI", "AD"], default=None, help="force a group (default: drawn)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes")
    parser.add_argument("--reduced", action="store_true", help="coarse fast configuration (tests, smoke runs); with --randomise, 3.5-4.5 mm PET voxels")
    parser.add_argument("--preview", default=None, help="also write a T1/SD/LD preview PNG of the first subject")


def parse_drfs(text: str) -> tuple[float, ...]:
    """'20,100,37.5' -> (20, 100, 37.5): integers stay int so their files keep today's names."""
    values = [float(d) for d in text.split(",") if d.strip()]
    return tuple(int(v) if v.is_integer() else v for v in values)


def run(args: argparse.Namespace) -> int:
    """Simulate the subjects and print their folders."""
    from ..errors import BadInputError
    from ..simulation.domain import DOMAINS, held_out_overrides
    from ..simulation.subject import SimulationConfig, simulate_many

    if args.domain not in DOMAINS:
        raise BadInputError(f"--domain must be one of {sorted(DOMAINS)}, got {args.domain!r}")
    if args.domain != "fixed" and (args.scanner, args.fov) != ("default", "brain"):
        raise BadInputError("--scanner/--fov name held-out test configurations; they cannot be randomised")
    try:
        drfs = parse_drfs(args.drf)
        overrides = dict(drfs=drfs, group=args.group, **held_out_overrides(args.scanner, args.fov))
        config = (SimulationConfig.reduced if args.reduced else SimulationConfig)(**overrides)
    except ValueError as error:
        raise BadInputError(f"--drf/--group/--scanner/--fov: {error}") from error
    if args.subjects < 1:
        raise BadInputError(f"--subjects must be >= 1, got {args.subjects}")
    domain = DOMAINS[args.domain].reduced() if args.reduced else DOMAINS[args.domain]
    folders = simulate_many(args.out, list(range(args.seed, args.seed + args.subjects)), config, args.workers,
                            domain=domain)
    for folder in folders:
        print(folder)
    if args.preview:
        from ..simulation.preview import write_preview

        print(write_preview(folders[0], args.preview, drf=max(drfs)))
    return 0
