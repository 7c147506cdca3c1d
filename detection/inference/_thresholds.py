"""A checkpoint's own per-class thresholds (its metadata; no PyTorch needed)."""

from __future__ import annotations

import contextlib

from models.checkpoint import Checkpoint


def checkpoint_thresholds(checkpoint: Checkpoint) -> dict[str, float]:
    """Per-class probability thresholds a checkpoint recommends (``extra["thresholds"]``).

    Returns:
        ``{class: threshold}`` for the classes it names; empty when it names none.
    """
    raw = checkpoint.metadata.extra.get("thresholds")
    if not isinstance(raw, dict):
        return {}
    out: dict[str, float] = {}
    for name, value in raw.items():
        with contextlib.suppress(TypeError, ValueError):
            out[str(name)] = float(value)
    return out
