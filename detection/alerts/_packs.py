"""Evidence packs: one folder (or ZIP) per site that can stand up as evidence.

A pack holds, for one site of a run:

* ``site.geojson``: the alert (geometry and every property, legal status included) with the
  run's metadata;
* ``history.geojson``: the site in every period the run store holds;
* ``chips/before.tif``, ``chips/after.tif``: the composite pixels around the site (uint16
  reflectance x 10000, nodata 0; bands B02, B03, B04, B08, B12; georeferenced), and
  ``chips/<side>_<rendering>.png``: the same as captioned images with the site outlined;
* ``provenance.json``: run id, software version, model name/version/sha256, config sha256,
  source, periods, and each scene used: id, acquisition date, source hrefs with the checksums of
  the bytes read (``scenes.json`` of the scan, :mod:`detection.alerts._provenance`);
* ``case.pdf``: a one-page case file to print (:mod:`detection.alerts._casefile`);
* ``manifest.json``: the sha256 and size of every other file; ``manifest.sig`` and
  ``signing_key.pub`` when signed with an Ed25519 key (the signature is over the exact bytes of
  ``manifest.json``).

Packs are reproducible: the same run and site give byte-identical files (no clock, sorted keys,
fixed ZIP timestamps; Ed25519 signatures are deterministic). :func:`verify_pack` recomputes every
hash and checks the signature, naming each file changed, missing or added.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import multiprocessing as mp
import shutil
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from affine import Affine
from PIL import Image
from pyproj import CRS
from rasterio.warp import Resampling

from detection.alerts._evidence import (
    RENDERINGS,
    _covering,
    _draw_outline,
    _index,
    _stretch_limits,
    _to_rgb,
    _warp_into,
    _window,
    caption_lines,
    captioned_png,
    scene_date,
)
from detection.alerts._provenance import read_scenes
from detection.alerts._signing import (
    PUBLIC_KEY,
    SIGNATURE,
    _check_signature,
    load_private_key,
    public_pem,
)
from detection.errors import (
    ConfigError,
    DetectionError,
    InputFormatError,
    InputNotFoundError,
    InputReadError,
    OutputExistsError,
)
from tiles.files import atomic_path
from tiles.periods import Period

log = logging.getLogger(__name__)

PACK_FORMAT = "minewatch-evidence-pack/1"
MANIFEST = "manifest.json"
#: Bands of the GeoTIFF chips, in order.
CHIP_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B08", "B12")
#: Timestamp of every ZIP member (the ZIP epoch), so a pack's ZIP bytes do not depend on the clock.
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

ProgressFn = Callable[[int, int], None]


#: The root of the errors of evidence packs, kept for callers that catch it: an error of
#: packs is the ``DetectionError`` of its cause (``InputNotFoundError``: a run file, key or pack
#: is missing; ``InputFormatError``: one is not what it should be; ``InputReadError``: one
#: cannot be read; ``ConfigError``: a site id is not an alert of the run).
PackError = DetectionError


@dataclass(frozen=True)
class PackResult:
    """One pack written: the site, where, its files and total size in bytes."""

    site_id: str
    path: Path
    files: tuple[str, ...]
    size_bytes: int
    signed: bool


@dataclass
class VerifyResult:
    """What :func:`verify_pack` found."""

    path: Path
    site_id: str | None
    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    signature: str = "absent"  # absent / valid / invalid / wrong_key
    key_sha256: str | None = None
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.changed
            and not self.missing
            and not self.added
            and self.signature in ("absent", "valid")
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "site_id": self.site_id,
            "ok": self.ok,
            "files_checked": self.files_checked,
            "changed": self.changed,
            "missing": self.missing,
            "added": self.added,
            "signature": self.signature,
            "key_sha256": self.key_sha256,
        }


# ------------------------------------------------------------------------------------ write


@dataclass
class _Run:
    """What every pack of a run shares, read once."""

    out_dir: Path
    fc: dict[str, Any]
    features: dict[str, dict[str, Any]]
    run_json: dict[str, Any]
    software_version: str
    history: dict[str, list[dict[str, Any]]]
    scenes: dict[str, dict[str, Any]]
    aois: gpd.GeoDataFrame | None
    titles: gpd.GeoDataFrame | None
    period: Period
    previous_period: Period | None


class RunRecords(Protocol):
    """What a pack needs of a scan's run store (:class:`detection.runs.RunStore`, opened with
    ``RunStore.open_existing(out_dir)``; this room sits below ``runs`` and never reads the
    store's tables itself)."""

    def software_version(self, run_id: str) -> str | None: ...

    def site_history(self) -> list[dict[str, Any]]: ...


def write_evidence_packs(
    out_dir: Path,
    site_ids: Sequence[str] | None,
    dest: Path,
    *,
    store: RunRecords,
    as_zip: bool = False,
    signing_key: Path | None = None,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    workers: int = 1,
) -> list[PackResult]:
    """Write an evidence pack per site of the run in ``out_dir`` into ``dest``.

    Args:
        out_dir: a scan's output folder (``alerts.geojson``, ``run.json``, ``runs.sqlite``,
            ``units/``; ``scenes.json`` and the ``aois``/``titles`` layers of ``alerts.gpkg``
            when present).
        site_ids: the sites; None for every alert of the run.
        store: the folder's run store (software version, site history).
        dest: the folder the packs go into (``dest/<site_id>/`` or ``dest/<site_id>.zip``).
        as_zip: write one ZIP per site instead of a folder.
        signing_key: an Ed25519 private key (PEM) to sign each manifest with.
        overwrite: replace packs already in ``dest``.
        progress: called as ``progress(done, total)``.
        workers: build the packs' files in this many processes (forked; 1: in this one). The
            files are the same either way; signing and writing stay in this process.

    Returns:
        One result per pack, in the order of ``site_ids`` (sorted ids for all).

    Raises:
        InputNotFoundError: a run file or the key is missing.
        InputFormatError: a run file or the key is not what a scan (or keygen) writes.
        InputReadError: a run file or the key cannot be read.
        ConfigError: a site id is not an alert of the run.
        OutputExistsError: a pack exists and ``overwrite`` is False.
    """
    key = load_private_key(signing_key) if signing_key is not None else None
    run = _read_run(Path(out_dir), store)
    ids = sorted(run.features) if site_ids is None else list(dict.fromkeys(site_ids))
    unknown = [s for s in ids if s not in run.features]
    if unknown:
        known = sorted(run.features)
        raise ConfigError(
            f"site(s) {unknown} are not alerts of the run in {str(out_dir)!r}; it has "
            f"{len(known)} alert(s)" + (f", e.g. {known[:3]}" if known else "")
            + "; pass ids from its alerts.geojson, or --all"
        )
    dest = Path(dest)
    targets = {sid: dest / (_safe(sid) + (".zip" if as_zip else "")) for sid in ids}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"{len(existing)} pack(s) exist ({', '.join(existing[:3])}); pass --overwrite to "
            "replace them"
        )
    results = []
    for done, (sid, files) in enumerate(_build_all(run, ids, workers=workers), start=1):
        _add_manifest(files, sid, run, key)
        target = targets[sid]
        if as_zip:
            _write_zip(target, files)
        else:
            _write_folder(target, files)
        results.append(
            PackResult(
                site_id=sid,
                path=target,
                files=tuple(sorted(files)),
                size_bytes=target.stat().st_size
                if as_zip
                else sum(len(b) for b in files.values()),
                signed=key is not None,
            )
        )
        if progress:
            progress(done, len(ids))
    log.info("wrote %d evidence pack(s) into %s", len(results), dest)
    return results


def _build_all(
    run: _Run, ids: Sequence[str], *, workers: int
) -> Iterator[tuple[str, dict[str, bytes]]]:
    """``(site_id, files)`` of each site, in the order of ``ids``."""
    if workers <= 1 or len(ids) <= 1 or "fork" not in mp.get_all_start_methods():
        for sid in ids:
            yield sid, _site_files(run, sid)
        return
    with ProcessPoolExecutor(
        max_workers=min(workers, len(ids)), mp_context=mp.get_context("fork")
    ) as pool:
        yield from zip(ids, pool.map(partial(_site_files, run), ids), strict=True)


def _site_files(run: _Run, sid: str) -> dict[str, bytes]:
    from detection.alerts._casefile import render_case_file

    return _pack_files(run, sid, render_case_file)


def _safe(site_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in site_id)


def _read_run(out_dir: Path, store: RunRecords) -> _Run:
    path = out_dir / "alerts.geojson"
    if not path.is_file():
        raise InputNotFoundError(
            f"{str(out_dir)!r} holds no alerts.geojson; pass the output folder of a scan "
            "('minewatch scan CONFIG --out OUT' or 'minewatch demo')"
        )
    try:
        fc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _read_error(exc)(f"{path}: not a readable GeoJSON file: {exc}") from exc
    meta = fc.get("minewatch") or {}
    if not meta.get("run_id") or not meta.get("period"):
        raise InputFormatError(
            f"{path}: no 'minewatch' run metadata; "
            "expected alerts written by a scan"
        )
    run_json: dict[str, Any] = {}
    if (out_dir / "run.json").is_file():
        try:
            run_json = json.loads((out_dir / "run.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise _read_error(exc)(f"{out_dir / 'run.json'}: unreadable: {exc}") from exc
    software, history = _read_store(store, meta["run_id"])
    gpkg = out_dir / "alerts.gpkg"
    aois = _layer(gpkg, "aois")
    titles = _layer(gpkg, "titles")
    labels = {
        (str(p.get("period_start"))[:10], str(p.get("period_end"))[:10]): str(p.get("period_label"))
        for rows in history.values()
        for p in (f["properties"] for f in rows)
    }
    period = _period(meta["period"], labels)
    previous = (
        _period(meta["previous_period"], labels) if meta.get("previous_period") else None
    )
    return _Run(
        out_dir=out_dir,
        fc=fc,
        features={str(f["id"]): f for f in fc.get("features", [])},
        run_json=run_json,
        software_version=software,
        history=history,
        scenes=read_scenes(out_dir),
        aois=aois,
        titles=titles,
        period=period,
        previous_period=previous,
    )


def _read_error(exc: Exception) -> type[InputReadError] | type[InputFormatError]:
    """The error of a run file that exists but cannot be used: unreadable bytes, or bad JSON."""
    return InputReadError if isinstance(exc, OSError) else InputFormatError


def _period(span: Mapping[str, str], labels: Mapping[tuple[str, str], str]) -> Period:
    """The period of a ``{start, end}`` span, labelled as the scan labelled it (its ``units``
    folder): from the site history, else the quarter it is."""
    import datetime as dt

    start, end = dt.date.fromisoformat(span["start"]), dt.date.fromisoformat(span["end"])
    label = labels.get((span["start"], span["end"])) or _label(start, end)
    return Period(start, end, label)


def _label(start: Any, end: Any) -> str:
    """The label a scan gives a period (its units folder name): ``2024Q3`` for a quarter."""
    from tiles.periods import quarter

    q = (start.month - 1) // 3 + 1
    candidate = quarter(start.year, q)
    if (candidate.start, candidate.end) == (start, end):
        return candidate.label
    return f"{start.isoformat()}_{end.isoformat()}"


def _read_store(store: RunRecords, run_id: str) -> tuple[str, dict[str, list[dict[str, Any]]]]:
    software = store.software_version(run_id)
    records = store.site_history()
    history: dict[str, list[dict[str, Any]]] = {}
    for feature in records:
        history.setdefault(str(feature["properties"]["site_id"]), []).append(feature)
    for rows in history.values():
        rows.sort(key=lambda f: str(f["properties"].get("period_end")))
    return software or "unknown", history


def _layer(gpkg: Path, name: str) -> gpd.GeoDataFrame | None:
    if not gpkg.is_file():
        return None
    try:
        if name not in {str(n) for n, _ in pyogrio.list_layers(gpkg)}:
            return None
        frame = pyogrio.read_dataframe(gpkg, layer=name)
    except Exception as exc:  # GDAL errors come in several classes
        raise InputReadError(f"{gpkg}: layer {name!r}: {exc}") from exc
    return frame.to_crs(4326) if frame.crs is not None and frame.crs.to_epsg() != 4326 else frame


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, ensure_ascii=False, indent=1, sort_keys=True) + "\n").encode()


def _pack_files(run: _Run, sid: str, render: Callable[..., bytes]) -> dict[str, bytes]:
    feature = run.features[sid]
    props = feature["properties"]
    geom = shapely.geometry.shape(feature["geometry"])
    files: dict[str, bytes] = {}
    site_fc = {"type": "FeatureCollection", "minewatch": run.fc.get("minewatch"),
               "features": [feature]}
    files["site.geojson"] = _json_bytes(site_fc)
    history = run.history.get(sid, [])
    files["history.geojson"] = _json_bytes({"type": "FeatureCollection", "features": history})
    chips = _chips(run, sid, geom)
    files.update(chips.files)
    provenance = _provenance(run, props, chips)
    files["provenance.json"] = _json_bytes(provenance)
    files["case.pdf"] = render(
        feature=feature,
        history=history,
        chips=chips.images,
        provenance=provenance,
        aois=run.aois,
        titles=run.titles,
    )
    return files


def _provenance(run: _Run, props: Mapping[str, Any], chips: _Chips) -> dict[str, Any]:
    meta = run.fc.get("minewatch") or {}
    scenes = []
    for side, ids in (("before", chips.scene_ids["before"]), ("after", chips.scene_ids["after"])):
        for scene_id in ids:
            rec = run.scenes.get(scene_id, {})
            scenes.append(
                {
                    "side": side,
                    "scene_id": scene_id,
                    "acquired": rec.get("datetime") or scene_date(scene_id),
                    "processing_baseline": rec.get("processing_baseline"),
                    "files": [
                        {k: v for k, v in f.items() if k != "mtime_ns"}
                        for f in rec.get("files", [])
                    ],
                    "recorded": bool(rec),
                }
            )
    return {
        "format": PACK_FORMAT,
        "site_id": props["site_id"],
        "run_id": meta.get("run_id"),
        "generated_at": meta.get("generated_at"),
        "software_version": run.software_version,
        "format_version": meta.get("version"),
        "model": meta.get("model"),
        "config_sha256": run.run_json.get("config_sha256"),
        "source": meta.get("source"),
        "period": meta.get("period"),
        "previous_period": meta.get("previous_period"),
        "legal_status": props.get("legal_status"),
        "chips": chips.meta,
        "scenes": scenes,
    }


@dataclass
class _Chips:
    files: dict[str, bytes]
    images: dict[str, np.ndarray]
    scene_ids: dict[str, list[str]]
    meta: dict[str, Any]


def _chips(run: _Run, sid: str, geom: Any) -> _Chips:
    """GeoTIFF and captioned PNG chips of both sides (the evidence window)."""
    units = run.out_dir / "units"
    index = {
        "after": _index(units, run.period),
        "before": _index(units, run.previous_period) if run.previous_period else [],
    }
    w = _window(geom, index["after"], index["before"], chip_px=256, margin_m=200.0,
                min_extent_m=800.0)
    crs, res, n, transform, site, mask = w.crs, w.res, w.n, w.transform, w.site, w.site_mask
    window, scale = w.lonlat, w.scale
    files: dict[str, bytes] = {}
    images: dict[str, np.ndarray] = {}
    scene_ids: dict[str, list[str]] = {}
    meta: dict[str, Any] = {
        "crs": crs.to_string(),
        "transform": list(transform)[:6],
        "size_px": n,
        "bands": list(CHIP_BANDS),
    }
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    periods = {"after": run.period, "before": run.previous_period}
    with rasterio.Env():
        for name in ("before", "after"):
            used = list(_covering(index[name], window))
            scene_ids[name] = sorted({s for c in used for s in c.scene_ids})
            if not used:
                continue
            stack = np.zeros((len(CHIP_BANDS), n, n), dtype=np.uint16)
            for comp in used:
                with rasterio.open(comp.path) as src:
                    _warp_into(src, comp, CHIP_BANDS, stack, transform, crs, Resampling.nearest)
            valid = np.asarray((stack > 0).all(axis=0), dtype=bool)
            data[name] = (stack, valid)
            period = periods[name]
            files[f"chips/{name}.tif"] = _geotiff(stack, transform, crs, scene_ids[name], period)
            meta[f"{name}_observed_fraction"] = (
                round(float(valid[mask].mean()), 4) if mask.any() else 0.0
            )
    for rendering, triplet in RENDERINGS.items():
        idx = [CHIP_BANDS.index(b) for b in triplet]
        lo, hi = _stretch_limits([d[idx] for d, _ in data.values()], [v for _, v in data.values()])
        for name, (stack, valid) in data.items():
            rgb = _to_rgb(stack[idx], valid, lo, hi)
            image = Image.fromarray(rgb, mode="RGB").resize(
                (n * scale, n * scale), Image.Resampling.NEAREST
            )
            _draw_outline(image, site, transform, scale)
            images[f"{name}_{rendering}"] = np.asarray(image)
            period = periods[name]
            caption = caption_lines(
                sid,
                name,
                rendering,
                period_start=period.start.isoformat() if period else None,
                period_end=period.end.isoformat() if period else None,
                scene_ids=scene_ids[name],
            )
            files[f"chips/{name}_{rendering}.png"] = captioned_png(
                image, caption, metres_per_px=res / scale
            )
    return _Chips(files=files, images=images, scene_ids=scene_ids, meta=meta)


def _geotiff(
    stack: np.ndarray, transform: Affine, crs: CRS, scene_ids: list[str], period: Period | None
) -> bytes:
    profile = {
        "driver": "GTiff",
        "width": stack.shape[2],
        "height": stack.shape[1],
        "count": stack.shape[0],
        "dtype": "uint16",
        "crs": crs,
        "transform": transform,
        "nodata": 0,
        "compress": "deflate",
        "predictor": 2,
    }
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(stack)
            dst.descriptions = CHIP_BANDS
            dst.update_tags(
                SCENE_IDS=",".join(scene_ids),
                PERIOD_START=period.start.isoformat() if period else "",
                PERIOD_END=period.end.isoformat() if period else "",
                SCALE="reflectance x 10000",
            )
        data: bytes = mem.read()
    return data


def _add_manifest(files: dict[str, bytes], sid: str, run: _Run, key: Any) -> None:
    meta = run.fc.get("minewatch") or {}
    manifest = {
        "format": PACK_FORMAT,
        "site_id": sid,
        "run_id": meta.get("run_id"),
        "files": {
            name: {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
            for name, data in sorted(files.items())
        },
    }
    body = _json_bytes(manifest)
    files[MANIFEST] = body
    if key is not None:
        files[SIGNATURE] = base64.b64encode(key.sign(body)) + b"\n"
        files[PUBLIC_KEY] = public_pem(key.public_key())


def _write_folder(target: Path, files: Mapping[str, bytes]) -> None:
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for name, data in files.items():
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_zip(target: Path, files: Mapping[str, bytes]) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(f"{_safe_stem(target)}/{name}", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, files[name])
    with atomic_path(target) as tmp:
        tmp.write_bytes(buffer.getvalue())


def _safe_stem(target: Path) -> str:
    return target.name[:-4] if target.name.endswith(".zip") else target.name


# ----------------------------------------------------------------------------------- verify


def verify_pack(path: Path, *, public_key: Path | None = None) -> VerifyResult:
    """Check an evidence pack (folder or ZIP) against its manifest and signature.

    Every file listed in ``manifest.json`` is hashed again: a file whose bytes differ is
    ``changed``, one that is gone ``missing``, one not listed ``added``. When the pack is signed,
    the signature over ``manifest.json`` is checked with ``public_key`` (the signer's key, given
    by the person verifying) or, without it, with the key in the pack (which proves only that
    the manifest was not changed since it was signed by *that* key: compare its fingerprint with
    the signer's).

    Raises:
        InputNotFoundError: the pack (or ``public_key``) does not exist.
        InputFormatError: the pack is not a folder or ZIP with a pack manifest, or the key is
            not an Ed25519 public key.
        InputReadError: its manifest (a damaged ZIP member) or the key cannot be read.
    """
    path = Path(path)
    files = _read_pack(path)
    if MANIFEST not in files:
        raise InputFormatError(
            f"{path}: no {MANIFEST}; expected an evidence pack written by "
            "'minewatch alerts evidence-pack'"
        )
    body = files[MANIFEST]
    if body is None:
        raise InputReadError(f"{path}: {MANIFEST} cannot be read (damaged ZIP member)")
    try:
        manifest = json.loads(body)
        listed: Mapping[str, Mapping[str, Any]] = manifest["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InputFormatError(f"{path}: {MANIFEST} is not a pack manifest: {exc}") from exc
    result = VerifyResult(path=path, site_id=manifest.get("site_id"))
    for name, entry in sorted(listed.items()):
        if name not in files:
            result.missing.append(name)
            continue
        data = files[name]
        result.files_checked += 1
        if data is None or hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            result.changed.append(name)
    own = {MANIFEST, SIGNATURE, PUBLIC_KEY}
    result.added = sorted(n for n in files if n not in listed and n not in own)
    if SIGNATURE in files:
        result.signature, result.key_sha256 = _check_signature(files, body, public_key, path)
    elif public_key is not None:
        result.signature = "invalid"
    return result


def _read_pack(path: Path) -> dict[str, bytes | None]:
    """``name -> bytes`` of a pack folder or ZIP; None for a ZIP member that fails its CRC."""
    if path.is_dir():
        return {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in sorted(path.rglob("*"))
            if p.is_file()
        }
    if not path.is_file():
        raise InputNotFoundError(
            f"evidence pack {str(path)!r} does not exist; "
            "pass a pack folder or ZIP"
        )
    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise InputFormatError(
            f"{path}: not a ZIP file ({exc}); "
            "pass a pack folder or ZIP"
        ) from exc
    out: dict[str, bytes | None] = {}
    with zf:
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename.split("/", 1)[1] if "/" in info.filename else info.filename
            try:
                out[name] = zf.read(info)
            except (zipfile.BadZipFile, OSError, ValueError, zlib.error):
                out[name] = None  # a damaged member (CRC mismatch): reported as changed
    return out


def pack_summary(results: Iterable[PackResult]) -> list[dict[str, Any]]:
    """Machine-readable lines of written packs (the CLI's ``--json``)."""
    return [
        {
            "site_id": r.site_id,
            "path": str(r.path),
            "files": list(r.files),
            "size_bytes": r.size_bytes,
            "signed": r.signed,
        }
        for r in results
    ]
