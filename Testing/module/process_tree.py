"""What is still running of a job's process tree, read from /proc (Linux), for the Cancel tests."""

import os


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state, ppid, pgrp, ...); None once the process is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return stream.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def processAlive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped by its parent) no longer does."""
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def runningInGroup(processGroup: int) -> list[int]:
    """Every process of the process group that still runs: the launcher's children, whatever their pids."""
    running = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[2]) == processGroup:
                running.append(int(entry))
    return running
