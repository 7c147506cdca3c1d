"""The whole-scene batch: scene GeoTIFFs -> per-class probability COGs + sites, merged.

What ``minewatch predict`` runs: the network (or an Amazon Mining Watch classifier) is loaded
once for the batch; each scene gets ``<stem>_probabilities.tif`` (a COG, one band per class) and
``<stem>_sites.geojson`` (RFC 7946) by the scan's rule from probabilities to sites (its ``sites``
section); with several scenes their sites are merged across tile edges into ``sites.geojson``,
so a mine straddling two tiles is one site, measured whole.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import rasterio

from detection.errors import (
    ConfigError,
    DetectionError,
    InputFormatError,
    InputReadError,
    OutputExistsError,
)
from detection.inference import (
    UINT8_NODATA,
    InferenceOptions,
    ProgressFn,
    ScenePredictor,
    checkpoint_thresholds,
    scene_grid,
)
from detection.runs._config import SitesConfig
from detection.sites import (
    MaskOptions,
    SiteStream,
    finish_sites,
    merge_tile_sites,
    sites_from_probabilities,
)
from models.detector import ALERT_CLASSES
from models.errors import ModelError
from tiles.errors import TileError
from tiles.files import write_text_atomic

log = logging.getLogger(__name__)

#: What stops a batch at a scene (the scenes before it are kept, the next run resumes).
_SCENE_ERRORS = (DetectionError, ModelError, TileError, OSError)


@dataclass(frozen=True)
class PredictOptions:
    """How the network runs over a scene (``minewatch predict``'s flags of the same names)."""

    #: a checkpoint (``.pt``/``.onnx``); None: the shipped model
    checkpoint: Path | None = None
    device: str = "auto"
    window_px: int = 768
    overlap_px: int = 64
    #: windows per forward pass; None: from free GPU memory (1 on the CPU)
    batch_size: int | None = None
    compile: bool = False
    backend: str = "auto"
    #: AMW checkpoints only: step of the 48 px window (None: the checkpoint's)
    stride_px: int | None = None


@dataclass
class ScenePrediction:
    """One scene of a batch: its probability COG and sites file, and how they were made."""

    scene: Path
    probabilities: Path
    sites_path: Path
    #: the scene's sites after the minimum mapping unit and simplification (its sites file)
    sites: gpd.GeoDataFrame
    #: the scene's sites whole (before the minimum mapping unit): what the merge takes
    whole: gpd.GeoDataFrame = field(repr=False)
    #: True: the COG of an earlier run was kept (``resume``)
    reused: bool = False
    #: device, backend, size, windows, throughput of the model run (empty when reused)
    run: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def sites_per_class(self) -> dict[str, int]:
        return _per_class(self.sites)

    def summary(self) -> dict[str, Any]:
        """The scene's entry of ``minewatch predict --json``."""
        head: dict[str, Any] = {"scene": str(self.scene)}
        head |= {"reused": True} if self.reused else self.run
        return head | {
            "seconds": self.seconds,
            "probabilities": str(self.probabilities),
            "sites": str(self.sites_path),
            "site_count": len(self.sites),
            "sites_per_class": self.sites_per_class(),
        }


@dataclass(frozen=True)
class SceneFailure:
    """The scene that stopped a batch, and why."""

    scene: Path
    error: BaseException


@dataclass
class PredictionBatch:
    """What a batch wrote: the scenes done (in order), the one that stopped it, the merge."""

    out: Path
    scenes: list[ScenePrediction]
    #: the scene that failed; the scenes after it were not run and nothing was merged
    failure: SceneFailure | None = None
    #: ``out/sites.geojson`` with several scenes (None for one scene, or after a failure)
    merged_path: Path | None = None
    merged: gpd.GeoDataFrame | None = None
    seconds: float = 0.0

    def failure_message(self) -> str:
        """One message for the failure ("" without one): the error, and with scenes already
        written, how to go on from there."""
        if self.failure is None:
            return ""
        text = str(self.failure.error)
        if not self.scenes:
            return text
        return (
            f"{text}\n{len(self.scenes)} scene(s) before {self.failure.scene.name} are written "
            f"to {self.out}; fix this one (or leave it out) and rerun with --resume to go on"
        )

    def report(self) -> dict[str, Any]:
        """``minewatch predict --json``: one scene's summary, or the scenes and their merge."""
        seconds = round(self.seconds, 2)
        if self.merged is None:
            return self.scenes[0].summary() | {"seconds": seconds}
        return {
            "scenes": [s.summary() for s in self.scenes],
            "sites": str(self.merged_path),
            "seconds": seconds,
            "sites_per_class": _per_class(self.merged),
        }


def predict_scenes(
    scenes: Sequence[Path],
    *,
    out: Path,
    sites: SitesConfig | None = None,
    options: PredictOptions | None = None,
    overwrite: bool = False,
    resume: bool = False,
    progress: ProgressFn | None = None,
) -> PredictionBatch:
    """Predict mining and deforestation over whole scenes into ``out``.

    Writes ``out/<stem>_probabilities.tif`` and ``out/<stem>_sites.geojson`` per scene (a
    scene named twice is run once) and, with several scenes, ``out/sites.geojson``: their
    sites merged across tile edges, the minimum mapping unit applied to the merged sites. A
    scene that fails stops the batch: it is the result's ``failure``, the scenes before it stay
    written, and a rerun with ``resume`` goes on from there.

    Args:
        scenes: scene GeoTIFFs (the bands the checkpoint names).
        out: the output folder.
        sites: the rule from probabilities to sites (default: the scan's defaults).
        options: how the network runs (default: the shipped model, auto device).
        overwrite: replace the outputs of an earlier batch in ``out``.
        resume: keep the probability COGs in ``out`` this model wrote; their sites are made
            again.
        progress: called as ``progress(stage, done, total)``.

    Raises:
        ConfigError: ``overwrite`` and ``resume`` together, two scenes of one file name, or
            ``stride_px`` with a checkpoint that is not an AMW classifier.
        OutputExistsError: an output exists and neither ``overwrite`` nor ``resume`` is given.
        ModelError: the checkpoint cannot be loaded.
    """
    started = time.monotonic()
    options = options or PredictOptions()
    scenes = _check_batch(scenes, out=out, overwrite=overwrite, resume=resume)
    rule = (sites or SitesConfig()).mask_options()
    amw = _amw_detector(options)
    predictor = amw or _network(options)
    batch = PredictionBatch(out=out, scenes=[])
    # GDAL's block cache defaults to 5 % of RAM; whole-scene streaming needs little of it.
    with rasterio.Env(GDAL_CACHEMAX=256):
        for scene in scenes:
            try:
                done = _predict_scene(
                    scene, out=out, predictor=predictor, amw=amw is not None, rule=rule,
                    resume=resume, progress=progress,
                )
            except _SCENE_ERRORS as exc:
                batch.failure = SceneFailure(scene, exc)
                break
            batch.scenes.append(done)
        if batch.failure is None and len(scenes) > 1:
            batch.merged = merge_tile_sites(
                [s.whole for s in batch.scenes],
                min_area_ha=rule.min_area_ha,
                simplify_m=rule.simplify_m,
            )
            batch.merged_path = out / "sites.geojson"
            _write_geojson(batch.merged_path, batch.merged)
    batch.seconds = time.monotonic() - started
    return batch


def _check_batch(
    scenes: Sequence[Path], *, out: Path, overwrite: bool, resume: bool
) -> tuple[Path, ...]:
    """The scenes, each once; refused before anything is written when the arguments clash or
    an earlier batch's outputs would be replaced unasked."""
    if resume and overwrite:
        raise ConfigError(
            "pass --resume (keep finished scenes) or --overwrite (redo them), not both"
        )
    unique = tuple(dict.fromkeys(scenes))  # a scene named twice is predicted once
    by_name: dict[str, Path] = {}
    for scene in unique:
        other = by_name.setdefault(scene.stem, scene)
        if other != scene:
            raise ConfigError(
                f"scenes {other} and {scene} would both write {scene.stem}_probabilities.tif "
                "into --out; rename one, or predict them into separate --out folders"
            )
    outputs = [_outputs(out, s) for s in unique]
    derived = [sites for _, sites in outputs] + ([out / "sites.geojson"] if len(unique) > 1 else [])
    existing = [p for p in [prob for prob, _ in outputs] + derived if p.exists()]
    if existing and not (overwrite or resume):
        raise OutputExistsError(
            f"{existing[0]} exists; pass --resume to keep the finished scenes, --overwrite to "
            "replace them, or choose another --out"
        )
    return unique


def _outputs(out: Path, scene: Path) -> tuple[Path, Path]:
    return out / f"{scene.stem}_probabilities.tif", out / f"{scene.stem}_sites.geojson"


def _network(options: PredictOptions) -> ScenePredictor:
    return ScenePredictor(
        options.checkpoint,
        InferenceOptions(
            window_px=options.window_px,
            overlap_px=min(options.overlap_px, options.window_px // 2),
            batch_size=options.batch_size,
            device=options.device,
            compile=options.compile,
            backend=options.backend,
        ),
    )


def _amw_detector(options: PredictOptions) -> Any:
    """The AMW detector when the checkpoint is an AMW classifier, else None.

    Raises:
        ConfigError: ``stride_px`` with a checkpoint that is not an AMW classifier.
    """
    from models.checkpoint import PATCH_CLASSIFIERS, load_checkpoint

    checkpoint = options.checkpoint
    ckpt = load_checkpoint(checkpoint) if checkpoint is not None else None
    if ckpt is not None and ckpt.metadata.architecture in PATCH_CLASSIFIERS:
        from models.amw import AmwDetector

        return AmwDetector(
            ckpt, stride_px=options.stride_px, device=options.device, backend=options.backend
        )
    if options.stride_px is not None:
        raise ConfigError(
            f"--stride-px {options.stride_px} applies to Amazon Mining Watch checkpoints "
            "(models/weights/amw-*.pt) only; the network predicts every pixel"
        )
    return None


def _predict_scene(
    scene: Path,
    *,
    out: Path,
    predictor: Any,
    amw: bool,
    rule: MaskOptions,
    resume: bool,
    progress: ProgressFn | None,
) -> ScenePrediction:
    """One scene's probability COG (made, or kept with ``resume``) and its sites file.

    Per scene the sites are whole (hysteresis decided); the minimum mapping unit and the
    simplification come after any merge across scenes, so a mine cut by a tile edge is
    measured whole.
    """
    started = time.monotonic()
    prob_path, sites_path = _outputs(out, scene)
    whole_rule = replace(rule, min_area_ha=0.0, simplify_m=None)
    run: dict[str, Any] = {}
    whole: gpd.GeoDataFrame | None = None  # None: traced from the COG once it is written
    reused = resume and prob_path.exists()
    if reused:
        _check_model(prob_path, predictor.checkpoint.metadata.sha256)
        log.info("%s: keeping %s (--resume)", scene.name, prob_path)
    elif amw:
        from detection.inference import predict_scene_amw

        result = predict_scene_amw(scene, predictor, out_path=prob_path, progress=progress)
        run = _run_summary(result) | {"stride_px": predictor.stride_px}
    else:
        # The sites are traced from the rows as they are written, while the network runs on
        # the next ones.
        crs, transform, height, width = scene_grid(scene)
        with SiteStream(
            crs=crs, transform=transform, height=height, width=width,
            bands=ALERT_CLASSES, nodata=UINT8_NODATA, options=whole_rule,
            recorded_thresholds=checkpoint_thresholds(predictor.checkpoint),
            tile_id=scene.stem, progress=progress, name=str(prob_path),
        ) as stream:
            result = predictor.predict(
                scene, out_path=prob_path, progress=progress, on_rows=stream.add
            )
            whole = stream.finish()
        run = _run_summary(result)
    if whole is None:
        whole = sites_from_probabilities(
            str(prob_path), options=whole_rule, tile_id=scene.stem, progress=progress
        )
    sites = finish_sites(whole, options=replace(rule, hysteresis_low={}))
    _write_geojson(sites_path, sites)
    return ScenePrediction(
        scene=scene,
        probabilities=prob_path,
        sites_path=sites_path,
        sites=sites,
        whole=whole,
        reused=reused,
        run=run,
        seconds=round(time.monotonic() - started, 2),
    )


def _run_summary(result: Any) -> dict[str, Any]:
    return {
        "device": result.device,
        "backend": result.backend,
        "width": result.width,
        "height": result.height,
        "windows": result.windows,
        "batch_size": result.batch_size,
        "megapixels_per_s": round(result.megapixels_per_s, 3),
        "model_seconds": round(result.model_seconds, 2),
    }


def _per_class(sites: gpd.GeoDataFrame) -> dict[str, int]:
    counts = sites["alert_class"].value_counts().to_dict() if len(sites) else {}
    return {str(k): int(v) for k, v in counts.items()}


def _write_geojson(path: Path, sites: gpd.GeoDataFrame) -> None:
    """RFC 7946: WGS 84, no ``crs`` member; written atomically."""
    collection = json.loads(sites.to_crs("EPSG:4326").to_json(drop_id=True, to_wgs84=True))
    collection.pop("crs", None)
    write_text_atomic(path, json.dumps(collection))


def _check_model(prob_path: Path, sha256: str) -> None:
    """``resume`` keeps only what this model wrote.

    Raises:
        InputReadError: the COG cannot be read.
        InputFormatError: another model wrote it.
    """
    try:
        with rasterio.open(prob_path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError as exc:
        raise InputReadError(f"{prob_path}: cannot read it to resume ({exc})") from exc
    written_by = tags.get("MODEL_SHA256")
    if written_by != sha256:
        raise InputFormatError(
            f"{prob_path}: written by model {tags.get('MODEL_NAME', '?')} (sha256 "
            f"{written_by or 'unknown'}), not the one asked for ({sha256}); pass --overwrite "
            "to predict it again, or choose another --out"
        )
