"""The checkpoint format (DESIGN.md section 5): one file, weights plus metadata.

A checkpoint is a ``torch.save`` of a plain dictionary, read back with ``weights_only=True``
(no code runs on load)::

    {"format": "minewatch-checkpoint", "format_version": 1,
     "metadata": {...},           # CheckpointMetadata.as_dict(): JSON-compatible
     "state_dict": {...},         # the network's weights (float32 or float16)
     "training_state": {...}}     # optional: optimiser/scheduler/epoch, to resume training

The metadata names the architecture and its options, the input bands in order, the
normalisation, the classes, the patch size, the training data, the metrics, a version, the
sha256 of the weights (:func:`weights_sha256`) and the checkpoint's sha256
(:func:`checkpoint_sha256`: over every other metadata field, the weights' sha256 among them),
both of which loading verifies: a band list, normalisation, class list or threshold edited
after saving is refused, not run with the weights of another band order.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import BandMismatchError, CheckpointError, require_torch
from models.normalization import Normalization
from models.registry import NETWORK_CLASSES, architecture_options, build_model

if TYPE_CHECKING:  # PyTorch is an extra; without it, ONNX exports (models.onnx_checkpoint)
    import torch
    from torch import nn

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "minewatch-checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
#: Architectures that score whole patches for ``mining`` only (``models.amw``).
PATCH_CLASSIFIERS = frozenset({"amw-cnn"})


@dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint says about its weights.

    Attributes:
        name: model name, e.g. ``minewatch-unet-slim-synthetic``.
        version: model version (semver).
        architecture: registry name (:data:`models.registry.ARCHITECTURES`).
        options: the architecture's full options.
        bands: input bands, in the order the network takes them.
        normalization: per-band standardisation applied before the network.
        classes: output classes in logit order (``background``, ``mining``, ``deforestation``).
        patch_size_px: side of the training patches (the detector's inference tile).
        training_data: description of the training data (free-form, JSON-compatible).
        metrics: measured metrics (free-form, JSON-compatible).
        weights_sha256: sha256 of the weights (:func:`weights_sha256`); filled on save.
        created: UTC ISO time of the save.
        extra: anything else (config, software versions).
        optional_bands: bands of ``bands`` the network can do without. Each has an availability
            channel after the bands (1 = the band was given, 0 = not: its values are the band
            mean), so one network takes RGB-only chips and six-band composites alike
            (:func:`network_input`).
        sha256: the checkpoint's sha256 (:func:`checkpoint_sha256`): over every field above,
            so it identifies weights and metadata together; filled on save. Empty in files
            saved by an older minewatch (loaded with a warning: their metadata is unverified).
    """

    name: str
    version: str
    architecture: str
    options: dict[str, Any]
    bands: tuple[str, ...]
    normalization: Normalization
    classes: tuple[str, ...] = NETWORK_CLASSES
    patch_size_px: int = 256
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    optional_bands: tuple[str, ...] = ()
    sha256: str = ""

    @property
    def input_channels(self) -> int:
        """Channels the network takes: the bands, then an availability flag per optional band."""
        return len(self.bands) + len(self.optional_bands)

    @property
    def required_bands(self) -> tuple[str, ...]:
        """Bands an input must have."""
        return tuple(b for b in self.bands if b not in self.optional_bands)

    def __post_init__(self) -> None:
        stray = [b for b in self.optional_bands if b not in self.bands]
        if stray:
            raise CheckpointError(
                f"checkpoint {self.name}: optional band(s) {stray} are not among its bands "
                f"{list(self.bands)}"
            )
        if tuple(self.normalization.bands) != tuple(self.bands):
            raise CheckpointError(
                f"checkpoint {self.name}: normalization bands {list(self.normalization.bands)} "
                f"differ from input bands {list(self.bands)}"
            )
        # Patch classifiers (Amazon Mining Watch's, models.amw) score mining alone.
        need: tuple[str, ...] = ("mining", "deforestation")
        if self.architecture in PATCH_CLASSIFIERS:
            need = ("mining",)
        missing = [c for c in need if c not in self.classes]
        if missing:
            raise CheckpointError(
                f"checkpoint {self.name}: classes {list(self.classes)} lack {missing}; detection "
                f"needs {list(need)}"
            )

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "options": self.options,
            "bands": list(self.bands),
            "normalization": self.normalization.as_dict(),
            "classes": list(self.classes),
            "patch_size_px": self.patch_size_px,
            "training_data": self.training_data,
            "metrics": self.metrics,
            "weights_sha256": self.weights_sha256,
            "created": self.created,
            "extra": self.extra,
            "optional_bands": list(self.optional_bands),
            "sha256": self.sha256,
        }

    @classmethod
    def from_dict(
        cls, value: Mapping[str, Any], *, where: str = "checkpoint"
    ) -> CheckpointMetadata:
        """Read :meth:`as_dict` output.

        Raises:
            CheckpointError: a key is missing or malformed.
        """
        try:
            return cls(
                name=str(value["name"]),
                version=str(value["version"]),
                architecture=str(value["architecture"]),
                options=dict(value["options"]),
                bands=tuple(str(b) for b in value["bands"]),
                normalization=Normalization.from_dict(value["normalization"]),
                classes=tuple(str(c) for c in value["classes"]),
                patch_size_px=int(value["patch_size_px"]),
                training_data=dict(value.get("training_data", {})),
                metrics=dict(value.get("metrics", {})),
                weights_sha256=str(value.get("weights_sha256", "")),
                created=str(value.get("created", "")),
                extra=dict(value.get("extra", {})),
                optional_bands=tuple(str(b) for b in value.get("optional_bands", ())),
                sha256=str(value.get("sha256", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(f"{where}: metadata is malformed ({exc!r})") from exc


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        metadata: what the checkpoint says.
        state_dict: the weights (as stored).
        training_state: optimiser/scheduler/epoch state, when saved for resuming.
        path: the file it was read from (None when built in memory).
    """

    metadata: CheckpointMetadata
    state_dict: dict[str, torch.Tensor]
    training_state: dict[str, Any] | None = None
    path: Path | None = None


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """sha256 of weights: over each tensor's name, dtype, shape and bytes, in sorted name order.

    Independent of how the file was serialised, so re-saving the same weights keeps the hash.
    """
    import torch
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def checkpoint_sha256(metadata: CheckpointMetadata) -> str:
    """sha256 of a checkpoint: over its metadata's canonical JSON (sorted keys), every field but
    ``sha256`` itself, ``weights_sha256`` included, so it covers the bands, optional bands,
    normalisation, classes, options, thresholds and TOA offsets (``extra``) and the weights.
    """
    fields = {k: v for k, v in metadata.as_dict().items() if k != "sha256"}
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def seal(metadata: CheckpointMetadata) -> CheckpointMetadata:
    """``metadata`` with its :func:`checkpoint_sha256` filled in."""
    return replace(metadata, sha256=checkpoint_sha256(metadata))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    metadata: CheckpointMetadata,
    *,
    half: bool = False,
    training_state: Mapping[str, Any] | None = None,
) -> Checkpoint:
    """Write ``model``'s weights and ``metadata`` to one file, atomically.

    Args:
        path: target file (``.pt``); its folder is created.
        model: the network.
        metadata: its description; ``weights_sha256``, ``created`` and ``sha256`` are filled in.
        half: store floating-point weights as float16 (halves the file; loading casts back).
        training_state: optional state to resume training from.

    Returns:
        The checkpoint as written.

    Raises:
        CheckpointError: the file cannot be written.
    """
    import torch

    path = Path(path)
    state: dict[str, torch.Tensor] = {}
    for key, t in model.state_dict().items():
        t = t.detach().cpu().clone()
        if half and t.is_floating_point():
            t = t.half()
        state[key] = t
    meta = seal(
        replace(
            metadata,
            weights_sha256=weights_sha256(state),
            created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        )
    )
    payload: dict[str, Any] = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "metadata": meta.as_dict(),
        "state_dict": state,
    }
    if training_state is not None:
        payload["training_state"] = dict(training_state)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        torch.save(payload, tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot write checkpoint ({exc})") from exc
    log.info("checkpoint %s written (sha256 %s)", path, meta.sha256[:12])
    return Checkpoint(meta, state, dict(training_state) if training_state else None, path)


def load_checkpoint(path: str | Path, *, expected_sha256: str | None = None) -> Checkpoint:
    """Read and verify a checkpoint file.

    Args:
        path: the ``.pt`` file.
        expected_sha256: when given, the checkpoint's sha256 (:func:`checkpoint_sha256`, weights
            and metadata) must be this one (e.g. a shipped model's).

    Returns:
        The checkpoint; ``metadata.sha256`` is its verified sha256 (computed for files saved
        before checkpoints recorded it).

    Raises:
        CheckpointError: the file is missing, not a minewatch checkpoint, corrupt, its weights
            do not match the sha256 in its metadata, its metadata (bands, normalisation, classes,
            thresholds...) was edited after saving, or it is not ``expected_sha256``.
    """
    path = Path(path)
    fix = "re-download or retrain it (minewatch train CONFIG.yaml)"
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; give the path of a .pt checkpoint")
    if path.suffix.lower() == ".onnx":
        from models.onnx_checkpoint import load_onnx_checkpoint

        return load_onnx_checkpoint(path, expected_sha256=expected_sha256)
    require_torch(f"reading the .pt checkpoint {path}")
    import torch

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt or not a checkpoint ({exc}); {fix}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a minewatch checkpoint (no 'format': '{CHECKPOINT_FORMAT}'); a bare "
            "state dict can initialise an encoder (model.encoder_weights) but is not a checkpoint"
        )
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version}; this minewatch reads version "
            f"{CHECKPOINT_FORMAT_VERSION}; upgrade minewatch or retrain"
        )
    meta = CheckpointMetadata.from_dict(payload.get("metadata", {}), where=str(path))
    state = payload.get("state_dict")
    if not isinstance(state, dict) or not state:
        raise CheckpointError(f"{path}: checkpoint holds no weights; {fix}")
    digest = weights_sha256(state)
    if digest != meta.weights_sha256:
        raise CheckpointError(
            f"{path}: weights sha256 {digest[:16]}... does not match the recorded "
            f"{meta.weights_sha256[:16]}...; the file is corrupt or was altered; {fix}"
        )
    meta = _verified_metadata(path, meta)
    if expected_sha256 is not None and meta.sha256 != expected_sha256:
        raise CheckpointError(
            f"{path}: checkpoint sha256 {meta.sha256[:16]}... is not the expected "
            f"{expected_sha256[:16]}...; the file was replaced or edited; reinstall minewatch"
        )
    return Checkpoint(meta, state, payload.get("training_state"), path)


def _verified_metadata(path: Path, meta: CheckpointMetadata) -> CheckpointMetadata:
    """``meta`` once its recorded sha256 is checked (or, for an old file, computed).

    Raises:
        CheckpointError: the metadata no longer matches the sha256 recorded on save.
    """
    digest = checkpoint_sha256(meta)
    if not meta.sha256:
        log.warning(
            "%s: saved without a checkpoint sha256 (older minewatch): its bands, normalisation "
            "and thresholds are not verified; retrain or re-save it to seal them", path
        )
        return replace(meta, sha256=digest)
    if digest != meta.sha256:
        raise CheckpointError(
            f"{path}: metadata edited after saving: its sha256 {digest[:16]}... is not the "
            f"recorded {meta.sha256[:16]}...: its bands (now {list(meta.bands)}), optional bands "
            f"(now {list(meta.optional_bands)}), classes (now {list(meta.classes)}), "
            "normalisation, thresholds or TOA offsets were changed; the weights were trained for "
            "the recorded ones (an edited band order runs and misses sites); restore the original "
            "file (shipped models: reinstall minewatch) or retrain with the bands you want "
            "(minewatch train CONFIG.yaml)"
        )
    return meta


def build_network(checkpoint: Checkpoint) -> nn.Module:
    """The network of a checkpoint, with its weights loaded (float32, eval mode).

    Raises:
        CheckpointError: the architecture is unknown, or a weight is missing, unexpected or of
            another shape than the architecture builds (each is named).
    """
    meta = checkpoint.metadata
    where = checkpoint.path or meta.name
    try:
        architecture_options(meta.architecture, meta.options)
        model = build_model(
            meta.architecture,
            in_channels=meta.input_channels,
            num_classes=len(meta.classes),
            options=meta.options,
        )
    except Exception as exc:
        raise CheckpointError(f"{where}: cannot build its network: {exc}") from exc
    target = model.state_dict()
    missing = sorted(set(target) - set(checkpoint.state_dict))
    unexpected = sorted(set(checkpoint.state_dict) - set(target))
    shapes = [
        f"{k}: file {tuple(checkpoint.state_dict[k].shape)} vs network {tuple(v.shape)}"
        for k, v in target.items()
        if k in checkpoint.state_dict and checkpoint.state_dict[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append("shape mismatch " + "; ".join(shapes[:5]))
        if missing:
            parts.append(f"missing {missing[:5]}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}")
        raise CheckpointError(
            f"{where}: weights do not fit architecture {meta.architecture!r} with "
            f"{meta.input_channels} input channel(s) and {len(meta.classes)} class(es): "
            + ", ".join(parts)
        )
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in checkpoint.state_dict.items()})
    return model.eval()


def surface_offsets(metadata: CheckpointMetadata, level: str | None) -> dict[str, float]:
    """The per-band offsets that bring scenes of processing ``level`` to what the network
    learnt from: for ``L1C`` (top of atmosphere) and a network trained on surface reflectance
    whose checkpoint stores ``toa_offsets`` (the path-radiance offsets its real L1C chips were
    brought to surface-like reflectance with), those offsets of its bands; else none (L2A
    scenes, networks trained on L1C such as Amazon Mining Watch's, or no offsets stored)."""
    offsets = metadata.extra.get("toa_offsets") or {}
    trained = metadata.extra.get("processing_level", "L2A")
    if level != "L1C" or trained == "L1C":
        return {}
    return {b: float(offsets[b]) for b in metadata.bands if b in offsets}


def band_order(
    required: Sequence[str], offered: Sequence[str], *, what: str = "the model"
) -> list[int]:
    """Indices into ``offered`` giving the bands of ``required``, in order.

    Raises:
        BandMismatchError: a required band is not offered; the message names the missing bands,
            the bands given and the fix.
    """
    missing = [b for b in required if b not in offered]
    if missing:
        raise BandMismatchError(
            f"{what} needs band(s) {missing} which the input lacks; got bands {list(offered)}, "
            f"expected {list(required)} (in any order); read or composite those bands "
            "(e.g. composite.bands in the config) or use a checkpoint trained on the given bands"
        )
    return [list(offered).index(b) for b in required]


def network_input(
    meta: CheckpointMetadata, data: np.ndarray, bands: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """The network's input of a ``(band, row, col)`` reflectance image.

    The checkpoint's bands in its order, normalised (NaN -> 0, the band mean), then one
    availability channel per optional band: 1 where ``bands`` has it, 0 (and the band at its
    mean) where it does not.

    Args:
        meta: the checkpoint's metadata.
        data: reflectance, NaN where unobserved.
        bands: names of ``data``'s bands (any order; a superset is fine).

    Returns:
        ``(input (channels, row, col) float32, valid (row, col))``: valid where every band given
        is observed.

    Raises:
        BandMismatchError: a required band is missing (names it, the bands given and the fix).
    """
    band_order(meta.required_bands, bands, what=f"network {meta.name}")
    offered = list(bands)
    present = [b in offered for b in meta.bands]
    h, w = data.shape[1:]
    x = np.full((len(meta.bands), h, w), np.nan, dtype=np.float32)
    for i, b in enumerate(meta.bands):
        if present[i]:
            x[i] = data[offered.index(b)]
    valid = np.all(np.isfinite(x[np.array(present)]), axis=0)
    norm = meta.normalization.apply(x)
    flags = [
        np.full((h, w), float(present[meta.bands.index(b)]), dtype=np.float32)
        for b in meta.optional_bands
    ]
    out = np.concatenate([norm, np.stack(flags)]) if flags else norm
    return out, valid
