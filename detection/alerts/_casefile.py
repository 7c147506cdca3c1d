"""The case file of a site: one printable PDF page for people who work on paper.

The page shows the alert (class, status, area, confidence, period), its legal status and the
titles or closed areas behind it, where it is (centroid in decimal degrees and in UTM, the
reserve and the distance to its boundary), a map of the site with the reserve's boundary and
the mining titles around it, the before/after chips, the area over time, the scenes and their
dates, and the provenance (run, software, model and config hashes). The PDF has no date in it
and TrueType text (searchable, copyable), so the same site and run give the same bytes.
"""

from __future__ import annotations

import io
import logging
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import matplotlib
import numpy as np
import shapely
from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure
from pyproj import Transformer

from aoi.geometry import utm_epsg, utm_zone_for

_CLASS = {"mining": "Mining", "deforestation": "Forest clearing"}
_A4 = (8.27, 11.69)


def utm_text(lon: float, lat: float) -> str:
    """``UTM 21S 612345 E 9323456 N (EPSG:32721)``: the point in its UTM zone, metres."""
    zone = utm_zone_for(lon, lat)
    south = lat < 0
    epsg = utm_epsg(zone, north=not south)
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(lon, lat)
    return f"UTM {zone}{'S' if south else 'N'} {x:.0f} E {y:.0f} N (EPSG:{epsg})"


def render_case_file(
    *,
    feature: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    chips: Mapping[str, np.ndarray],
    provenance: Mapping[str, Any],
    aois: gpd.GeoDataFrame | None,
    titles: gpd.GeoDataFrame | None,
) -> bytes:
    """The one-page case file PDF of a site, as bytes.

    Args:
        feature: the alert Feature (GeoJSON dict).
        history: the site's history Features, oldest first.
        chips: RGB arrays ``<side>_<rendering>`` (``before_true_colour``, ...).
        provenance: the pack's ``provenance.json`` content.
        aois: the run's AOIs (drawn on the map), or None.
        titles: the run's mining titles (drawn on the map), or None.
    """
    # matplotlib logs a WARNING per figure that the core fonts' regular weight is called
    # "medium" in their AFM files; it is harmless, so it is kept out of the user's terminal.
    font_log = logging.getLogger("matplotlib.font_manager")
    level = font_log.level
    font_log.setLevel(logging.ERROR)
    try:
        with matplotlib.rc_context(_RC):  # type: ignore[arg-type]
            return _render(feature, history, chips, provenance, aois, titles)
    finally:
        font_log.setLevel(level)


#: The PDF's fonts: the standard 14 PDF fonts (Helvetica, Courier), referenced, not embedded:
#: small, fast, and the text reads back (search, copy, pypdf).
_RC: dict[str, Any] = {
    "pdf.use14corefonts": True,
    "font.family": "sans-serif",
    "font.sans-serif": ["Helvetica"],
    "font.monospace": ["Courier"],
    # The core fonts have no Unicode minus sign.
    "axes.unicode_minus": False,
    "text.parse_math": False,
    "pdf.compression": 6,
}


def _render(
    feature: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    chips: Mapping[str, np.ndarray],
    provenance: Mapping[str, Any],
    aois: gpd.GeoDataFrame | None,
    titles: gpd.GeoDataFrame | None,
) -> bytes:
    props = feature["properties"]
    geom = shapely.geometry.shape(feature["geometry"])
    centroid = geom.representative_point() if not geom.centroid.within(geom) else geom.centroid
    lon, lat = centroid.x, centroid.y
    fig = Figure(figsize=_A4)
    sid = str(props["site_id"])
    fig.text(0.06, 0.965, f"minewatch case file: site {sid}", fontsize=15, fontweight="bold")
    period = provenance.get("period") or {}
    fig.text(
        0.06, 0.947,
        f"{_CLASS.get(props.get('alert_class'), props.get('alert_class'))}, "
        f"{props.get('status')}: {props.get('area_ha')} ha "
        f"(change {props.get('area_change_ha')} ha), confidence {props.get('confidence')} "
        f"({props.get('confidence_level')})",
        fontsize=9,
    )
    fig.text(
        0.06, 0.935,
        f"Period {period.get('start')} to {period.get('end')}; first detected "
        f"{props.get('first_detected')}; observed {props.get('observed_fraction')} of the site; "
        f"review: {props.get('review_status')}",
        fontsize=8,
    )
    legal_lines = _legal_lines(props)
    fig.text(0.06, 0.915, legal_lines[0], fontsize=10, fontweight="bold", color="#8b0000")
    for i, line in enumerate(legal_lines[1:6]):
        fig.text(0.08, 0.898 - i * 0.014, line, fontsize=8)
    y = 0.898 - len(legal_lines[1:6]) * 0.014 - 0.006
    location = [
        f"Location: {lat:.6f}, {lon:.6f} (latitude, longitude; decimal degrees, WGS 84)",
        f"          {utm_text(lon, lat)}",
        f"Reserve: {props.get('aoi_name')} ({props.get('aoi_kind')}, id {props.get('aoi_id')}), "
        f"{props.get('aoi_relation')}, {props.get('distance_to_boundary_m')} m from its boundary",
    ]
    for i, line in enumerate(location):
        fig.text(0.06, y - i * 0.014, line, fontsize=8, family="monospace" if i < 2 else None)
    top = y - len(location) * 0.014 - 0.01

    map_ax = fig.add_axes((0.08, top - 0.30, 0.40, 0.29))
    _draw_map(map_ax, geom, aois, titles)
    area_ax = fig.add_axes((0.58, top - 0.27, 0.37, 0.24))
    _draw_area(area_ax, history)

    chip_top = top - 0.36
    names = ("before_true_colour", "after_true_colour", "before_swir", "after_swir")
    labels = {
        "before_true_colour": "before, true colour",
        "after_true_colour": "after, true colour",
        "before_swir": "before, SWIR (B12 B08 B04)",
        "after_swir": "after, SWIR (B12 B08 B04)",
    }
    for i, name in enumerate(names):
        ax = fig.add_axes((0.06 + i * 0.225, chip_top - 0.2, 0.21, 0.2))
        ax.set_xticks([])
        ax.set_yticks([])
        if name in chips:
            ax.imshow(chips[name], interpolation="nearest")
        else:
            ax.text(0.5, 0.5, "no imagery", ha="center", va="center", fontsize=8)
        ax.set_title(labels[name], fontsize=7.5)

    lines = _scene_lines(provenance) + _provenance_lines(provenance)
    y = chip_top - 0.23
    for line in lines[:22]:
        fig.text(0.06, y, line, fontsize=7, family="monospace")
        y -= 0.0125
    fig.text(
        0.06, 0.02,
        "Every file of this evidence pack is listed with its sha256 in manifest.json; check "
        "it with `minewatch alerts verify PACK [--public-key KEY.pub]`. Detections are automatic "
        "until an analyst reviews them.",
        fontsize=6.5, color="0.3", wrap=True,
    )
    buffer = io.BytesIO()
    meta = {
        "Title": f"minewatch case file {sid}",
        "Creator": "minewatch",
        "Producer": "minewatch",
        "CreationDate": None,
    }
    with PdfPages(buffer, metadata=meta) as pdf:
        pdf.savefig(fig)
    return buffer.getvalue()


def _legal_lines(props: Mapping[str, Any]) -> list[str]:
    status = str(props.get("legal_status") or "unknown")
    legal = props.get("legal") if isinstance(props.get("legal"), Mapping) else {}
    legal = legal or {}
    lines = [f"Legal status: {status}"]
    for area in legal.get("closed_areas") or []:
        lines.append(
            f"inside {area.get('aoi_name')} ({area.get('aoi_kind')}, closed to mining): "
            f"{float(area.get('share') or 0):.0%} of the site"
        )
    for t in legal.get("titles") or []:
        lines.append(
            f"title {t.get('title_id')}: {t.get('phase')}"
            f"{' (extraction allowed)' if t.get('extraction_allowed') else ' (no extraction)'}, "
            f"holder {t.get('holder') or '?'}, {t.get('substance') or '?'}, "
            f"{float(t.get('share') or 0):.0%} of the site"
        )
    if legal.get("title_layer") is False or not legal:
        lines.append("no mining-title layer configured for this scan")
    elif not legal.get("titles"):
        lines.append("no mining title valid in the period covers the site")
    return [textwrap.shorten(line, 140) for line in lines]


def _draw_map(ax: Any, geom: Any, aois: gpd.GeoDataFrame | None,
              titles: gpd.GeoDataFrame | None) -> None:
    minx, miny, maxx, maxy = geom.bounds
    pad = max(maxx - minx, maxy - miny, 0.01) * 1.5
    view = shapely.box(minx - pad, miny - pad, maxx + pad, maxy + pad)
    for frame, colour, style, label in (
        (aois, "#2e7d32", "-", "reserve"),
        (titles, "#1f4e9c", "--", "mining titles"),
    ):
        if frame is None or not len(frame):
            continue
        near = frame[frame.intersects(view)]
        for g in near.geometry:
            part = g.intersection(view.buffer(pad))
            _outline(ax, part, colour=colour, style=style)
            if label == "reserve":
                for poly in getattr(part, "geoms", [part]):
                    if poly.geom_type == "Polygon":
                        xs, ys = poly.exterior.xy
                        ax.fill(xs, ys, color=colour, alpha=0.12, linewidth=0)
        if len(near):
            ax.plot([], [], color=colour, linestyle=style, label=label)
    for part in getattr(geom, "geoms", [geom]):
        xs, ys = part.exterior.xy
        ax.fill(xs, ys, color="#d7301f", alpha=0.6, linewidth=1.0, edgecolor="#7f0000")
    ax.plot([], [], color="#d7301f", linewidth=6, alpha=0.6, label="site")
    ax.set_xlim(minx - pad, maxx + pad)
    ax.set_ylim(miny - pad, maxy + pad)
    ax.set_aspect(1 / max(np.cos(np.radians((miny + maxy) / 2)), 0.1))
    ax.tick_params(labelsize=6)
    ax.set_xlabel("longitude", fontsize=7)
    ax.set_ylabel("latitude", fontsize=7)
    ax.legend(fontsize=6, loc="lower right")
    ax.set_title("map (WGS 84)", fontsize=8)


def _outline(ax: Any, geom: Any, *, colour: str, style: str) -> None:
    if geom.is_empty:
        return
    if geom.geom_type == "Polygon":
        for ring in (geom.exterior, *geom.interiors):
            xs, ys = ring.xy
            ax.plot(xs, ys, color=colour, linestyle=style, linewidth=1.0)
    elif hasattr(geom, "geoms"):
        for part in geom.geoms:
            _outline(ax, part, colour=colour, style=style)


def _draw_area(ax: Any, history: Sequence[Mapping[str, Any]]) -> None:
    labels = [str(f["properties"].get("period_label")) for f in history]
    areas = [float(f["properties"].get("area_ha") or 0.0) for f in history]
    if labels:
        ax.bar(labels, areas, color="#d7301f")
        for x, a in enumerate(areas):
            ax.text(x, a, f"{a:.2f}", ha="center", va="bottom", fontsize=7)
    else:
        ax.text(0.5, 0.5, "no history", ha="center", va="center", transform=ax.transAxes)
    ax.set_ylabel("area (ha)", fontsize=7)
    ax.set_title("area over time", fontsize=8)
    ax.tick_params(labelsize=7)


def _scene_lines(provenance: Mapping[str, Any]) -> list[str]:
    lines = ["Scenes (acquired, id):"]
    scenes = provenance.get("scenes") or []
    for scene in sorted(scenes, key=lambda s: (s.get("side") != "before", str(s.get("acquired")))):
        lines.append(f"  {scene.get('side'):6} {str(scene.get('acquired'))[:10]}  "
                     f"{scene.get('scene_id')}")
    return lines


def _provenance_lines(provenance: Mapping[str, Any]) -> list[str]:
    model = provenance.get("model") or {}
    return [
        f"Run {provenance.get('run_id')} (generated {provenance.get('generated_at')}), "
        f"minewatch {provenance.get('software_version')}",
        f"Model {model.get('name')} {model.get('version')} sha256 {model.get('sha256')}",
        f"Config sha256 {provenance.get('config_sha256')}",
        f"Source {provenance.get('source')}",
        f"Chip grid {(provenance.get('chips') or {}).get('crs')}",
    ]


__all__ = ["render_case_file", "utm_text"]
