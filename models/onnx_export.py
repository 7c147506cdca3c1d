"""``python -m models.onnx_export CHECKPOINT.pt [OUT.onnx]``: a checkpoint's ONNX export.

Writes the file :mod:`models.onnx_checkpoint` reads (the network and its metadata; a CPU-only
install runs it without PyTorch) and prints its sha256 (for the registry of shipped models).
Needs PyTorch (``pip install 'minewatch[torch]'``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from models.checkpoint import load_checkpoint
from models.errors import ModelError
from models.onnx_checkpoint import export_onnx_checkpoint


def main(argv: list[str] | None = None) -> int:
    """``python -m models.onnx_export CHECKPOINT.pt [OUT.onnx]``: export, print the sha256."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (1, 2):
        print("usage: python -m models.onnx_export CHECKPOINT.pt [OUT.onnx]", file=sys.stderr)
        return 2
    source = Path(args[0])
    target = Path(args[1]) if len(args) == 2 else source.with_suffix(".onnx")
    try:
        digest = export_onnx_checkpoint(load_checkpoint(source), target)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{target} sha256 {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
