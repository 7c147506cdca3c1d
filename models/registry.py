"""The registry of network architectures (chosen by name, with options) and of shipped weights.

==================  ======================================================  ==========
name                what                                                    fit for
==================  ======================================================  ==========
``unet-slim``       U-Net, compact ResNet encoder (~1 M parameters)         CPU
``unet-resnet18``   U-Net, torchvision ResNet-18 encoder (~14 M)            CPU / GPU
``unet-resnet34``   U-Net, torchvision ResNet-34 encoder (~24 M)            GPU
``unet-resnet50``   U-Net, torchvision ResNet-50 encoder (~32 M)            GPU
==================  ======================================================  ==========

Nothing downloads: torchvision encoders are built with ``weights=None``. An encoder can start from
weights in a local file (:func:`load_encoder_weights`), e.g. SSL4EO-S12 ResNet weights a user
downloaded.
"""

from __future__ import annotations

import importlib.resources
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import TORCH_EXTRA, CheckpointError, ModelError, require_torch

if TYPE_CHECKING:  # PyTorch is an extra; building a network needs it, naming one does not
    import torch
    from torch import nn

log = logging.getLogger(__name__)

#: Default input bands of every architecture (the core bands every source offers).
DEFAULT_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B11", "B12")

#: Output classes of every minewatch network, in logit order.
NETWORK_CLASSES: tuple[str, ...] = ("background", "mining", "deforestation")


@dataclass(frozen=True)
class Architecture:
    """A network architecture of the registry.

    Attributes:
        name: registry name.
        description: one line.
        device: what it is fit for (``cpu`` or ``gpu``).
        defaults: default options; any of them may be overridden by name.
        builder: ``builder(in_channels, num_classes, **options) -> nn.Module``.
    """

    name: str
    description: str
    device: str
    defaults: Mapping[str, Any]
    builder: Callable[..., nn.Module] = field(repr=False)


def _slim(
    in_channels: int,
    num_classes: int,
    *,
    widths: Sequence[int],
    blocks: Sequence[int],
    decoder_channels: Sequence[int] | None,
) -> nn.Module:
    from models.unet import SlimResNetEncoder, UNet

    encoder = SlimResNetEncoder(in_channels, widths, blocks)
    dec = list(decoder_channels) if decoder_channels is not None else list(widths[:-1])[::-1]
    return UNet(encoder, num_classes, dec)


def _resnet(depth: int) -> Callable[..., nn.Module]:
    def build(
        in_channels: int, num_classes: int, *, decoder_channels: Sequence[int]
    ) -> nn.Module:
        from models.unet import TorchvisionResNetEncoder, UNet

        return UNet(TorchvisionResNetEncoder(depth, in_channels), num_classes, decoder_channels)

    return build


_DECODER = (256, 128, 64, 32, 16)

ARCHITECTURES: dict[str, Architecture] = {
    a.name: a
    for a in (
        Architecture(
            "unet-slim",
            "U-Net with a compact ResNet encoder (full-resolution first stage)",
            "cpu",
            {"widths": [16, 32, 64, 96, 128], "blocks": [1, 1, 1, 1, 1], "decoder_channels": None},
            _slim,
        ),
        Architecture(
            "unet-resnet18",
            "U-Net with a torchvision ResNet-18 encoder",
            "gpu",
            {"decoder_channels": list(_DECODER)},
            _resnet(18),
        ),
        Architecture(
            "unet-resnet34",
            "U-Net with a torchvision ResNet-34 encoder",
            "gpu",
            {"decoder_channels": list(_DECODER)},
            _resnet(34),
        ),
        Architecture(
            "unet-resnet50",
            "U-Net with a torchvision ResNet-50 encoder",
            "gpu",
            {"decoder_channels": list(_DECODER)},
            _resnet(50),
        ),
    )
}


def architecture_options(name: str, options: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The full options of architecture ``name``: its defaults updated with ``options``.

    Raises:
        ModelError: unknown architecture or option.
    """
    arch = _get(name)
    given = dict(options or {})
    unknown = sorted(set(given) - set(arch.defaults))
    if unknown:
        raise ModelError(
            f"architecture {name!r}: unknown option(s) {unknown}; its options are "
            f"{sorted(arch.defaults)}"
        )
    return {**arch.defaults, **given}


def build_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int = len(NETWORK_CLASSES),
    options: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Build architecture ``name`` (randomly initialised; nothing downloads).

    Args:
        name: a key of :data:`ARCHITECTURES`.
        in_channels: input bands.
        num_classes: output classes.
        options: overrides of the architecture's default options.

    Returns:
        The network, mapping ``(N, in_channels, H, W)`` to logits ``(N, num_classes, H, W)``.

    Raises:
        ModelError: unknown architecture or option, or options that do not fit together.
    """
    if in_channels < 1 or num_classes < 2:
        raise ModelError(
            f"architecture {name!r}: in_channels {in_channels} must be >= 1 and num_classes "
            f"{num_classes} >= 2"
        )
    opts = architecture_options(name, options)
    require_torch(f"building network {name!r}")
    try:
        model = ARCHITECTURES[name].builder(in_channels, num_classes, **opts)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"architecture {name!r} with options {opts}: {exc}") from exc
    n = sum(p.numel() for p in model.parameters())
    log.debug("built %s (%d bands -> %d classes, %d parameters)", name, in_channels, num_classes, n)
    return model


def _get(name: str) -> Architecture:
    try:
        return ARCHITECTURES[name]
    except KeyError:
        raise ModelError(
            f"unknown architecture {name!r}; choose one of {sorted(ARCHITECTURES)}"
        ) from None


# ------------------------------------------------------------------------- encoder weights
_PREFIXES = ("module.", "model.", "encoder_q.", "backbone.", "encoder.", "net.")


def load_encoder_weights(
    model: nn.Module,
    path: str | Path,
    *,
    bands: Sequence[str] | None = None,
    file_bands: Sequence[str] | None = None,
) -> list[str]:
    """Initialise ``model.encoder`` from a local ``.pth``/``.pt`` state dict.

    Accepts torchvision-style ResNet keys (``conv1.weight``, ``layer1.0.conv1.weight``, ...) and
    this package's own encoder keys, optionally nested under ``state_dict``/``model`` and
    prefixed (``module.``, ``backbone.``, ``encoder_q.``, ``encoder.``), as SSL4EO-S12 and
    MoCo checkpoints are. Classifier (``fc.``) weights are ignored. When the first convolution
    of the file has another band count than the model: with ``file_bands`` and ``bands`` the
    matching input channels are picked by band name; without them, the mean over the file's
    channels is repeated for every band (scaled to keep the activation magnitude).

    Args:
        model: a network of :func:`build_model` (has an ``encoder``).
        path: the local file.
        bands: the model's input bands, in order.
        file_bands: the bands the file's first convolution was trained on, in order.

    Returns:
        The encoder keys that were loaded.

    Raises:
        CheckpointError: the file is missing or unreadable, or no tensor of it fits the encoder.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: encoder weights file not found; give a local .pth file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: not a readable PyTorch state dict ({exc}); give a .pth file saved with "
            "torch.save(model.state_dict(), ...)"
        ) from exc
    for key in ("state_dict", "model", "teacher", "student"):
        if isinstance(raw, dict) and isinstance(raw.get(key), dict):
            raw = raw[key]
            break
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(raw).__name__}")
    encoder: nn.Module = model.encoder  # type: ignore[assignment]
    target = encoder.state_dict()
    first_conv = next(k for k, v in target.items() if v.ndim == 4)
    loaded: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for key, tensor in raw.items():
        if not isinstance(tensor, torch.Tensor):
            continue
        name = str(key)
        changed = True
        while changed:
            changed = False
            for p in _PREFIXES:
                if name.startswith(p) and name[len(p) :] and name not in target:
                    name, changed = name[len(p) :], True
        if name.startswith("fc.") or name not in target:
            skipped.append(str(key))
            continue
        want = target[name]
        by_name = bands is not None and file_bands is not None
        if name == first_conv and tensor.ndim == 4 and tensor.shape[0] == want.shape[0] and (
            tensor.shape != want.shape or by_name
        ):
            tensor = _adapt_first_conv(tensor, want.shape[1], bands, file_bands, path)
        if tensor.shape != want.shape:
            skipped.append(f"{key} {tuple(tensor.shape)} != {tuple(want.shape)}")
            continue
        loaded[name] = tensor.to(want.dtype)
    if not loaded:
        raise CheckpointError(
            f"{path}: no tensor fits the encoder ({type(encoder).__name__}); the file holds "
            f"{list(raw)[:5]}...; expected torchvision ResNet keys such as 'conv1.weight'"
        )
    encoder.load_state_dict(loaded, strict=False)
    log.info(
        "encoder initialised from %s: %d of %d tensors loaded, %d skipped",
        path,
        len(loaded),
        len(target),
        len(skipped),
    )
    return sorted(loaded)


def _adapt_first_conv(
    weight: torch.Tensor,
    n_in: int,
    bands: Sequence[str] | None,
    file_bands: Sequence[str] | None,
    path: Path,
) -> torch.Tensor:
    if bands is not None and file_bands is not None:
        missing = [b for b in bands if b not in file_bands]
        if missing or len(file_bands) != weight.shape[1]:
            raise CheckpointError(
                f"{path}: first convolution has {weight.shape[1]} input channel(s) for bands "
                f"{list(file_bands)}; the model's bands {list(bands)} need {missing or 'a match'}"
            )
        return weight[:, [list(file_bands).index(b) for b in bands]]
    log.warning(
        "%s: first convolution has %d input channels, the model %d; using their mean "
        "(give file_bands to pick channels by band name)",
        path,
        weight.shape[1],
        n_in,
    )
    mean = weight.mean(dim=1, keepdim=True)
    return mean.repeat(1, n_in, 1, 1) * (weight.shape[1] / n_in)


# ------------------------------------------------------------------------- shipped weights
@dataclass(frozen=True)
class ShippedModel:
    """A checkpoint shipped in ``models/weights/``.

    Attributes:
        name: model name.
        filename: file in ``models/weights/``.
        sha256: the checkpoint's sha256 (:func:`models.checkpoint.checkpoint_sha256`: weights
            and metadata), checked on load: an edited band list is refused.
        weights_sha256: sha256 of its weights (:func:`models.checkpoint.weights_sha256`).
        onnx_filename: its ONNX export in ``models/weights/`` (:mod:`models.onnx`), which a
            CPU-only install (no PyTorch) runs with ONNX Runtime; None = none shipped.
        onnx_sha256: sha256 of that file, which loading verifies.
    """

    name: str
    filename: str
    sha256: str
    weights_sha256: str
    onnx_filename: str | None = None
    onnx_sha256: str | None = None


#: The network trained on the synthetic world only (the starting point of the default).
SYNTHETIC_MODEL = ShippedModel(
    name="minewatch-unet-slim-synthetic",
    filename="minewatch-unet-slim-synthetic.pt",
    sha256="af89553bc2b757cd2ae13f5250ad7084675d754deb60ed3504ec42065449c9ed",
    weights_sha256="cd276f481338ace63f0ed008be7b115e09b82d8a34b712dc0a05d8a95132131d",
    onnx_filename="minewatch-unet-slim-synthetic.onnx",
    onnx_sha256="98f909548b4c3f60fc935679fd746876d9f3b4d4833ab16ef772da3b80b8c87e",
)

#: The default network of ``minewatch demo`` / ``scan`` (``detector: {kind: network}``):
#: trained on real gallery chips and the synthetic world (models/weights/MODEL_CARD.md).
DEFAULT_MODEL = ShippedModel(
    name="minewatch-unet-slim-real",
    filename="minewatch-unet-slim-real.pt",
    sha256="56d11fb2aaf7fe00f5086864a0da98944f35e1ba1b751afb60a4450571bb30aa",
    weights_sha256="259e1773e657bacf4362d488b84c54d02a98e0ce58d5345890e8dc0249e136d2",
    onnx_filename="minewatch-unet-slim-real.onnx",
    onnx_sha256="36d937d5a4432cde1cf772c97cfc6002c65530a858117506e3f88bebd3ad1281",
)


#: Amazon Mining Watch's 13-band L1C patch classifier (one CNN100k member of their 2026 lineage,
#: the one with published figures), converted from Keras (``models.amw``;
#: models/weights/MODEL_CARD-amw.md).
AMW_V421_MODEL = ShippedModel(
    name="amw-48px-v4.21-cnn100ka",
    filename="amw-48px-v4.21-cnn100ka.pt",
    sha256="8a7bd32eb4b64769e76a8b61d02e209d5f7caf29d3d7a3e84b9a6ad29c4bc9ba",
    weights_sha256="44324edf3d536ad7c32f73ca59afeda45642c11a2194761c6f97f4eb0450c411",
)

#: Amazon Mining Watch's 2024 production ensemble (six 12-band L1C CNNs, no B10), converted.
#: The default of ``detector: {kind: amw}``: it needs no B10 (cirrus), which L2A scenes lack.
AMW_MODEL = ShippedModel(
    name="amw-48px-v3.2-3.7ensemble",
    filename="amw-48px-v3.2-3.7ensemble.pt",
    sha256="b87906a6e1430cc7ad2c69f3d90429c6c364b63c6326c8194a9e5d710de52460",
    weights_sha256="76d8dca864cd0b20e9ac92a19792861e7203fffab2944a355af159989a46b7cd",
)


def shipped_checkpoint_path(model: ShippedModel = DEFAULT_MODEL, *, onnx: bool = False) -> Path:
    """Path of a shipped checkpoint inside the installed package.

    Args:
        model: the shipped model.
        onnx: its ONNX export instead of the ``.pt`` checkpoint.

    Raises:
        CheckpointError: the file is not installed (or no ONNX export is shipped).
    """
    filename = model.onnx_filename if onnx else model.filename
    if filename is None:
        raise CheckpointError(
            f"{model.name} ships no ONNX export; running it needs PyTorch: {TORCH_EXTRA}"
        )
    res = importlib.resources.files("models") / "weights" / filename
    path = Path(str(res))
    if not path.is_file():
        raise CheckpointError(
            f"shipped checkpoint {path} not found; reinstall minewatch or give a checkpoint path "
            "(detector.checkpoint in the config)"
        )
    return path
