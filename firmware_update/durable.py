"""Durable file writes of the firmware path (certificates, slot state, downloads).

Blocking calls (``fsync`` may take a while on flash): run them through
``firmware_update.blocking.run_blocking`` or another worker thread, never in the loop.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Flush ``directory``'s entries (a file created or renamed in it survives a power cut).

    Raises:
        OSError: The directory cannot be opened or flushed.
    """
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data``: after a power cut it holds the old or the new
    bytes, never a mix.

    Writes a temporary file ``.<target name>.*.tmp`` beside ``target``, fsyncs it,
    renames it over ``target``, then fsyncs the directory. On failure the temporary file
    is removed and ``target`` is unchanged.

    Args:
        target: The file to replace (its directory must exist).
        data: The whole new content.

    Raises:
        OSError: Writing, renaming or flushing failed.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


__all__ = ["fsync_dir", "write_atomic"]
