"""Reading Amazon Mining Watch's published files with h5py alone (no TensorFlow, no torch): a
Keras ``.h5`` classifier (architecture from its ``model_config``, weights from
``model_weights``) as layer specs and weight arrays that :mod:`models.amw` builds its network
from, and the figures of its ``*_config-t0.5.txt``.

Only the layers of AMW's CNNs are read (``Conv2D``, ``MaxPooling2D``, ``Flatten``, ``Dense``,
``Dropout``), in a ``Sequential`` or a functional ensemble of ``Sequential`` members joined by
one ``Concatenate`` or ``Average``; anything else is refused by name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import CheckpointError

_ACTIVATIONS = ("relu", "sigmoid", "linear", "tanh")


@dataclass(frozen=True)
class KerasModel:
    """A Keras classifier as read from its ``.h5``.

    Attributes:
        members: per ensemble member (one for a ``Sequential``), its layer specs
            (:func:`keras_layer_spec`).
        member_names: the members' Keras names.
        weights: per member, ``{layer: {kernel|bias: array}}`` (Keras layouts).
        input_shape: ``[height, width, bands]``.
        combine: ``single`` (a ``Sequential``) or ``mean`` (an ensemble).
        keras_version: the Keras version that saved it.
    """

    members: list[list[dict[str, Any]]]
    member_names: list[str]
    weights: list[dict[str, dict[str, np.ndarray]]]
    input_shape: list[int]
    combine: str
    keras_version: str


def read_keras_model(path: str | Path) -> KerasModel:
    """The layer specs and weights of a Keras ``.h5`` (architecture and weights).

    Raises:
        CheckpointError: the file is missing, not a Keras h5 model, or uses a layer this
            converter does not support.
    """
    try:
        import h5py
    except ImportError as exc:  # pragma: no cover - h5py is in the 'amw' extra
        raise CheckpointError(
            "converting a Keras .h5 needs h5py: pip install 'minewatch[amw]' (or h5py)"
        ) from exc
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: Keras file not found")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise CheckpointError(f"{path}: not an HDF5 file ({exc})") from exc
    with h5:
        raw = h5.attrs.get("model_config")
        if raw is None or "model_weights" not in h5:
            raise CheckpointError(
                f"{path}: no 'model_config'/'model_weights'; expected a Keras model saved with "
                "model.save('x.h5') (architecture and weights)"
            )
        config = json.loads(raw if isinstance(raw, str) else raw.decode())
        keras_version = h5.attrs.get("keras_version", "")
        kind, cfg = config["class_name"], config["config"]
        shape = _input_shape(cfg)
        if kind == "Sequential":
            members = [(cfg.get("name", "model"), cfg["layers"])]
            groups = [h5["model_weights"]]
            combine = "single"
        elif kind in ("Functional", "Model"):
            subs = [layer for layer in cfg["layers"] if layer["class_name"] == "Sequential"]
            others = {
                layer["class_name"]
                for layer in cfg["layers"]
                if layer["class_name"] not in ("Sequential", "InputLayer")
            }
            if not subs or not others <= {"Concatenate", "Average"} or len(others) != 1:
                raise CheckpointError(
                    f"{path}: functional model of {sorted(others | {'Sequential'})} layers; the "
                    "AMW converter supports an ensemble of Sequential members joined by one "
                    "Concatenate or Average"
                )
            members = [(s["config"]["name"], s["config"]["layers"]) for s in subs]
            groups = [h5["model_weights"][s["config"]["name"]] for s in subs]
            combine = "mean"
        else:
            raise CheckpointError(f"{path}: Keras model class {kind!r} is not supported")
        specs = [_member_specs(layers, shape[-1]) for _, layers in members]
        weights = [_weights_of(g, path) for g in groups]
    return KerasModel(
        members=specs,
        member_names=[n for n, _ in members],
        weights=weights,
        input_shape=shape,
        combine=combine,
        keras_version=str(keras_version),
    )


def keras_layer_spec(
    layer: Mapping[str, Any], channels: int, rank: int
) -> tuple[dict[str, Any] | None, int, int]:
    """One Keras layer config as a layer spec, given the incoming channels/features and rank.

    Returns:
        ``(spec or None for layers without effect at inference, out channels, out rank)``.

    Raises:
        CheckpointError: a layer type or option this converter does not support (named).
    """
    kind, cfg = layer["class_name"], layer["config"]
    name = cfg.get("name", "?")

    def unsupported(what: str) -> CheckpointError:
        return CheckpointError(
            f"Keras layer {name!r} ({kind}): {what} is not supported by the AMW converter "
            "(it supports Conv2D, MaxPooling2D, Flatten, Dense and Dropout: the layers of AMW's "
            "CNNs)"
        )

    act = cfg.get("activation", "linear")
    if kind in ("Conv2D", "Dense") and act not in _ACTIVATIONS:
        raise unsupported(f"activation {act!r}")
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise unsupported(f"data_format {cfg.get('data_format')!r}")
    if kind == "InputLayer":
        return None, channels, rank
    if kind == "Conv2D":
        k = list(cfg["kernel_size"])
        if list(cfg.get("strides", [1, 1])) != [1, 1] or list(cfg.get("dilation_rate", [1, 1])) != [
            1,
            1,
        ] or cfg.get("groups", 1) != 1:
            raise unsupported("strides, dilation or groups other than 1")
        if cfg["padding"] not in ("same", "valid") or (
            cfg["padding"] == "same" and any(x % 2 == 0 for x in k)
        ):
            raise unsupported(f"padding {cfg['padding']!r} with kernel {k}")
        if not cfg.get("use_bias", True):
            raise unsupported("use_bias false")
        spec = {"type": "conv2d", "name": name, "in": channels, "out": cfg["filters"],
                "kernel": k, "padding": cfg["padding"], "activation": act}
        return spec, int(cfg["filters"]), 4
    if kind == "MaxPooling2D":
        if cfg.get("padding", "valid") != "valid":
            raise unsupported(f"padding {cfg.get('padding')!r}")
        pool = list(cfg["pool_size"])
        strides = list(cfg.get("strides") or pool)
        return {"type": "maxpool", "name": name, "pool": pool, "strides": strides}, channels, 4
    if kind == "Flatten":
        return {"type": "flatten", "name": name}, -1, 2
    if kind == "Dropout":
        return None, channels, rank
    if kind == "Dense":
        if rank != 2:
            raise unsupported("a Dense on a 4-D tensor (without Flatten)")
        if not cfg.get("use_bias", True):
            raise unsupported("use_bias false")
        spec = {"type": "dense", "name": name, "in": channels, "out": cfg["units"],
                "activation": act}
        return spec, int(cfg["units"]), 2
    raise unsupported("this layer type")


def _member_specs(
    layers: Sequence[Mapping[str, Any]], channels: int
) -> list[dict[str, Any]]:
    specs: list[dict[str, Any]] = []
    rank, feats = 4, channels
    hw: list[int] | None = None
    for layer in layers:
        if layer["class_name"] == "InputLayer":
            shape = layer["config"].get("batch_input_shape") or layer["config"].get("batch_shape")
            hw = [int(shape[1]), int(shape[2])]
            continue
        if layer["class_name"] == "Flatten" and hw is not None:
            spec, _, rank = keras_layer_spec(layer, feats, rank)
            feats = feats * hw[0] * hw[1]
            assert spec is not None
            specs.append(spec)
            continue
        spec, feats, rank = keras_layer_spec(layer, feats, rank)
        if spec is not None and spec["type"] == "maxpool" and hw is not None:
            hw = [(hw[i] - spec["pool"][i]) // spec["strides"][i] + 1 for i in range(2)]
        if spec is not None:
            specs.append(spec)
    return specs


def _input_shape(cfg: Mapping[str, Any]) -> list[int]:
    for layer in cfg["layers"]:
        if layer["class_name"] == "InputLayer":
            c = layer["config"]
            shape = c.get("batch_input_shape") or c.get("batch_shape")
            return [int(x) for x in shape[1:]]
    shape = cfg.get("build_input_shape") or cfg["layers"][0]["config"].get("batch_input_shape")
    return [int(x) for x in shape[1:]]


def _weights_of(group: Any, path: Path) -> dict[str, dict[str, np.ndarray]]:
    """``{layer: {kernel|bias: array}}`` of a Keras weights group (and its subgroups)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    names: list[str] = []
    if "weight_names" in group.attrs:
        raw = group.attrs["weight_names"]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in raw]
        for n in names:
            layer, param = n.split("/")[-2], n.split("/")[-1].split(":")[0]
            out.setdefault(layer, {})[param] = np.asarray(group[n], dtype=np.float32)
    for key in group:
        sub = group[key]
        if hasattr(sub, "attrs") and "weight_names" in sub.attrs and hasattr(sub, "keys"):
            for layer, params in _weights_of(sub, path).items():
                out.setdefault(layer, {}).update(params)
    return out


def published_metrics(path: Path | None) -> dict[str, Any]:
    """AMW's ``_config-t0.5.txt`` figures: average precisions and the report at 0.5."""
    if path is None:
        return {}
    text = path.read_text(encoding="utf-8")
    out: dict[str, Any] = {"source": path.name}
    m = re.search(r"Training dataset:\s*(\S+?)(?=Avg precisions|\s|$)", text)
    if m:
        out["training_dataset"] = m.group(1)
    m = re.search(r"Avg precisions:\s*(\{[^}]*\})", text)
    if m:
        out["average_precision"] = json.loads(m.group(1).replace("'", '"'))
    m = re.search(r"Classification Reports at 0\.5\s*(\{.*\})\s*$", text, re.S)
    if m:
        out["classification_report_at_0.5"] = json.loads(m.group(1))
    return out
