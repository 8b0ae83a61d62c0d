"""Atomic file writes: write beside the destination under a temporary name, then rename it into place.

A rename within one folder is atomic, so a reader (the Slicer module, another DDP rank, a resumed run) sees either
the old file or the complete new one, never a partial file; a failure or cancel removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

# mkstemp creates files 0600; outputs are ordinary files that other users and tools may read.
FILE_MODE = 0o644


def temp_path_beside(path: str | os.PathLike) -> Path:
    """A new empty file in `path`'s folder, named `.<name>.<random><suffixes>` so the extension (which SimpleITK
    uses to pick a format) is kept."""
    path = Path(path)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes) or ".tmp", dir=path.parent)
    os.close(handle)
    os.chmod(name, FILE_MODE)
    return Path(name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success rename it onto `path`, on any error (or
    KeyboardInterrupt) delete it and re-raise."""
    destination = Path(path)
    temp = temp_path_beside(destination)
    try:
        yield temp
        os.replace(temp, destination)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (flushed to disk before the rename); returns `path` as a Path."""
    with atomic_path(path) as temp:
        with open(temp, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to `path` atomically as UTF-8, line endings as given; returns `path` as a Path."""
    return write_bytes_atomic(path, text.encode("utf-8"))
