"""Engines that run a checkpoint's network fast: PyTorch (GPU and CPU) and ONNX Runtime (CPU).

Both the scan detector (:class:`models.network.NetworkDetector`) and whole-scene inference
(:func:`detection.inference.predict_raster`) call an engine: normalised ``(N, band, row, col)``
float32 in, logits ``(N, class, row, col)`` float32 out.

- ``torch``: batch norm folded into the convolutions, channels-last, ``inference_mode``; bf16
  autocast on CUDA; optional ``torch.compile``.
- ``onnxruntime`` (CPU only): the folded network exported once to ONNX (``torch.onnx``,
  dynamic batch/height/width) and run by ONNX Runtime, about 1.6x the folded PyTorch network and
  3x the plain one on a 2-core CPU (docs/performance.md). The export takes seconds and is cached
  under ``$MINEWATCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/minewatch`` or
  ``~/.cache/minewatch``), keyed by the weights' sha256 and the torch version. Every engine is
  checked against the plain network on a probe before it is used.
- ``auto``: ``onnxruntime`` on the CPU when it is installed and passes its check, else ``torch``.

Without PyTorch (a CPU-only install: ``pip install minewatch`` without the ``torch`` extra) the
network comes from its shipped ONNX export (:mod:`models.onnx_checkpoint`): ``onnxruntime`` is
then the only engine, and :meth:`Engine.run` (NumPy in, NumPy out) the only call.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from models.checkpoint import Checkpoint, build_network
from models.errors import TORCH_EXTRA, ModelError, TorchMissingError, require_torch
from models.onnx_checkpoint import OnnxCheckpoint

if TYPE_CHECKING:  # PyTorch is an extra: the engines import it when they run a .pt network
    import torch
    from torch import nn

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")

#: Largest |difference| an engine may show against the plain network on the probe, relative to
#: the logits' magnitude (float32 reassociation gives ~1e-6).
_PARITY = 1e-3


class Engine(Protocol):
    """Runs a network: normalised ``(N, band, row, col)`` float32 -> logits.

    ``__call__`` takes and returns tensors (on the engine's device; needs PyTorch), :meth:`run`
    NumPy arrays (any install).
    """

    backend: str
    stride: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def run(self, x: np.ndarray) -> np.ndarray: ...


def cpu_threads(num_threads: int | None = None) -> int:
    """``num_threads``, or the CPUs available to this process (at most 16)."""
    if num_threads:
        return num_threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cpus or 1, 16))


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold eval-mode batch norms into the convolutions before them, in place.

    Handles ``Sequential(Conv2d, BatchNorm2d, ...)`` and the ResNet naming ``convN``/``bnN``
    (``conv1`` feeding ``bn1``...), which covers every network of the registry. The caller
    checks the result against the original (:func:`prepare_network` does).

    Args:
        model: a network in eval mode.

    Returns:
        ``model``, with folded batch norms replaced by identities.
    """
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in model.children():
        fold_batchnorm(child)
    if isinstance(model, nn.Sequential):
        keys = list(model._modules)
        for k1, k2 in itertools.pairwise(keys):
            a, b = model._modules[k1], model._modules[k2]
            if isinstance(a, nn.Conv2d) and isinstance(b, nn.BatchNorm2d):
                model._modules[k1] = fuse_conv_bn_eval(a, b)
                model._modules[k2] = nn.Identity()
    for i in range(1, 4):
        conv, bn = getattr(model, f"conv{i}", None), getattr(model, f"bn{i}", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(model, f"conv{i}", fuse_conv_bn_eval(conv, bn))
            setattr(model, f"bn{i}", nn.Identity())
    return model


def _probe(checkpoint: Checkpoint, stride: int) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(0)
    side = 2 * stride
    return torch.randn(1, checkpoint.metadata.input_channels, side, side, generator=gen)


def _close(out: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest difference, relative to the reference's magnitude."""
    return float((out.float() - reference).abs().max()) / max(1.0, float(reference.abs().max()))


def prepare_network(
    checkpoint: Checkpoint, device: torch.device, *, compile_model: bool = False
) -> nn.Module:
    """The checkpoint's network ready for fast inference on ``device``.

    Batch norms are folded into the convolutions (checked against the unfolded network on a
    probe input; kept unfolded if they differ), channels-last memory format, eval mode,
    optionally ``torch.compile``.

    Raises:
        CheckpointError: the weights do not fit the architecture.
    """
    import torch

    model = build_network(checkpoint)
    probe = _probe(checkpoint, int(getattr(model, "stride", 32)))
    with torch.inference_mode():
        reference = model(probe)
    folded = fold_batchnorm(build_network(checkpoint))
    with torch.inference_mode():
        err = _close(folded(probe), reference)
    if err <= _PARITY:
        model = folded
    else:
        log.warning("batch-norm folding changed the output by %.2g; running unfolded", err)
    model = model.to(device).to(memory_format=torch.channels_last).eval()
    if compile_model:  # (the compiled module forwards attribute reads such as ``stride``)
        return cast(nn.Module, torch.compile(model, dynamic=False))
    return model


class TorchEngine:
    """The folded, channels-last PyTorch network; bf16 autocast on CUDA."""

    backend = "torch"

    def __init__(
        self, checkpoint: Checkpoint, device: torch.device, *, compile_model: bool = False
    ) -> None:
        self.device = device
        self.model = prepare_network(checkpoint, device, compile_model=compile_model)
        self.stride = int(getattr(self.model, "stride", 32))

    def run(self, x: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, self(_torch().from_numpy(x)).cpu().numpy())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        x = x.to(self.device).contiguous(memory_format=torch.channels_last)
        cuda = self.device.type == "cuda"
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
        with torch.inference_mode(), ctx:
            return self.model(x).float()


class OnnxEngine:
    """The folded network as ONNX, run by ONNX Runtime on the CPU.

    From a ``.pt`` checkpoint the network is exported (cached, see the module doc) and checked
    against the PyTorch one on a probe; an :class:`~models.onnx_checkpoint.OnnxCheckpoint` (a
    shipped export, verified by its sha256) is run as it is, without PyTorch.

    Raises:
        ImportError: ``onnxruntime`` (or the exporter's ``onnx``/``onnxscript``) is missing.
        ModelError: the exported network disagrees with the PyTorch one on the probe.
    """

    backend = "onnxruntime"

    def __init__(
        self, checkpoint: Checkpoint, *, threads: int, cache_dir: Path | None = None
    ) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # Threads sleep between runs instead of spinning: the reader and writer threads of
        # whole-scene inference need the cores while the network waits for its next window.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        cpu = ["CPUExecutionProvider"]
        if isinstance(checkpoint, OnnxCheckpoint):
            self.stride = checkpoint.stride
            self.session = ort.InferenceSession(checkpoint.model_bytes, opts, providers=cpu)
            return
        import torch

        self.device = torch.device("cpu")
        model = prepare_network(checkpoint, self.device).to(memory_format=torch.contiguous_format)
        self.stride = int(getattr(model, "stride", 32))
        path = _export_path(checkpoint, cache_dir)
        session = None
        cached = _cached_export(path) if path is not None else None
        if cached is not None:
            try:
                session = ort.InferenceSession(cached, opts, providers=cpu)
            except Exception as exc:  # ONNX Runtime's errors share no base class but Exception
                log.warning("cached ONNX export %s is unreadable (%s); exporting again", path, exc)
        if session is None:
            data = _export(model, checkpoint, self.stride)
            if path is not None:
                _save_export(path, data)
            session = ort.InferenceSession(data, opts, providers=cpu)
        self.session = session
        err = _parity(model, checkpoint, self.stride, self)
        if err > _PARITY:
            if path is not None:
                path.unlink(missing_ok=True)
            raise ModelError(f"the ONNX export differs from the PyTorch network by {err:.2g}")

    def run(self, x: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(x, dtype=np.float32)
        return np.asarray(self.session.run(None, {"x": arr})[0])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        arr = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.run(arr))


def _torch() -> Any:
    """The torch module, or :class:`TorchMissingError` naming the extra."""
    require_torch("running a network with PyTorch")
    import torch

    return torch


def _parity(model: nn.Module, checkpoint: Checkpoint, stride: int, engine: Engine) -> float:
    """How far ``engine`` is from the plain ``model`` on the probe (relative)."""
    import torch

    probe = _probe(checkpoint, stride)
    with torch.inference_mode():
        reference = model(probe)
    return _close(engine(probe), reference)


def export_network(checkpoint: Checkpoint) -> tuple[bytes, int]:
    """The checkpoint's folded network as ONNX bytes, checked on the probe, and its stride.

    Raises:
        TorchMissingError: PyTorch is not installed.
        ModelError: the export differs from the PyTorch network.
    """
    torch = _torch()
    model = prepare_network(checkpoint, torch.device("cpu"))
    model = model.to(memory_format=torch.contiguous_format)
    stride = int(getattr(model, "stride", 32))
    data = _export(model, checkpoint, stride)
    engine = OnnxEngine(
        OnnxCheckpoint(checkpoint.metadata, {}, model_bytes=data, stride=stride), threads=1
    )
    err = _parity(model, checkpoint, stride, engine)
    if err > _PARITY:
        raise ModelError(f"the ONNX export differs from the PyTorch network by {err:.2g}")
    return data, stride


def default_cache_dir() -> Path:
    """``$MINEWATCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/minewatch``, else ``~/.cache/minewatch``."""
    if os.environ.get("MINEWATCH_CACHE_DIR"):
        return Path(os.environ["MINEWATCH_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "minewatch"


def _export_path(checkpoint: Checkpoint, cache_dir: Path | None) -> Path | None:
    import torch

    folder = (cache_dir or default_cache_dir()) / "onnx"
    meta = checkpoint.metadata
    key = hashlib.sha256(
        f"{meta.weights_sha256}|{meta.architecture}|{torch.__version__}".encode()
    ).hexdigest()[:24]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        log.info("ONNX exports not cached: cannot create %s (%s)", folder, exc)
        return None
    return folder / f"{meta.name}-{key}.onnx"


def _cached_export(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _save_export(path: Path, data: bytes) -> None:
    """Write atomically; a cache that cannot be written only costs the next export."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("ONNX export not cached at %s (%s)", path, exc)


def _export(model: nn.Module, checkpoint: Checkpoint, stride: int) -> bytes:
    import torch

    log.info("exporting %s to ONNX (once per checkpoint)", checkpoint.metadata.name)
    dim = torch.export.Dim
    shapes = {"x": {0: dim("batch"), 2: dim("height"), 3: dim("width")}}
    program: Any = torch.onnx.export(
        model,
        (_probe(checkpoint, stride),),
        dynamo=True,
        verbose=False,
        input_names=["x"],
        output_names=["logits"],
        dynamic_shapes=shapes,
    )
    return cast(bytes, program.model_proto.SerializeToString())


def build_engine(
    checkpoint: Checkpoint,
    device: torch.device | str,
    *,
    backend: str = "auto",
    compile_model: bool = False,
    num_threads: int | None = None,
    cache_dir: Path | None = None,
) -> Engine:
    """The engine for ``checkpoint`` on ``device`` (see the module doc for the backends).

    Args:
        checkpoint: the loaded checkpoint (``.pt``, or an ONNX export: ONNX Runtime only).
        device: where to run (``cuda`` runs PyTorch); a torch device or its name.
        backend: ``auto``, ``torch`` or ``onnxruntime``.
        compile_model: ``torch.compile`` the network (PyTorch only; ``auto`` then picks it).
        num_threads: CPU threads (default: :func:`cpu_threads`).
        cache_dir: where ONNX exports are cached (default: :func:`default_cache_dir`).

    Raises:
        ModelError: unknown backend; ``onnxruntime`` asked for on CUDA, with ``compile_model``,
            when it is not installed, or when its export fails its check; an ONNX checkpoint
            asked to run with PyTorch.
        TorchMissingError: PyTorch is needed (``torch`` backend, CUDA, a ``.pt`` checkpoint
            without ONNX Runtime) but not installed.
        CheckpointError: the weights do not fit the architecture.
    """
    if backend not in BACKENDS:
        raise ModelError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    kind = device if isinstance(device, str) else device.type
    kind = kind.split(":")[0]
    if isinstance(checkpoint, OnnxCheckpoint):
        if kind != "cpu" or compile_model or backend == "torch":
            raise ModelError(
                f"{checkpoint.path}: an ONNX checkpoint runs on the CPU with ONNX Runtime; for "
                f"backend 'torch', CUDA or --compile give its .pt checkpoint ({TORCH_EXTRA})"
            )
        return OnnxEngine(checkpoint, threads=cpu_threads(num_threads))
    torch = _torch()
    where = torch.device(device)
    if kind != "cpu" or compile_model:
        if backend == "onnxruntime":
            raise ModelError(
                "backend 'onnxruntime' runs the network on the CPU without torch.compile; "
                "use device 'cpu' without --compile, or backend 'torch'"
            )
        return TorchEngine(checkpoint, where, compile_model=compile_model)
    threads = cpu_threads(num_threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    if backend in ("auto", "onnxruntime"):
        try:
            engine: Engine = OnnxEngine(checkpoint, threads=threads, cache_dir=cache_dir)
        except ImportError as exc:
            if backend == "onnxruntime":
                raise ModelError(
                    f"backend 'onnxruntime': {exc.name or exc} is not installed; "
                    "pip install onnxruntime onnx onnxscript, or use backend 'torch'"
                ) from exc
            log.info("onnxruntime is not installed; running the network with PyTorch")
        except TorchMissingError:
            raise
        except Exception as exc:  # an optimisation failing must not stop a scan
            if backend == "onnxruntime":
                raise ModelError(f"backend 'onnxruntime' failed: {exc}") from exc
            log.warning("ONNX Runtime unavailable for %s (%s); using PyTorch",
                        checkpoint.metadata.name, exc)
        else:
            log.info("network %s on CPU with ONNX Runtime, %d thread(s)",
                     checkpoint.metadata.name, threads)
            return engine
    log.info("network %s on CPU with PyTorch, %d thread(s)", checkpoint.metadata.name, threads)
    return TorchEngine(checkpoint, where)
