"""Typed errors shared by the engine, the CLI and the worker; each maps to one worker exit code."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """Exit codes of `m2diff` commands and of the worker process."""

    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    OUT_OF_MEMORY = 3
    MODEL = 4
    CANCELLED = 5


class M2DiffError(Exception):
    """Base class of errors the user can act on; unexpected ones are internal errors."""

    exit_code = ExitCode.INTERNAL


class BadInputError(M2DiffError, ValueError):
    """An input volume, path or option is unusable; the message says which and why."""

    exit_code = ExitCode.BAD_INPUT


class OutOfMemoryError(M2DiffError, MemoryError):
    """The job does not fit in memory; the message gives the estimate."""

    exit_code = ExitCode.OUT_OF_MEMORY


class ModelError(M2DiffError):
    """Model weights are missing, corrupt, tampered with or do not match the architecture."""

    exit_code = ExitCode.MODEL


class CancelledError(M2DiffError):
    """The user cancelled the job."""

    exit_code = ExitCode.CANCELLED


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for any exception (internal for those that are not ours)."""
    if isinstance(error, M2DiffError):
        return error.exit_code
    if isinstance(error, MemoryError):
        return ExitCode.OUT_OF_MEMORY
    if isinstance(error, KeyboardInterrupt):
        return ExitCode.CANCELLED
    return ExitCode.INTERNAL
