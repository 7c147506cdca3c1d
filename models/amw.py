"""Amazon Mining Watch's patch classifiers as minewatch checkpoints and a detector.

Amazon Mining Watch (Earth Genome, github:earthrise-media/mining-detector, MIT) trained small
Keras CNNs that score a 48 x 48 px Sentinel-2 L1C patch (480 m) for gold mining: one sigmoid,
their threshold 0.5. Their input: top-of-atmosphere digital numbers / 10,000 clipped to 0..1,
channels B01 B02 B03 B04 B05 B06 B07 B8A B08 B09 B10 B11 B12 (the 12-band models drop B10).

This module

* reads such a Keras ``.h5`` with h5py alone (architecture from its ``model_config``, weights
  from ``model_weights``; no TensorFlow; :mod:`models._amw_keras`) and rebuilds it as a
  PyTorch module,
  :class:`AmwNet`: ``Conv2D``, ``MaxPooling2D``, ``Flatten``, ``Dense``, ``Dropout`` (the
  layers AMW's CNNs use; anything else is refused by name), in a ``Sequential`` or a
  functional ensemble of ``Sequential`` members joined by ``Concatenate``/``Average`` (scored
  as the members' mean, as upstream's inference engine does);
* writes it as a minewatch checkpoint (:func:`convert_h5`; ``python -m models.amw H5 OUT.pt``)
  whose bands are the AMW channel order, so loading enforces it;
* runs it as a detector (:class:`AmwDetector`): the 48 px window slides over a composite with a
  configurable stride and each pixel takes the highest score of the windows that cover it (the
  union of positive patches upstream draws), a ``mining`` probability raster that the usual
  threshold/polygon rule turns into sites.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

try:
    import torch
    from torch import nn
except ImportError:  # the CPU install: the converter and the classifiers need the torch extra
    if __name__ == "__main__":
        sys.exit("python -m models.amw needs PyTorch, which this install lacks; "
                 "pip install 'minewatch[torch]'")
    raise

from models._amw_keras import published_metrics, read_keras_model
from models.checkpoint import Checkpoint, CheckpointMetadata, load_checkpoint, save_checkpoint
from models.detector import ModelInfo, Prediction, for_level
from models.errors import BandMismatchError, CheckpointError, ModelError
from models.normalization import Normalization

log = logging.getLogger(__name__)

#: Registry name of the converted AMW networks (checkpoint ``architecture``).
AMW_ARCHITECTURE = "amw-cnn"
#: AMW's 13-channel order: note B8A before B08.
AMW_BANDS_13: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B8A", "B08", "B09", "B10", "B11", "B12"
)
#: The 12-band models drop B10 (cirrus).
AMW_BANDS_12: tuple[str, ...] = tuple(b for b in AMW_BANDS_13 if b != "B10")
#: How the networks' inputs are made (checkpoint ``extra["radiometry"]``).
AMW_RADIOMETRY = "l1c_dn_over_10000"
#: Their operating threshold (upstream ``InferenceConfig.pred_threshold``).
AMW_THRESHOLD = 0.5
#: Upstream's default stride: the window side // 2.
DEFAULT_STRIDE_PX = 24
#: A window is scored when at least this share of its pixels is observed (NaN elsewhere is 0).
MIN_OBSERVED = 0.5

ATTRIBUTION = (
    "Amazon Mining Watch classifier by Earth Genome "
    "(github:earthrise-media/mining-detector @ bbbcb2d7, models/), MIT licence, "
    "Copyright (c) 2022 Earth Genome; converted to PyTorch by minewatch"
)


# ------------------------------------------------------------------------------ the network


class _ChannelsLastFlatten(nn.Module):
    """Keras ``Flatten`` of channels-last data: ``(N, C, H, W)`` flattened as ``(N, H, W, C)``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1).flatten(1) if x.ndim == 4 else x.flatten(1)


def _activation(name: str) -> nn.Module:
    return {"relu": nn.ReLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh()}.get(name, nn.Identity())


def _member(spec: Sequence[Mapping[str, Any]]) -> nn.Sequential:
    """One Keras ``Sequential`` from its layer list (the specs of :mod:`models._amw_keras`)."""
    layers: list[nn.Module] = []
    for s in spec:
        kind = s["type"]
        if kind == "conv2d":
            k = tuple(s["kernel"])
            pad = tuple(x // 2 for x in k) if s["padding"] == "same" else 0
            layers += [nn.Conv2d(s["in"], s["out"], k, padding=pad), _activation(s["activation"])]
        elif kind == "maxpool":
            layers.append(nn.MaxPool2d(tuple(s["pool"]), stride=tuple(s["strides"])))
        elif kind == "flatten":
            layers.append(_ChannelsLastFlatten())
        elif kind == "dense":
            layers += [nn.Linear(s["in"], s["out"]), _activation(s["activation"])]
        else:
            raise ModelError(f"AMW network: unknown layer type {kind!r} in its options")
    return nn.Sequential(*layers)


class AmwNet(nn.Module):
    """A converted AMW classifier: ``(N, band, 48, 48)`` inputs (0..1) -> per-member scores.

    Args:
        members: per ensemble member, its layer list (``options["members"]`` of the checkpoint).

    ``forward`` returns ``(N, members)`` sigmoid scores; :meth:`score` their mean (``(N,)``), the
    patch's mining probability.
    """

    def __init__(self, members: Sequence[Sequence[Mapping[str, Any]]]) -> None:
        super().__init__()
        if not members:
            raise ModelError("AMW network: no member")
        self.members = nn.ModuleList(_member(m) for m in members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([m(x).reshape(x.shape[0], -1) for m in self.members], dim=1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x).mean(dim=1)


def is_amw_checkpoint(checkpoint: Checkpoint) -> bool:
    return checkpoint.metadata.architecture == AMW_ARCHITECTURE


def build_amw_network(checkpoint: Checkpoint) -> AmwNet:
    """The network of an AMW checkpoint with its weights (float32, eval mode).

    Raises:
        CheckpointError: not an AMW checkpoint, or the weights do not fit its layers.
    """
    meta = checkpoint.metadata
    where = checkpoint.path or meta.name
    if meta.architecture != AMW_ARCHITECTURE:
        raise CheckpointError(
            f"{where}: architecture {meta.architecture!r} is not an AMW patch classifier "
            f"({AMW_ARCHITECTURE!r}); use detector kind 'network' for it"
        )
    try:
        net = AmwNet(meta.options["members"])
        net.load_state_dict({k: v.float() for k, v in checkpoint.state_dict.items()})
    except (KeyError, TypeError, RuntimeError, ModelError) as exc:
        raise CheckpointError(f"{where}: the AMW network cannot be built ({exc})") from exc
    return net.eval()


# ------------------------------------------------------------------------------ conversion


def read_keras_h5(path: str | Path) -> tuple[AmwNet, dict[str, Any]]:
    """The network of a Keras ``.h5`` (architecture and weights), read with h5py alone.

    Returns:
        ``(network with the file's weights, info)``; info holds ``members`` (the layer specs),
        ``member_names``, ``input_shape`` (``[48, 48, bands]``), ``combine`` and
        ``keras_version``.

    Raises:
        CheckpointError: the file is missing, not a Keras h5 model, or uses a layer this
            converter does not support.
    """
    path = Path(path)
    model = read_keras_model(path)
    specs, weights = model.members, model.weights
    net = AmwNet(specs)
    state: dict[str, torch.Tensor] = {}
    for m, (spec_list, w) in enumerate(zip(specs, weights, strict=True)):
        idx = 0
        for spec in spec_list:
            mod_idx = idx
            idx += 2 if spec["type"] in ("conv2d", "dense") else 1
            if spec["type"] not in ("conv2d", "dense"):
                continue
            got = w.get(spec["name"])
            if got is None:
                raise CheckpointError(f"{path}: no weights for layer {spec['name']!r}")
            prefix = f"members.{m}.{mod_idx}."
            if spec["type"] == "conv2d":
                state[prefix + "weight"] = torch.from_numpy(got["kernel"]).permute(3, 2, 0, 1)
                state[prefix + "bias"] = torch.from_numpy(got["bias"])
            else:
                state[prefix + "weight"] = torch.from_numpy(got["kernel"]).T
                state[prefix + "bias"] = torch.from_numpy(got["bias"])
    try:
        net.load_state_dict({k: v.float().contiguous() for k, v in state.items()})
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the architecture ({exc})") from exc
    info = {
        "members": specs,
        "member_names": model.member_names,
        "input_shape": model.input_shape,
        "combine": model.combine,
        "keras_version": model.keras_version,
    }
    return net.eval(), info


def convert_h5(
    h5_path: str | Path,
    out_path: str | Path,
    *,
    name: str | None = None,
    version: str = "1.0.0",
    metrics_file: str | Path | None = None,
    source: str = "github:earthrise-media/mining-detector @ bbbcb2d7, models/",
) -> Checkpoint:
    """Convert an AMW Keras classifier into a minewatch checkpoint.

    Args:
        h5_path: the ``.h5`` (architecture and weights).
        out_path: the checkpoint to write (``.pt``).
        name: model name (default: ``amw-`` and the file's version, e.g. ``amw-48px-v4.21``).
        version: checkpoint version.
        metrics_file: AMW's ``*_config-t0.5.txt`` beside it, whose figures go into the
            checkpoint's metrics.
        source: where the file comes from (recorded).

    Returns:
        The checkpoint as written.

    Raises:
        CheckpointError: the file cannot be read or converted, or its band count is neither 13
            nor 12.
    """
    h5_path = Path(h5_path)
    net, info = read_keras_h5(h5_path)
    side, _, n_bands = info["input_shape"]
    if n_bands not in (12, 13) or side != info["input_shape"][1]:
        raise CheckpointError(
            f"{h5_path}: input shape {info['input_shape']}; expected square patches of 13 "
            "(or 12) AMW bands"
        )
    bands = AMW_BANDS_13 if n_bands == 13 else AMW_BANDS_12
    stem = h5_path.stem
    if name is None:
        parts = stem.split("_")
        name = "amw-" + "-".join(parts[:2]).lower() if len(parts) > 1 else f"amw-{stem}"
    digest = hashlib.sha256(h5_path.read_bytes()).hexdigest()
    metrics = published_metrics(Path(metrics_file) if metrics_file else None)
    meta = CheckpointMetadata(
        name=name,
        version=version,
        architecture=AMW_ARCHITECTURE,
        options={"members": info["members"], "member_names": info["member_names"],
                 "combine": info["combine"]},
        bands=bands,
        # Identity: the input is reflectance (DN / 10000) clipped to 0..1, see extra.
        normalization=Normalization(bands, (0.0,) * len(bands), (1.0,) * len(bands)),
        classes=("mining",),
        patch_size_px=int(side),
        training_data={
            "description": "Amazon Mining Watch: hand-labelled real Sentinel-2 L1C patches "
            "(48 x 48 px, median composites of cloud-masked observations) of gold mining and "
            "hard negatives across the Amazon",
            **({"dataset": metrics["training_dataset"]} if "training_dataset" in metrics else {}),
        },
        metrics={"published": metrics} if metrics else {},
        extra={
            "thresholds": {"mining": AMW_THRESHOLD},
            "processing_level": "L1C",
            "radiometry": AMW_RADIOMETRY,
            "input": "top-of-atmosphere DN / 10000 clipped to 0..1, channels in the order of "
            "'bands' (B8A before B08)",
            "output": "sigmoid mining score of the whole 48 px patch"
            + (f", mean of {len(info['members'])} ensemble members" if info["combine"] == "mean"
               else ""),
            "default_stride_px": DEFAULT_STRIDE_PX,
            "attribution": ATTRIBUTION,
            "licence": "MIT",
            "source": f"{source}{h5_path.name}",
            "source_sha256": digest,
            "keras_version": info["keras_version"],
            "parameters": sum(p.numel() for p in net.parameters()),
        },
    )
    return save_checkpoint(out_path, net, meta)


# ------------------------------------------------------------------------------ the detector


def window_starts(size: int, window: int, step: int) -> list[int]:
    if size <= window:
        return [0]
    starts = list(range(0, size - window, step))
    starts.append(size - window)
    return starts


class AmwDetector:
    """Mining probability of every pixel from an AMW patch classifier (a :class:`Detector`).

    The 48 px window slides over the composite with ``stride_px``; each window's score (the
    patch's mining probability) goes to every pixel it covers, and a pixel keeps the highest:
    the union of the positive patches, at any threshold. Windows with less than half of their
    pixels observed are not scored; unobserved pixels are NaN.

    Args:
        checkpoint: an AMW checkpoint (:func:`convert_h5`).
        stride_px: window step, 1..patch size (default: the checkpoint's, 24 = upstream's).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_size: windows per forward pass.
        num_threads: CPU threads (default: the CPUs available, at most 16).
        backend: on the CPU, ``auto`` (ONNX Runtime when it loads and agrees with PyTorch to
            1e-5 on a probe, else PyTorch), ``torch`` or ``onnxruntime``; CUDA runs PyTorch. The
            ONNX export is made once per checkpoint and cached as the network's are
            (:mod:`models.runtime`); ONNX Runtime ran these CNNs about 4x faster on 2 cores.

    Raises:
        CheckpointError: not an AMW checkpoint, or its weights do not fit.
        ModelError: bad stride, device or backend.
    """

    classes: tuple[str, ...] = ("mining",)

    def __init__(
        self,
        checkpoint: Checkpoint,
        *,
        stride_px: int | None = None,
        device: str = "auto",
        batch_size: int = 128,
        num_threads: int | None = None,
        backend: str = "auto",
    ) -> None:
        from models.network import resolve_device
        from models.runtime import BACKENDS, cpu_threads

        self._ckpt = checkpoint
        meta = checkpoint.metadata
        self._net = build_amw_network(checkpoint)
        self._patch = int(meta.patch_size_px)
        stride = (
            int(meta.extra.get("default_stride_px", DEFAULT_STRIDE_PX))
            if stride_px is None
            else stride_px
        )
        if not 1 <= stride <= self._patch:
            raise ModelError(
                f"AMW stride_px {stride}: expected 1..{self._patch} (the window side; a larger "
                f"stride leaves pixels unscored); upstream uses {DEFAULT_STRIDE_PX}"
            )
        self.stride_px = stride
        self._device = resolve_device(device)
        self._net.to(self._device)
        if batch_size < 1:
            raise ModelError(f"AMW batch_size {batch_size}: expected >= 1")
        self._batch = batch_size
        if backend not in BACKENDS:
            raise ModelError(f"AMW backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        if backend == "onnxruntime" and self._device.type != "cpu":
            raise ModelError("AMW backend 'onnxruntime' runs on the CPU; use device 'cpu'")
        self._backend = backend
        self._threads = cpu_threads(num_threads)
        self._session: Any = None
        self._tried_onnx = False
        if self._device.type == "cpu" and torch.get_num_threads() != self._threads:
            torch.set_num_threads(self._threads)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_session"], state["_tried_onnx"] = None, False  # rebuilt where it is used
        return state

    def _onnx(self) -> Any:
        """The ONNX Runtime session (None: PyTorch runs), built on first use."""
        if self._tried_onnx or self._device.type != "cpu" or self._backend == "torch":
            return self._session
        self._tried_onnx = True
        try:
            self._session = _onnx_session(self._ckpt, self._net, self._threads)
        except Exception as exc:  # an optimisation failing must not stop a scan
            if self._backend == "onnxruntime":
                raise ModelError(f"AMW backend 'onnxruntime' failed: {exc}") from exc
            log.warning("ONNX Runtime unavailable for %s (%s); using PyTorch",
                        self._ckpt.metadata.name, exc)
        return self._session

    @property
    def checkpoint(self) -> Checkpoint:
        return self._ckpt

    @property
    def device(self) -> str:
        return self._device.type

    @property
    def backend(self) -> str:
        """``onnxruntime`` or ``torch`` (builds the ONNX session when it may be used)."""
        return "onnxruntime" if self._onnx() is not None else "torch"

    @property
    def info(self) -> ModelInfo:
        m = self._ckpt.metadata
        return ModelInfo(name=m.name, version=m.version, sha256=m.sha256)

    @property
    def bands(self) -> tuple[str, ...]:
        return tuple(self._ckpt.metadata.bands)

    @property
    def options(self) -> dict[str, Any]:
        """Settings that change the result beside the weights (part of a scan unit's key)."""
        return {"stride_px": self.stride_px}

    def check_bands(self, bands: Sequence[str]) -> list[int]:
        """Indices into ``bands`` of the network's bands, in its order.

        Raises:
            BandMismatchError: bands are missing; names them and the fix.
        """
        need = self.bands
        missing = [b for b in need if b not in bands]
        if missing:
            other = "the 12-band AMW checkpoint (no B10)" if missing == ["B10"] else None
            raise BandMismatchError(
                f"AMW classifier {self._ckpt.metadata.name} needs {len(need)} Sentinel-2 L1C "
                f"bands {list(need)}; the input lacks {missing} (it has {list(bands)}); give it "
                "a composite of all of them (top-of-atmosphere L1C, e.g. a 13-band GeoTIFF whose "
                "band descriptions name them)" + (f", or use {other}" if other else "")
            )
        return [list(bands).index(b) for b in need]

    def scores(self, patches: np.ndarray) -> np.ndarray:
        """Mining scores of ``(N, band, 48, 48)`` inputs already in AMW's convention."""
        out = np.empty(len(patches), dtype=np.float32)
        session = self._onnx()
        if session is not None:
            for i in range(0, len(patches), self._batch):
                arr = np.ascontiguousarray(patches[i : i + self._batch], dtype=np.float32)
                out[i : i + len(arr)] = session.run(None, {"x": arr})[0]
            return out
        with torch.inference_mode():
            for i in range(0, len(patches), self._batch):
                x = torch.from_numpy(np.ascontiguousarray(patches[i : i + self._batch]))
                out[i : i + len(x)] = self._net.score(x.to(self._device)).float().cpu().numpy()
        return out

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        """The ``mining`` probability raster of a ``(band, row, col)`` reflectance composite.

        Raises:
            BandMismatchError: a band the network needs is missing.
            ModelError: ``data`` is not ``(band, row, col)`` with one name per band.
        """
        if data.ndim != 3 or data.shape[0] != len(bands):
            raise ModelError(
                f"AMW input shape {data.shape} with {len(bands)} band name(s): expected "
                "(band, row, col) with one name per band"
            )
        idx = self.check_bands(bands)
        x = data[idx].astype(np.float32, copy=False)
        valid = np.all(np.isfinite(x), axis=0)
        h, w = valid.shape
        p = self._patch
        H, W = max(h, p), max(w, p)
        img = np.zeros((len(idx), H, W), dtype=np.float32)
        img[:, :h, :w] = np.clip(np.nan_to_num(x, nan=0.0), 0.0, 1.0)
        obs = np.zeros((H, W), dtype=np.float32)
        obs[:h, :w] = valid
        rows, cols = window_starts(H, p, self.stride_px), window_starts(W, p, self.stride_px)
        # observed share of every window, from a summed-area table
        sat = np.pad(obs.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        r, c = np.array(rows)[:, None], np.array(cols)[None, :]
        share = (sat[r + p, c + p] - sat[r, c + p] - sat[r + p, c] + sat[r, c]) / (p * p)
        origins = [(rr, cc) for i, rr in enumerate(rows) for j, cc in enumerate(cols)
                   if share[i, j] >= MIN_OBSERVED]
        prob = np.full((H, W), np.nan, dtype=np.float32)
        view = np.lib.stride_tricks.sliding_window_view(img, (p, p), axis=(1, 2))
        chunk = max(self._batch, 1) * 4
        for i in range(0, len(origins), chunk):
            part = origins[i : i + chunk]
            patches = np.stack([view[:, rr, cc] for rr, cc in part])
            for (rr, cc), s in zip(part, self.scores(patches), strict=True):
                tile = prob[rr : rr + p, cc : cc + p]
                np.fmax(tile, s, out=tile)
        prob = prob[:h, :w]
        prob[~valid] = np.nan
        return Prediction(self.classes, prob[None])


class _Score(nn.Module):
    def __init__(self, net: AmwNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.score(x)


def _onnx_session(checkpoint: Checkpoint, net: AmwNet, threads: int) -> Any:
    """An ONNX Runtime session of ``net``'s score (cached export), checked against PyTorch.

    Raises:
        ImportError: onnxruntime is missing.
        ModelError: the session disagrees with PyTorch by more than 1e-5 on a probe.
    """
    import onnxruntime as ort

    from models.runtime import _cached_export, _export_path, _save_export

    meta = checkpoint.metadata
    probe = torch.rand(
        4, len(meta.bands), meta.patch_size_px, meta.patch_size_px,
        generator=torch.Generator().manual_seed(0),
    )
    path = _export_path(checkpoint, None)
    data = _cached_export(path) if path is not None else None
    if data is None:
        log.info("exporting %s to ONNX (once per checkpoint)", meta.name)
        program: Any = torch.onnx.export(
            _Score(net).eval(), (probe,), dynamo=True, verbose=False, input_names=["x"],
            output_names=["score"], dynamic_shapes={"x": {0: torch.export.Dim("batch")}},
        )
        data = program.model_proto.SerializeToString()
        if path is not None:
            _save_export(path, data)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    session = ort.InferenceSession(data, opts, providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        reference = net.score(probe).numpy()
    err = float(np.abs(session.run(None, {"x": probe.numpy()})[0] - reference).max())
    if err > 1e-5:
        if path is not None:
            path.unlink(missing_ok=True)
        raise ModelError(f"the ONNX export differs from the PyTorch network by {err:.2g}")
    log.info("AMW classifier %s on CPU with ONNX Runtime, %d thread(s)", meta.name, threads)
    return session


class AmwAgreement:
    """A detector whose ``mining`` pixels need a second opinion from an AMW classifier.

    The primary detector (the segmentation network) outlines; the AMW patch score decides: a
    pixel keeps its ``mining`` probability only where the AMW raster (the highest score of the
    48 px windows covering it) reaches ``threshold``, else 0. So a site is alerted only where
    both agree, with the network's outline. Other classes pass unchanged. It reads the union of
    both detectors' bands.

    Args:
        primary: the detector that outlines (e.g. :class:`models.network.NetworkDetector`).
        amw: the AMW classifier.
        threshold: the AMW patch score needed (default: its checkpoint's, 0.5).

    Raises:
        ModelError: the threshold is not in (0, 1).
    """

    def __init__(self, primary: Any, amw: AmwDetector, *, threshold: float | None = None) -> None:
        self.primary = primary
        self.amw = amw
        if threshold is None:
            recorded = amw.checkpoint.metadata.extra.get("thresholds", {})
            threshold = float(recorded.get("mining", AMW_THRESHOLD))
        self.threshold = threshold
        if not 0.0 < self.threshold < 1.0:
            raise ModelError(f"second opinion threshold {self.threshold}: expected 0 < t < 1")
        self._bands = tuple(dict.fromkeys((*primary.bands, *amw.bands)))

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The primary's checkpoint (its per-class thresholds apply)."""
        return getattr(self.primary, "checkpoint", None)

    @property
    def device(self) -> str:
        return str(getattr(self.primary, "device", "cpu"))

    @property
    def bands(self) -> tuple[str, ...]:
        return self._bands

    @property
    def info(self) -> ModelInfo:
        p, a = self.primary.info, self.amw.info
        digest = hashlib.sha256(f"{p.sha256}+{a.sha256}".encode()).hexdigest()
        return ModelInfo(name=f"{p.name}+{a.name}", version=p.version, sha256=digest)

    @property
    def options(self) -> dict[str, Any]:
        return {"second_opinion": self.amw.info.sha256, "second_opinion_threshold": self.threshold,
                **self.amw.options, **getattr(self.primary, "options", {})}

    def for_level(self, level: str | None) -> AmwAgreement:
        """This pair for scenes of processing ``level``: the primary converts its input as it
        would alone (:meth:`models.network.NetworkDetector.for_level`); the AMW classifier,
        trained on L1C, reads the scenes as they are."""
        primary = for_level(self.primary, level)
        if primary is self.primary:
            return self
        return AmwAgreement(primary, self.amw, threshold=self.threshold)

    def predict(self, data: np.ndarray, bands: tuple[str, ...]) -> Prediction:
        """The primary's probabilities, ``mining`` kept only where the AMW score agrees.

        Raises:
            BandMismatchError: a band either detector needs is missing.
        """
        self.amw.check_bands(bands)  # before the network's work
        pred = self.primary.predict(data, bands)
        if "mining" not in pred.classes:
            return pred
        score = self.amw.predict(data, bands).of("mining")
        probs = pred.probabilities.copy()
        i = pred.classes.index("mining")
        agree = np.nan_to_num(score, nan=0.0) >= self.threshold
        probs[i] = np.where(agree | np.isnan(probs[i]), probs[i], 0.0)
        return Prediction(pred.classes, probs)


def load_amw_detector(
    checkpoint: str | Path | None = None,
    *,
    stride_px: int | None = None,
    device: str = "auto",
    backend: str = "auto",
) -> AmwDetector:
    """The AMW detector of a checkpoint file, or of the shipped default (the 12-band ensemble).

    Raises:
        CheckpointError: missing, corrupt, or not an AMW checkpoint.
        ModelError: bad stride or device.
    """
    from models.registry import AMW_MODEL, shipped_checkpoint_path

    if checkpoint is None:
        ckpt = load_checkpoint(
            shipped_checkpoint_path(AMW_MODEL), expected_sha256=AMW_MODEL.sha256
        )
    else:
        ckpt = load_checkpoint(checkpoint)
    if not is_amw_checkpoint(ckpt):
        raise CheckpointError(
            f"{ckpt.path}: {ckpt.metadata.name} is a {ckpt.metadata.architecture!r} network, not "
            f"an AMW patch classifier; use detector kind 'network' for it, or give an AMW "
            "checkpoint (python -m models.amw H5 OUT.pt)"
        )
    return AmwDetector(ckpt, stride_px=stride_px, device=device, backend=backend)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m models.amw H5 OUT.pt``: convert an AMW Keras classifier."""
    parser = argparse.ArgumentParser(
        prog="python -m models.amw",
        description="Convert an Amazon Mining Watch Keras classifier (.h5) into a minewatch "
        "checkpoint (needs h5py; no TensorFlow).",
    )
    parser.add_argument("h5", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--name")
    parser.add_argument("--version", default="1.0.0")
    parser.add_argument("--metrics-file", type=Path,
                        help="AMW's *_config-t0.5.txt with the published figures")
    args = parser.parse_args(argv)
    try:
        ckpt = convert_h5(args.h5, args.out, name=args.name, version=args.version,
                          metrics_file=args.metrics_file)
    except (ModelError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    m = ckpt.metadata
    print(f"{args.out}: {m.name} {m.version}, bands {','.join(m.bands)}, sha256 "
          f"{m.sha256}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
