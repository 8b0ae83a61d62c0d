"""`m2diff`: low-dose brain PET enhancement with M2Diff (enhance, simulate, train, evaluate, ROI uptake)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from .. import __version__
from ..errors import ExitCode, M2DiffError

COMMANDS: tuple[str, ...] = (
    "info",
    "simulate",
    "train",
    "evaluate",
    "enhance",
    "demo",
    "roi",
    "bids",
    "dicom",
    "worker",
)


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(prog="m2diff", description=__doc__)
    parser.add_argument("--version", action="version", version=f"m2diff {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f".{name}", __package__)
        doc = (module.__doc__ or name).strip().replace("%", "%%")  # argparse %-formats help texts
        subparser = subparsers.add_parser(name, help=doc.splitlines()[0], description=doc)
        module.register(subparser)
        subparser.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `m2diff` subcommand; errors the user can act on print one line and set the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except M2DiffError as error:
        print(f"m2diff {args.command}: error: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print(f"m2diff {args.command}: cancelled", file=sys.stderr)
        return int(ExitCode.CANCELLED)

