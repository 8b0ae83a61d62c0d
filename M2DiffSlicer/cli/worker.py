"""Run one enhance job from job.json, printing JSON-line events (the Slicer module's background worker)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    """Add the `worker` options."""
    parser.add_argument("--job", required=True, help="job.json (docs/DEVELOPING.md 'Worker protocol')")


def run(args: argparse.Namespace) -> int:
    """Exit code of the job (errors.ExitCode); every outcome is also an event on stdout."""
    from ..enhance.worker import main

    return main(["--job", args.job])
