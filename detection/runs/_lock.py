"""A lock on an output folder, so two scans never write the same folder at once."""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from detection.errors import DetectionError

LOCK_NAME = ".minewatch.lock"


class OutputLockedError(DetectionError, BlockingIOError):
    """Another scan holds the lock of the output folder."""


@contextlib.contextmanager
def output_lock(out_dir: Path) -> Iterator[Path]:
    """Hold an exclusive lock on ``out_dir`` for the block (released if the process dies).

    The lock file ``out_dir/.minewatch.lock`` (its holder's pid and start time) is removed when
    the block ends, whether it succeeded or raised; a process that dies holding it leaves it
    behind, and the next scan takes it over. A scan refused because another holds it leaves it
    alone.

    Raises:
        OutputLockedError: another process holds it; the message names its pid and start time.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = _acquire(path, out_dir)
    try:
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "started_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        # Removed while still held: a scan that opened the file meanwhile finds, once it gets
        # the lock, that the file is gone and starts again on a new one (see `_acquire`).
        path.unlink(missing_ok=True)
        os.close(fd)  # closing releases the lock


def _acquire(path: Path, out_dir: Path) -> int:
    """Open and lock ``path``, retrying when the previous holder removed it meanwhile."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_holder(path)
            raise OutputLockedError(
                f"another scan ({holder}) is writing to {str(out_dir)!r}; wait for it to finish "
                "or pass another --out"
            ) from None
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        mine = os.fstat(fd)
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, started {info['started_at']}"
    except (OSError, ValueError, KeyError):
        return "pid unknown"
