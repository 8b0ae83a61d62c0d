"""Run the engine worker as a child process and turn its JSON-line stdout into events.

The GUI never blocks: a reader thread moves stdout lines into a queue and a timer (Qt's ``QTimer`` in Slicer, an
injected fake in tests) drains the queue on the main thread, where MRML may be touched. Scripts and tests use the
blocking ``wait()`` instead.
"""

from __future__ import annotations

import enum
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol


class ExitCode(enum.IntEnum):
    """Worker exit codes (docs/DEVELOPING.md, "Errors and worker exit codes")."""

    OK = 0
    INTERNAL = 1
    BAD_INPUT = 2
    OUT_OF_MEMORY = 3
    MODEL = 4
    CANCELLED = 5


class TimerProtocol(Protocol):
    """What the runner needs from a timer: call ``callback`` every ``intervalMs`` until stopped."""

    def start(self, intervalMs: int, callback: Callable[[], None]) -> None: ...

    def stop(self) -> None: ...


class QtTimer:
    """``TimerProtocol`` on ``qt.QTimer``; qt is imported here so the rest of the module stays Qt-free."""

    def __init__(self) -> None:
        import qt

        self._timer = qt.QTimer()
        self._callback = None
        self._timer.connect("timeout()", self._onTimeout)

    def _onTimeout(self) -> None:
        if self._callback is not None:
            self._callback()

    def start(self, intervalMs: int, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._timer.start(intervalMs)

    def stop(self) -> None:
        self._timer.stop()
        self._callback = None


# Windows process-creation flags (named here because ``subprocess`` defines them on Windows only).
CREATE_NEW_PROCESS_GROUP = 0x00000200
CREATE_NO_WINDOW = 0x08000000


def hiddenConsoleKwargs() -> dict:
    """``Popen``/``run`` keyword arguments that keep a child of the Slicer GUI from opening a console window on
    Windows (Slicer has no console, so every console program it starts would get its own window)."""
    return {"creationflags": CREATE_NO_WINDOW} if sys.platform == "win32" else {}


def signalProcessTree(process: subprocess.Popen, force: bool) -> None:
    """Ask (``force=False``) or force the process ``process`` and every process it started to stop; never waits.

    PythonSlicer is a launcher (CTKAppLauncher) that starts the real interpreter as a child and forwards no signal,
    so signalling the launcher alone leaves the worker (and its GPU memory) running. The worker is started as the
    leader of a new session, and the launcher's children stay in its process group, so POSIX signals the group.
    Windows has no polite equivalent for a console-less child: ``taskkill /T /F`` ends the tree at once.
    """
    if sys.platform == "win32":
        # Not waited on: taskkill runs on its own while the GUI goes on; the poll timer sees the tree end.
        subprocess.Popen(["taskkill", "/F", "/T", "/PID", str(process.pid)], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **hiddenConsoleKwargs())
        return
    try:
        # SIGTERM first: the worker stops between steps and deletes its partial outputs.
        os.killpg(process.pid, signal.SIGKILL if force else signal.SIGTERM)
    except ProcessLookupError:
        pass  # every process of the group has already ended


# Time a cancelled worker gets to stop between steps and delete its partial outputs before SIGKILL: the engine worker
# stopped in 0.7 s on a loaded CPU mid-registration; the whole tree must be gone within 5 s of Cancel.
KILL_GRACE_S = 3.0


class WorkerProcess:
    """One worker run: start, poll events, wait or cancel.

    ``onEvent(dict)`` is called on the polling thread for each JSON event (non-JSON lines arrive as
    ``{"event": "log", "message": line}``); ``onFinished(exitCode, stderrText)`` once, after the last event.
    Nothing here blocks on the process except ``wait()``: ``cancel()`` only signals, and ``poll()`` (driven by the
    GUI's timer) forces the tree down once ``KILL_GRACE_S`` has passed and reports the end.
    """

    def __init__(
        self,
        command: Sequence[str],
        onEvent: Callable[[dict], None],
        onFinished: Callable[[int, str], None],
        env: dict | None = None,
    ) -> None:
        self.command = list(command)
        self._onEvent = onEvent
        self._onFinished = onFinished
        self._env = env
        self._killDeadline: float | None = None
        self._queue: queue.Queue = queue.Queue()
        self._process: subprocess.Popen | None = None
        self._threads: list[threading.Thread] = []
        self._stderrLines: list[str] = []
        self._finished = False
        self.cancelled = False

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def finished(self) -> bool:
        return self._finished

    def start(self) -> None:
        """Launch the process in its own process group with line-buffered pipes."""
        kwargs = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = CREATE_NEW_PROCESS_GROUP | CREATE_NO_WINDOW
        else:
            kwargs["start_new_session"] = True
        self._process = subprocess.Popen(
            self.command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=self._env,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            **kwargs,
        )
        self._threads = [
            threading.Thread(target=self._readStdout, daemon=True),
            threading.Thread(target=self._readStderr, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _readStdout(self) -> None:
        for line in self._process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "log", "message": line}
            if not isinstance(event, dict) or "event" not in event:
                event = {"event": "log", "message": line}
            self._queue.put(event)

    def _readStderr(self) -> None:
        # Drained continuously: a full stderr pipe would block the worker.
        for line in self._process.stderr:
            self._stderrLines.append(line.rstrip("\n"))

    def poll(self) -> bool:
        """Deliver queued events; when the process has ended and all output is read, finish. Returns finished."""
        if self._finished:
            return True
        while True:
            try:
                event = self._queue.get_nowait()
            except queue.Empty:
                break
            self._onEvent(event)
        if self._process.poll() is None or any(thread.is_alive() for thread in self._threads):
            if self._killDeadline is not None and time.monotonic() >= self._killDeadline:
                # The grace period is over (a worker stuck in a long native call does not act on SIGTERM). Only
                # while some process of the tree still holds the pipes, so the group's id cannot have been reused.
                self._killDeadline = None
                signalProcessTree(self._process, force=True)
            return False
        if not self._queue.empty():
            return False
        self._finished = True
        exitCode = ExitCode.CANCELLED if self.cancelled else self._process.returncode
        self._onFinished(exitCode, "\n".join(self._stderrLines))
        return True

    def wait(self, pollIntervalS: float = 0.05) -> None:
        """Blocking mode: poll until the process finishes."""
        while not self.poll():
            time.sleep(pollIntervalS)

    def cancel(self, force: bool = False) -> None:
        """Ask the whole process tree to stop (``force``: kill it now) and return at once; ``poll()`` kills what is
        left after the grace period, and ``onFinished`` reports ``ExitCode.CANCELLED`` once every process ended."""
        if self._finished or self._process is None or (self.cancelled and not force):
            return
        self.cancelled = True
        signalProcessTree(self._process, force=force)
        self._killDeadline = None if force else time.monotonic() + KILL_GRACE_S
