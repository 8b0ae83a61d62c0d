"""JSON-line worker: `python -m M2DiffSlicer.enhance.worker --job job.json` runs one enhance job for the Slicer module.

Protocol (docs/DEVELOPING.md "Worker protocol"): one JSON object per line on stdout, flushed; exit code from
errors.ExitCode. Anything else that writes to stdout (a library's print, a C++ warning) is sent to stderr instead,
so the event stream stays parseable. SIGTERM/SIGINT set a cancel flag that the pipeline checks between steps; a
second signal stops at once. Either way the pipeline's cleanup removes every partial output before exit code 5.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import traceback
from collections.abc import Sequence
from typing import Any, TextIO

from ..errors import CancelledError, ExitCode, M2DiffError, OutOfMemoryError, exit_code_for


class EventStream:
    """Writes events as JSON lines to a private duplicate of the original stdout, flushing each one."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    @classmethod
    def take_stdout(cls) -> EventStream:
        """Keep the real stdout for events and point file descriptor 1 (and sys.stdout) at stderr."""
        sys.stdout.flush()
        events = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
        os.dup2(2, 1)
        sys.stdout = sys.stderr
        return cls(events)

    def emit(self, event: dict[str, Any]) -> None:
        try:
            self.stream.write(json.dumps(event, allow_nan=False) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            pass  # the reader is gone (e.g. Slicer closed); finishing the cleanup matters more


def as_m2diff_error(error: BaseException) -> BaseException:
    """Map library out-of-memory failures (torch, numpy) to OutOfMemoryError; everything else unchanged."""
    if isinstance(error, OutOfMemoryError):
        return error
    torch = sys.modules.get("torch")  # imported by the job itself, if it got that far
    typed = (MemoryError, torch.OutOfMemoryError) if torch is not None else (MemoryError,)
    if isinstance(error, typed) or _is_cpu_allocation_failure(error):
        text = str(error)
        return OutOfMemoryError(f"out of memory: {text.splitlines()[0] if text else type(error).__name__}; "
                                "try a smaller --batch-size or close other programs")
    return error


def _is_cpu_allocation_failure(error: BaseException) -> bool:
    # torch's CPU allocator raises a plain RuntimeError (torch 2.13: "DefaultCPUAllocator: can't allocate
    # memory"); only CUDA's failures are the typed torch.OutOfMemoryError.
    return type(error) is RuntimeError and "DefaultCPUAllocator: can't allocate memory" in str(error)


def _install_cancel_handlers(cancel: threading.Event) -> None:
    def handler(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise CancelledError(f"cancelled by signal {signal.Signals(signum).name}")
        cancel.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job named by --job, printing its events; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m M2DiffSlicer.enhance.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--job", required=True, help="job.json (docs/DEVELOPING.md 'Worker protocol')")
    args = parser.parse_args(argv)
    events = EventStream.take_stdout()
    cancel = threading.Event()
    _install_cancel_handlers(cancel)
    try:
        # Imported here so that a broken installation (e.g. torch missing) is still reported as an error event.
        from .job import EnhanceJob
        from .pipeline import enhance_events

        job = EnhanceJob.from_file(args.job)
        for event in enhance_events(job, cancel):
            events.emit(event)
        return int(ExitCode.OK)
    except BaseException as raw:  # every failure becomes one error event and its exit code
        error = as_m2diff_error(raw)
        code = exit_code_for(error)
        if not isinstance(error, M2DiffError):
            traceback.print_exception(raw, file=sys.stderr)
        message = str(error) or type(error).__name__
        events.emit({"event": "error", "type": type(error).__name__, "message": message, "exit_code": int(code)})
        return int(code)


if __name__ == "__main__":
    sys.exit(main())
