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

    Raises:
        OutputLockedError: another process holds it; the message names its pid and start time.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(path)
            raise OutputLockedError(
                f"another scan ({holder}) is writing to {str(out_dir)!r}; wait for it to finish "
                "or pass another --out"
            ) from None
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "started_at": dt.datetime.now(dt.timezone.utc).isoformat()}
        os.write(fd, json.dumps(info).encode())
        yield path
    finally:
        os.close(fd)  # closing releases the lock


def _read_holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, started {info['started_at']}"
    except (OSError, ValueError, KeyError):
        return "pid unknown"
