"""The review page: one self-contained HTML file an analyst opens from disk, no server, no network.

The page carries everything inline: Leaflet (shipped in
``detection/alerts/static/leaflet``, BSD-2), the page's own script
(``detection/alerts/static/review.js``), the alerts and coverage as JSON, the period
composites as a downsampled image under the map, and the evidence chips as data URIs. It loads
nothing from anywhere. It shows the run summary, the alerts on a map, a table sortable by area,
change, confidence, status, observed share..., and per alert its evidence and *Confirm* /
*Reject* buttons; *Export decisions* downloads a GeoJSON that ``minewatch alerts import-review``
turns into labelled polygons. Decisions survive a reload (kept in the browser's local storage,
keyed by run id).

Every text from the data is escaped: HTML-escaped where the page is written here, set through
``textContent`` by the script, and the JSON blocks escape ``<``, ``>`` and ``&``.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from detection.alerts._alerts import CONFIDENCE_LEVELS
from detection.alerts._evidence import EVIDENCE_IMAGES, Overlay, period_overlay
from detection.errors import InputFormatError
from tiles.files import write_text_atomic
from tiles.periods import Period

log = logging.getLogger(__name__)

#: Columns of the review table, in order: ``(property, header, type)``.
REVIEW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("site_id", "site", "text"),
    ("alert_class", "class", "text"),
    ("status", "status", "status"),
    ("area_ha", "area (ha)", "number"),
    ("area_change_ha", "change (ha)", "number"),
    ("confidence", "confidence", "number"),
    ("observed_fraction", "observed", "number"),
    ("aoi_name", "AOI", "text"),
    ("aoi_relation", "relation", "text"),
    ("distance_to_boundary_m", "to boundary (m)", "number"),
    ("legal_status", "legal status", "text"),
    ("review_status", "review", "text"),
)

#: Order of statuses when a table is sorted by status: what needs a look first.
STATUS_ORDER: Mapping[str, int] = MappingProxyType(
    {"new": 0, "reactivated": 1, "expanding": 2, "stable": 3, "receding": 4}
)

_MIME = MappingProxyType({".png": "image/png", ".jpg": "image/jpeg", ".webp": "image/webp"})
_CSS_URL = re.compile(r"url\((images/[A-Za-z0-9_.-]+\.png)\)")


_LEGEND: tuple[tuple[str, str], ...] = (
    ("#f06524", "mining"),
    ("#d9ef8b", "deforestation"),
    ("#e31a1c", "new (outline)"),
    ("#ce1256", "expanding (outline)"),
    ("#6a3d9a", "reactivated (outline)"),
    ("#8c8c8c", "not observed (hatched grey)"),
)


def write_review_html(
    path: str | Path,
    fc: Mapping[str, Any],
    *,
    title: str,
    coverage_fc: Mapping[str, Any] | None = None,
    units_dir: Path | None = None,
    period: Period | None = None,
    previous_period: Period | None = None,
    evidence_root: Path | None = None,
    inline_evidence: bool = True,
    overlay_max_px: int = 1600,
    composites: Mapping[str, Sequence[Path]] | None = None,
) -> None:
    """Write the review page of a run, atomically.

    Args:
        path: the target file (``review.html``).
        fc: the alert FeatureCollection (:func:`detection.alerts.build_feature_collection`),
            with ``evidence`` filled by :func:`detection.alerts.write_evidence` for chips.
        title: the page title.
        coverage_fc: coverage polygons as a FeatureCollection whose properties hold ``status``
            (``observed``, ``partly_observed``, ``not_observed``, ``no_imagery``, ``failed``);
            what was not observed is drawn hatched grey. Only the features of the alerts' period
            are drawn when the properties carry ``period_end``.
        units_dir: the scan's ``units`` folder; with ``period``, the period's composites become
            the map's background (true colour, downsampled, see
            :func:`detection.alerts.period_overlay`), and with ``previous_period`` too, a
            second background the analyst can switch to.
        period: the alerts' period (for the background).
        previous_period: the previous period (a second background), optional.
        evidence_root: the folder the ``evidence`` paths are relative to (default: the page's
            folder, which is the run's output folder).
        inline_evidence: embed the chips as data URIs (the page stays one self-contained file);
            ``False`` links them by relative path (a smaller page that needs the ``evidence``
            folder beside it).
        overlay_max_px: longer side of the background image, pixels.
        composites: the composites of each period (by label) the units wrote; default: those
            found under ``units_dir``.

    Raises:
        DetectionError: ``fc`` or ``coverage_fc`` is not a FeatureCollection, or a composite
            cannot be read.
    """
    _check_collections(fc, coverage_fc)
    path = Path(path)
    root = Path(evidence_root) if evidence_root is not None else path.parent
    features = sorted(fc["features"], key=lambda f: str(f.get("id", "")))
    meta = dict(fc.get("minewatch") or {})
    coverage = _coverage_of_period(coverage_fc, meta.get("period"))
    overlays = (
        _overlays(units_dir, period, previous_period, max_px=overlay_max_px, composites=composites)
        if units_dir is not None
        else []
    )
    chips = {
        str(f.get("id")): _chips((f.get("properties") or {}).get("evidence"), root, inline_evidence)
        for f in features
    }
    payload = {
        "meta": meta,
        "features": [
            {
                "type": "Feature",
                "id": f.get("id"),
                "geometry": f.get("geometry"),
                "properties": f.get("properties") or {},
            }
            for f in features
        ],
        "coverage": coverage,
        "overlays": overlays,
        "chips": chips,
        "confidence_levels": list(CONFIDENCE_LEVELS),
    }
    write_text_atomic(path, _page(title, meta, features, payload))
    log.info(
        "wrote %s (%d alerts, %d background images, chips %s)",
        path,
        len(features),
        len(overlays),
        "inline" if inline_evidence else "linked",
    )


def _check_collections(fc: Mapping[str, Any], coverage_fc: Mapping[str, Any] | None) -> None:
    """Raise when ``fc`` or ``coverage_fc`` (when given) is not a FeatureCollection."""
    for what, collection in (("fc", fc), ("coverage_fc", coverage_fc)):
        if collection is None:
            continue
        if collection.get("type") != "FeatureCollection" or not isinstance(
            collection.get("features"), list
        ):
            raise InputFormatError(
                f"write_review_html: {what} is not a FeatureCollection "
                f"(type {collection.get('type')!r})"
            )


def _overlays(
    units_dir: Path,
    period: Period | None,
    previous_period: Period | None,
    *,
    max_px: int,
    composites: Mapping[str, Sequence[Path]] | None,
) -> list[dict[str, Any]]:
    """The map's backgrounds: the composites of ``period``, then of ``previous_period``
    (each when given and it has composites)."""
    overlays: list[dict[str, Any]] = []
    for label, which in (("composite", period), ("previous composite", previous_period)):
        if which is None:
            continue
        overlay = period_overlay(units_dir, which, max_px=max_px, composites=composites)
        if overlay is not None:
            overlays.append(_overlay_entry(f"{label} {which.label}", overlay))
    return overlays


def _page(
    title: str,
    meta: Mapping[str, Any],
    features: list[Mapping[str, Any]],
    payload: Mapping[str, Any],
) -> str:
    """The page's HTML: styles, summary, map, side panel and table, then the data and scripts."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title>",
        f"<style>{_leaflet_css()}</style>",
        f"<style>{_static('review.css')}</style>",
        "</head><body>",
        f"<h1>{_e(title)}</h1>",
        _run_warning(meta),
        _summary(meta, features),
        _legend(),
        '<div class="layout"><div id="map" role="region" aria-label="alert map"></div>',
        _side_panel(),
        "</div>",
        _toolbar(),
        "<h2>Alerts</h2>",
        _table(features),
        f'<script type="application/json" id="mw-data">{_json_for_script(payload)}</script>',
        f"<script>{_static('leaflet/leaflet.js')}</script>",
        f"<script>{_static('review.js')}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


# ------------------------------------------------------------------------------------ helpers


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _static(name: str) -> str:
    return resources.files("detection.alerts").joinpath("static").joinpath(name).read_text("utf-8")


def _leaflet_css() -> str:
    """Leaflet's CSS with its images inlined as data URIs."""
    folder = resources.files("detection.alerts").joinpath("static").joinpath("leaflet")

    def inline(match: re.Match[str]) -> str:
        data = folder.joinpath(match.group(1)).read_bytes()
        return f"url(data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    return _CSS_URL.sub(inline, folder.joinpath("leaflet.css").read_text("utf-8"))


def _json_for_script(value: Any) -> str:
    """JSON safe inside ``<script>``: no ``</script>``, no ``<!--``, no entity surprises."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _overlay_entry(name: str, overlay: Overlay) -> dict[str, Any]:
    return {
        "name": name,
        "uri": _data_uri(overlay.image, overlay.mime),
        "bbox": [round(v, 7) for v in overlay.bbox],
    }


def _chips(evidence: Any, root: Path, inline: bool) -> dict[str, str]:
    """The chip images of one alert: data URIs (or relative paths) by evidence key."""
    if not isinstance(evidence, Mapping):
        return {}
    out: dict[str, str] = {}
    for key in EVIDENCE_IMAGES:
        rel = evidence.get(key)
        if not isinstance(rel, str) or not rel or "://" in rel or rel.startswith(("/", "\\")):
            continue
        file = root / rel
        if not file.is_file():
            log.warning("review page: evidence %s not found under %s; left out", rel, root)
            continue
        if inline:
            mime = _MIME.get(file.suffix.lower(), "application/octet-stream")
            out[key] = _data_uri(file.read_bytes(), mime)
        else:
            out[key] = Path(rel).as_posix()
    return out


def _coverage_of_period(
    coverage_fc: Mapping[str, Any] | None, period: Any
) -> list[Mapping[str, Any]]:
    if coverage_fc is None:
        return []
    features = list(coverage_fc["features"])
    end = period.get("end") if isinstance(period, Mapping) else None
    if end and any("period_end" in (f.get("properties") or {}) for f in features):
        features = [f for f in features if (f.get("properties") or {}).get("period_end") == end]
    return [
        {"type": "Feature", "geometry": f.get("geometry"), "properties": f.get("properties") or {}}
        for f in features
    ]


def _span(value: Any) -> str:
    if isinstance(value, Mapping):
        return f"{value.get('start', '?')} to {value.get('end', '?')}"
    return "none" if value is None else str(value)


def _run_warning(meta: Mapping[str, Any]) -> str:
    """A banner when the run was partial or failed, or a period was not observed."""
    lines = []
    outcome = meta.get("outcome")
    if outcome in ("partial", "failed"):
        lines.append(
            f"This run is {outcome.upper()}: {meta.get('failed_units', '?')} chip-period unit(s) "
            "failed (run.json and 'minewatch runs show' name them). Where a unit failed nothing "
            "was observed: no alert there does not mean no mining."
        )
    unobserved = list(meta.get("unobserved_periods") or [])
    if unobserved:
        lines.append(
            f"Not observed: {', '.join(unobserved)} (no imagery yet, all cloud, or every unit "
            "failed). Sites known before are kept with their last status and an observed "
            "share of 0; their absence is not evidence of no mining."
        )
    if meta.get("dropped_scenes"):
        lines.append(
            f"{meta['dropped_scenes']} scene read(s) could not be made and were left out of the "
            "composites (run.json lists them with the reason)."
        )
    if not lines:
        return ""
    items = "".join(f"<p>{_e(line)}</p>" for line in lines)
    return (
        '<div class="run-warning" role="alert" style="border:2px solid #b00;background:#fee;'
        f'padding:.4rem .8rem;margin:.4rem 0">{items}</div>'
    )


def _summary(meta: Mapping[str, Any], features: list[Mapping[str, Any]]) -> str:
    model = meta.get("model") or {}
    model_text = (
        f"{model.get('name', '?')} {model.get('version', '')} (sha256 "
        f"{str(model.get('sha256', ''))[:12]})"
        if isinstance(model, Mapping)
        else str(model)
    )
    props = [f.get("properties") or {} for f in features]
    levels = meta.get("confidence_levels") or {}
    rows = [
        ("Period", _span(meta.get("period"))),
        ("Previous period", _span(meta.get("previous_period"))),
        ("Model", model_text),
        ("Source", meta.get("source", "")),
        ("Run", f"{meta.get('run_id', '')} at {meta.get('generated_at', '')}"),
        ("Alerts", str(len(features))),
        ("By class", _counts(Counter(str(p.get("alert_class")) for p in props))),
        ("By status", _counts(Counter(str(p.get("status")) for p in props))),
        ("By confidence", _counts(Counter(str(p.get("confidence_level")) for p in props))),
        (
            "Confidence levels",
            ", ".join(f"{k} >= {v}" for k, v in levels.items()) if levels else "not recorded",
        ),
    ]
    items = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f'<dl class="summary">{items}</dl>'


def _counts(counter: Counter[str]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counter.items())) or "none"


def _legend() -> str:
    spans = "".join(f'<span style="background:{c}"></span>{_e(t)}' for c, t in _LEGEND)
    return f'<p class="legend">{spans}; dashed outline: {_e(CONFIDENCE_LEVELS[0])} confidence</p>'


def _side_panel() -> str:
    figures = []
    for key, caption in (
        ("before_true_colour", "before, true colour"),
        ("after_true_colour", "after, true colour"),
        ("before_swir", "before, SWIR false colour"),
        ("after_swir", "after, SWIR false colour"),
    ):
        figures.append(
            f'<figure><img id="d-{key}" alt="{_e(caption)}" hidden>'
            f'<span class="missing" id="d-{key}-missing">no image</span>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    fields = "".join(
        f'<dt>{_e(label)}</dt><dd id="d-{key}"></dd>'
        for key, label in (
            ("site", "site"),
            ("what", "what"),
            ("where", "where"),
            ("place", "place"),
            ("confidence", "confidence"),
            ("observed", "observed"),
            ("dates", "detected"),
            ("review", "review"),
        )
    )
    return (
        '<aside id="side"><p id="detail-empty" class="empty">Click an alert on the map or in '
        "the table.</p>"
        f'<div id="detail" hidden><dl>{fields}</dl>'
        '<div class="actions"><button type="button" class="confirm" data-decision="confirmed">'
        'Confirm</button><button type="button" class="reject" data-decision="rejected">Reject'
        '</button><button type="button" data-decision="unreviewed">Undo</button></div>'
        f'<div class="chips">{"".join(figures)}</div>'
        '<dl><dt>before</dt><dd id="d-before-period"></dd><dt>after</dt>'
        '<dd id="d-after-period"></dd></dl>'
        '<pre class="scenes" id="d-before-scenes"></pre><pre class="scenes" id="d-after-scenes">'
        "</pre>"
        '<label for="d-note">Note</label><textarea id="d-note"></textarea></div></aside>'
    )


def _toolbar() -> str:
    return (
        '<div class="toolbar"><label>Reviewer <input id="reviewer" type="text" size="16">'
        '</label><span id="review-counts"></span>'
        '<button type="button" id="export">Export decisions (GeoJSON)</button>'
        '<span class="empty">then: minewatch alerts import-review FILE --out labels.gpkg'
        "</span></div>"
    )


def _legal_text(props: Mapping[str, Any]) -> str:
    """``titled: 850.123/2019 (CONCESSÃO DE LAVRA, 50%)``: the status and the titles behind it."""
    status = str(props.get("legal_status") or "unknown")
    legal = props.get("legal") if isinstance(props.get("legal"), Mapping) else {}
    titles = [
        f"{t.get('title_id')} ({t.get('phase')}, {float(t.get('share') or 0):.0%})"
        for t in (legal or {}).get("titles") or []
    ]
    closed = [str(a.get("aoi_name")) for a in (legal or {}).get("closed_areas") or []]
    extra = "; ".join([*closed, *titles])
    return f"{status}: {extra}" if extra else status


def _table(features: list[Mapping[str, Any]]) -> str:
    if not features:
        return '<p class="empty">No alerts in this period.</p>'
    head = "".join(
        f'<th data-key="{key}" data-type="{"number" if kind in ("number", "status") else "text"}">'
        f'<button type="button">{_e(label)}</button></th>'
        for key, label, kind in REVIEW_COLUMNS
    )
    rows = []
    for feature in features:
        props = feature.get("properties") or {}
        sid = str(feature.get("id", props.get("site_id")))
        cells = []
        for key, _, kind in REVIEW_COLUMNS:
            value: Any = sid if key == "site_id" else props.get(key)
            if kind == "status":
                sort = str(STATUS_ORDER.get(str(value), len(STATUS_ORDER)))
            elif kind == "number":
                sort = str(value if isinstance(value, (int, float)) else 0)
            else:
                sort = "" if value is None else str(value)
            if key == "confidence":
                shown = f"{value} ({props.get('confidence_level', '')})"
            elif key == "observed_fraction" and isinstance(value, (int, float)):
                shown = f"{value:.0%}"
            elif key == "legal_status":
                shown = _legal_text(props)
            else:
                shown = "" if value is None else str(value)
            css = ' class="num"' if kind == "number" else ""
            cells.append(f'<td data-key="{key}" data-sort="{_e(sort)}"{css}>{_e(shown)}</td>')
        cells.append(
            '<td class="actions"><button type="button" class="confirm" '
            'data-decision="confirmed">Confirm</button><button type="button" class="reject" '
            'data-decision="rejected">Reject</button></td>'
        )
        cls = _e(props.get("alert_class"))
        rows.append(
            f'<tr id="site-{_e(sid)}" data-site-id="{_e(sid)}" class="cls-{cls}">'
            f"{''.join(cells)}</tr>"
        )
    return (
        f'<table id="alerts"><thead><tr>{head}<th>decision</th></tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
