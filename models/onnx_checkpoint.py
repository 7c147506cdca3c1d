"""Checkpoints as ONNX files: the network and its metadata in one file, run without PyTorch.

A CPU-only install (``pip install minewatch``, without the ``torch`` extra) runs the shipped
networks from their ONNX exports in ``models/weights/`` with ONNX Runtime. An export holds:

- the graph: the checkpoint's network with batch norm folded (as :mod:`models.runtime` exports
  it), input ``x`` (normalised ``(N, channel, row, col)`` float32, dynamic batch and size),
  output ``logits``;
- in ``metadata_props``: ``minewatch.checkpoint``, the checkpoint's metadata as JSON (exactly
  :meth:`CheckpointMetadata.as_dict` of the ``.pt``: bands and optional bands, normalisation,
  classes, thresholds, TOA offsets, the weights' sha256 and the checkpoint sha256 over all of
  them, which the alerts name and loading verifies), ``minewatch.stride`` (the network's total
  stride) and ``minewatch.format``.

The registry records the sha256 of each shipped file, which :func:`load_onnx_checkpoint` checks.

Write one (needs PyTorch)::

    python -m models.onnx_export CHECKPOINT.pt [OUT.onnx]
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from models.checkpoint import Checkpoint, CheckpointMetadata, _verified_metadata
from models.errors import TORCH_EXTRA, CheckpointError, ModelError, TorchMissingError

ONNX_FORMAT = "minewatch-onnx-checkpoint/1"
_KEY_FORMAT = "minewatch.format"
_KEY_METADATA = "minewatch.checkpoint"
_KEY_STRIDE = "minewatch.stride"


@dataclass(frozen=True)
class OnnxCheckpoint(Checkpoint):
    """A checkpoint read from an ONNX export: metadata and graph, no PyTorch weights.

    Attributes:
        model_bytes: the ONNX model, as read (and verified).
        stride: the network's total stride (inputs are padded to a multiple of it).
    """

    model_bytes: bytes = field(default=b"", repr=False)
    stride: int = 32


def load_onnx_checkpoint(
    path: str | Path, *, file_sha256: str | None = None, expected_sha256: str | None = None
) -> OnnxCheckpoint:
    """Read an ONNX export of a checkpoint (no PyTorch needed).

    The metadata is verified as a ``.pt``'s is (its recorded checkpoint sha256, see
    :func:`models.checkpoint.checkpoint_sha256`).

    Args:
        path: the ``.onnx`` file.
        file_sha256: when given, the file must have this sha256 (a shipped export's).
        expected_sha256: when given, the checkpoint sha256 must be this (as for
            :func:`models.checkpoint.load_checkpoint`).

    Raises:
        CheckpointError: the file is missing, altered, not an ONNX model, not a minewatch
            export (no metadata), or its metadata was edited.
    """
    path = Path(path)
    fix = "re-export it (python -m models.onnx_export CHECKPOINT.pt) or reinstall minewatch"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read the ONNX checkpoint ({exc}); {fix}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if file_sha256 is not None and digest != file_sha256:
        raise CheckpointError(
            f"{path}: sha256 {digest[:16]}... is not the expected {file_sha256[:16]}...; "
            f"the file is corrupt or was replaced; {fix}"
        )
    props = _metadata_props(data, path)
    if props.get(_KEY_FORMAT) != ONNX_FORMAT or _KEY_METADATA not in props:
        raise CheckpointError(
            f"{path}: an ONNX model without minewatch metadata ({_KEY_FORMAT} "
            f"{props.get(_KEY_FORMAT)!r}, expected {ONNX_FORMAT!r}); {fix}"
        )
    try:
        raw = json.loads(props[_KEY_METADATA])
        stride = int(props.get(_KEY_STRIDE, "32"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: malformed minewatch metadata ({exc}); {fix}") from exc
    meta = _verified_metadata(path, CheckpointMetadata.from_dict(raw, where=str(path)))
    if expected_sha256 is not None and meta.sha256 != expected_sha256:
        raise CheckpointError(
            f"{path}: checkpoint sha256 {meta.sha256[:16]}... is not the expected "
            f"{expected_sha256[:16]}...; the file was replaced or edited; {fix}"
        )
    return OnnxCheckpoint(meta, {}, None, path, model_bytes=data, stride=stride)


def _metadata_props(data: bytes, path: Path) -> dict[str, str]:
    """The model's ``metadata_props``, read with ONNX Runtime (no graph optimisation)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ONNX Runtime's errors share no base class but Exception
        raise CheckpointError(f"{path}: not a readable ONNX model ({exc})") from exc
    return dict(session.get_modelmeta().custom_metadata_map)


def export_onnx_checkpoint(checkpoint: Checkpoint, path: str | Path) -> str:
    """Write ``checkpoint``'s network and metadata as one ONNX file, atomically (needs PyTorch).

    Returns:
        The file's sha256 (for the registry of shipped models).

    Raises:
        ModelError: PyTorch or the exporter (``onnx``, ``onnxscript``) is not installed, or the
            export differs from the PyTorch network.
    """
    from models.runtime import export_network

    data, stride = export_network(checkpoint)
    try:
        import onnx
    except ImportError as exc:
        raise TorchMissingError(f"exporting ONNX needs the onnx package; {TORCH_EXTRA}") from exc
    model = onnx.load_model_from_string(data)
    props = {
        _KEY_FORMAT: ONNX_FORMAT,
        _KEY_METADATA: json.dumps(checkpoint.metadata.as_dict(), sort_keys=True),
        _KEY_STRIDE: str(stride),
    }
    onnx.helper.set_model_props(model, props)
    out = model.SerializeToString()
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(out)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ModelError(f"{path}: cannot write the ONNX checkpoint ({exc})") from exc
    return hashlib.sha256(out).hexdigest()
