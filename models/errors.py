"""Errors of the models package."""

from __future__ import annotations


class ModelError(Exception):
    """Root of every error raised while building, loading or running a detector."""


class BandMismatchError(ModelError, ValueError):
    """The bands a scene offers do not match the bands a detector was built for."""


class CheckpointError(ModelError, ValueError):
    """A checkpoint file is missing, corrupt, or its weights do not match its sha256."""


#: The one line that tells a CPU-only install how to get PyTorch (``pyproject.toml`` extra).
TORCH_EXTRA = "pip install 'minewatch[torch]'"


class TorchMissingError(ModelError):
    """PyTorch is needed (training, the GPU, a ``.pt`` checkpoint) but not installed."""


def require_torch(what: str) -> None:
    """Raise :class:`TorchMissingError` naming ``what`` and the extra, unless torch imports.

    Raises:
        TorchMissingError: PyTorch (or torchvision) is not installed.
    """
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise TorchMissingError(
            f"{what} needs PyTorch, which this install lacks; {TORCH_EXTRA}"
        ) from exc


def torch_available() -> bool:
    """Whether PyTorch imports (a CPU-only install runs the shipped ONNX networks without it)."""
    try:
        require_torch("")
    except TorchMissingError:
        return False
    return True
