"""Where a run's pixels came from: each scene's source hrefs and the checksums of their bytes.

A scan writes ``scenes.json`` into its output folder: for every scene inside the scan's periods,
its id, acquisition time, processing baseline and the files (or remote assets) it was read from.
A local file (a GeoTIFF, or each file of a scene folder) gets the sha256 of its bytes, computed
when the scan reads it (``checksum_source: computed``); a remote asset gets the checksum its
catalogue publishes (STAC ``file:checksum``, a multihash; ``checksum_source: catalogue``), or
none when the catalogue has none (range reads never see the whole file). Evidence packs
(:mod:`detection.alerts._packs`) copy these records, so a reader can check the imagery
independently.

Hashes are cached by path, size and modification time from the previous ``scenes.json``, so a
scheduled scan hashes only new scenes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tiles.cache import file_hash
from tiles.files import write_text_atomic
from tiles.scene import SceneInfo

log = logging.getLogger(__name__)

SCENES_FILE = "scenes.json"


def sha256_file(path: Path) -> str:
    """The sha256 (hex) of a file's bytes."""
    return file_hash(path)


def record_scenes(out_dir: Path, scenes: Iterable[SceneInfo]) -> dict[str, dict[str, Any]]:
    """Write ``out_dir/scenes.json`` for ``scenes`` (merged with the records already there).

    Returns:
        scene id -> record (``scene_id``, ``datetime``, ``processing_baseline``, ``href``,
        ``files``: a list of ``{href, size, sha256 | checksum, checksum_source}``).
    """
    previous = read_scenes(out_dir)
    cache = {
        (f["href"], f.get("size"), f.get("mtime_ns")): f.get("sha256")
        for rec in previous.values()
        for f in rec.get("files", [])
        if f.get("sha256")
    }
    records = dict(previous)
    for info in scenes:
        records[info.scene_id] = {
            "scene_id": info.scene_id,
            "datetime": info.datetime.isoformat().replace("+00:00", "Z"),
            "processing_baseline": info.processing_baseline,
            "href": str(info.href),
            "files": _files(info, cache),
        }
    ordered = {k: records[k] for k in sorted(records)}
    write_text_atomic(out_dir / SCENES_FILE, json.dumps(ordered, indent=1, sort_keys=True) + "\n")
    log.info("recorded the provenance of %d scene(s) in %s", len(ordered), out_dir / SCENES_FILE)
    return ordered


def read_scenes(out_dir: Path) -> dict[str, dict[str, Any]]:
    """The records of ``out_dir/scenes.json``; empty when it is missing or unreadable."""
    path = Path(out_dir) / SCENES_FILE
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s cannot be read (%s); scene provenance starts afresh", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def _files(
    info: SceneInfo, cache: Mapping[tuple[Any, Any, Any], str | None]
) -> list[dict[str, Any]]:
    if info.assets:
        out = []
        for band, asset in sorted(info.assets.items()):
            entry: dict[str, Any] = {"band": band, "href": str(asset.get("href", ""))}
            if asset.get("file:size") is not None:
                entry["size"] = asset.get("file:size")
            if asset.get("file:checksum"):
                entry["checksum"] = str(asset["file:checksum"])
                entry["checksum_source"] = "catalogue"
            else:
                entry["checksum_source"] = "none"
            out.append(entry)
        return out
    href = Path(str(info.href))
    if not href.exists():
        return [{"href": str(href), "checksum_source": "none"}]
    paths = sorted(p for p in href.iterdir() if p.is_file()) if href.is_dir() else [href]
    files = []
    for path in paths:
        stat = path.stat()
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        digest = cache.get(key) or sha256_file(path)
        files.append(
            {
                "href": str(path),
                "size": stat.st_size,
                "mtime_ns": stat.st_mtime_ns,
                "sha256": digest,
                "checksum_source": "computed",
            }
        )
    return files
