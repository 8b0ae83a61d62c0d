"""Subcommands of `m2diff`: each module defines `register(parser)` and `run(args) -> int`."""
