"""Legal status of a site: is it in an area closed to mining, and does a mining title cover it?

Rules, in order (the first that applies wins):

1. ``prohibited_area``: the site overlaps an AOI whose kind is in ``closed_aoi_kinds``
   (indigenous lands and strict protected areas by default), whatever titles cover it: a title
   does not open a closed area.
2. ``unknown``: no title layer is configured.
3. ``no_title``: no title valid during the alert's period overlaps the site.
4. ``titled``: at least one title overlapping the site is in a phase that allows extraction
   (``extraction_phases``; compared without case or accents).
5. ``title_phase_not_extraction``: titles overlap the site, but none is in such a phase
   (a research authorisation, an application, an area in availability).

Each alert's ``legal`` object says why: the titles overlapping the site (id, phase, holder,
substance, use, state, the share of the site each covers, whether its phase allows extraction),
the share of the site all of them cover, and the closed AOIs it overlaps with their share. Areas
are measured on an equal-area projection (``EPSG:6933``, as the alerts' areas).
"""

from __future__ import annotations

import datetime as dt
import logging
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aoi.geometry import EQUAL_AREA_CRS
from aoi.titles import TITLE_COLUMNS, TitlesConfig
from detection.errors import InputFormatError

log = logging.getLogger(__name__)

#: Values of the ``legal_status`` property, in the order of the rules.
LEGAL_STATUSES: tuple[str, ...] = (
    "prohibited_area", "unknown", "no_title", "titled", "title_phase_not_extraction",
)

#: AOI kinds closed to mining unless the config says otherwise.
DEFAULT_CLOSED_AOI_KINDS: tuple[str, ...] = ("indigenous_land", "strict_protected_area")

#: Phases in which extraction is allowed unless the config says otherwise: ANM's mining
#: concession, prospecting permit (garimpo), licensing and extraction register, and
#: ``extraction`` for generic layers.
DEFAULT_EXTRACTION_PHASES: tuple[str, ...] = (
    "CONCESSÃO DE LAVRA", "LAVRA GARIMPEIRA", "LICENCIAMENTO", "REGISTRO DE EXTRAÇÃO", "extraction",
)

_SHARE_DECIMALS = 4


class LegalConfig(BaseModel):
    """The ``legal`` section of a scan config.

    Attributes:
        titles: the mining-title layer; None leaves every site outside closed areas ``unknown``.
        closed_aoi_kinds: AOI kinds where mining is prohibited (``aoi_kind`` values; map a
            layer's designations to such a kind with the AOI's ``kind_map``).
        extraction_phases: title phases that allow extraction (case and accents ignored).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    titles: TitlesConfig | None = None
    closed_aoi_kinds: list[str] = Field(default_factory=lambda: list(DEFAULT_CLOSED_AOI_KINDS))
    extraction_phases: list[str] = Field(
        default_factory=lambda: list(DEFAULT_EXTRACTION_PHASES)
    )

    @field_validator("closed_aoi_kinds", "extraction_phases")
    @classmethod
    def _no_blank(cls, value: list[str]) -> list[str]:
        if any(not v.strip() for v in value):
            raise ValueError(f"{value!r}: entries must not be blank")
        return value


def normalise_phase(phase: str) -> str:
    """A phase for comparison: accents removed, case folded, spaces collapsed.

    ``"Concessão de  Lavra"`` and ``"CONCESSAO DE LAVRA"`` both give ``"concessao de lavra"``.
    """
    decomposed = unicodedata.normalize("NFKD", phase)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def assign_legal_status(
    alerts: gpd.GeoDataFrame,
    *,
    aois: gpd.GeoDataFrame,
    titles: gpd.GeoDataFrame | None,
    config: LegalConfig,
    period_end: str | dt.date | None = None,
) -> gpd.GeoDataFrame:
    """Add ``legal_status`` and ``legal`` to each alert (see the module's rules).

    Args:
        alerts: sites with ``geometry``; ``period_end`` per row when the table has it.
        aois: the AOI table (``aoi_id``, ``aoi_name``, ``aoi_kind``, ``geometry``).
        titles: the title table (:func:`aoi.titles.load_titles`), or None when no title layer
            is configured.
        config: closed kinds and extraction phases.
        period_end: the day a title must be valid on (``valid_from <= day <= valid_to``) when
            the table has no ``period_end`` column; None: every title counts.

    Returns:
        A copy of ``alerts`` with ``legal_status`` (a value of :data:`LEGAL_STATUSES`) and
        ``legal`` (a JSON-ready dict).

    Raises:
        DetectionError: a table has no CRS, lacks a column, or a geometry is missing.
    """
    _check_legal_inputs(alerts, aois, titles)
    out = alerts.copy()
    n = len(out)
    if n == 0:
        out["legal_status"] = pd.Series([], dtype=object)
        out["legal"] = pd.Series([], dtype=object)
        return out
    sites = _equal_area(out.geometry)
    site_area = shapely.area(sites)
    if (site_area <= 0).any():
        bad = out["site_id"].to_numpy()[site_area <= 0].tolist() if "site_id" in out else "?"
        raise InputFormatError(f"legal status: sites {bad} have no area; expected polygons")
    closed_kinds = set(config.closed_aoi_kinds)
    closed = aois[aois["aoi_kind"].astype(str).isin(closed_kinds)]
    closed_hits = _overlaps(sites, site_area, _equal_area(closed.geometry))
    extraction = {normalise_phase(p) for p in config.extraction_phases}
    days = _days(out, period_end)

    title_hits: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    title_geoms: np.ndarray = np.array([])
    if titles is not None and len(titles):
        title_geoms = _equal_area(titles.geometry)
        title_hits = _overlaps(sites, site_area, title_geoms)

    statuses: list[str] = []
    details: list[dict[str, Any]] = []
    for i in range(n):
        closed_list = _closed_areas(closed, closed_hits[i])
        rows = [] if titles is None else [(j, share, titles.iloc[j]) for j, share in title_hits[i]]
        valid = [(j, share, row) for j, share, row in rows if _valid_on(row, days[i])]
        title_list = _title_entries(valid, extraction)
        title_union_share = 0.0
        if valid:
            union = shapely.union_all(title_geoms[[j for j, _, _ in valid]])
            shared = shapely.area(shapely.intersection(sites[i], union))
            title_union_share = min(1.0, float(shared / site_area[i]))
        statuses.append(_status(closed_list, title_list, title_layer=titles is not None))
        details.append(
            {
                "closed_areas": closed_list,
                "titles": title_list,
                "title_share": None
                if titles is None
                else round(float(title_union_share), _SHARE_DECIMALS),
                "title_layer": titles is not None,
            }
        )
    out["legal_status"] = pd.Series(statuses, index=out.index, dtype=object)
    out["legal"] = pd.Series(details, index=out.index, dtype=object)
    counts = pd.Series(statuses).value_counts().to_dict()
    log.info("legal status of %d site(s): %s", n, counts)
    return out


def _check_legal_inputs(
    alerts: gpd.GeoDataFrame, aois: gpd.GeoDataFrame, titles: gpd.GeoDataFrame | None
) -> None:
    """Raise when a table has no CRS or lacks a column :func:`assign_legal_status` reads."""
    for frame, what, needed in (
        (alerts, "alerts", ()),
        (aois, "aois", ("aoi_id", "aoi_name", "aoi_kind")),
        *(((titles, "titles", TITLE_COLUMNS[:-1]),) if titles is not None else ()),
    ):
        if frame.crs is None:
            raise InputFormatError(f"legal status: {what} table has no CRS; expected EPSG:4326")
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise InputFormatError(
                f"legal status: {what} lack columns {missing}; "
                f"has {[str(c) for c in frame.columns]}"
            )


def _closed_areas(closed: gpd.GeoDataFrame, hits: list[tuple[int, float]]) -> list[dict[str, Any]]:
    """The ``closed_areas`` entries of one site: each closed AOI it overlaps, with its share."""
    return [
        {
            "aoi_id": str(closed["aoi_id"].iloc[j]),
            "aoi_name": str(closed["aoi_name"].iloc[j]),
            "aoi_kind": str(closed["aoi_kind"].iloc[j]),
            "share": round(share, _SHARE_DECIMALS),
        }
        for j, share in hits
    ]


def _title_entries(
    valid: list[tuple[int, float, pd.Series]], extraction: set[str]
) -> list[dict[str, Any]]:
    """The ``titles`` entries of one site from its valid ``(index, share, title row)``s,
    largest share first (ties by title id)."""
    entries = []
    for _, share, row in sorted(valid, key=lambda t: (-t[1], str(t[2]["title_id"]))):
        entries.append(
            {
                "title_id": str(row["title_id"]),
                "phase": str(row["phase"]),
                "holder": _text(row["holder"]),
                "substance": _text(row["substance"]),
                "use": _text(row["use"]),
                "state": _text(row["state"]),
                "valid_from": _text(row["valid_from"]),
                "valid_to": _text(row["valid_to"]),
                "share": round(share, _SHARE_DECIMALS),
                "extraction_allowed": normalise_phase(str(row["phase"])) in extraction,
            }
        )
    return entries


def _status(
    closed_list: list[dict[str, Any]], title_list: list[dict[str, Any]], *, title_layer: bool
) -> str:
    """The ``legal_status`` by the module's rules, the first that applies."""
    if closed_list:
        return "prohibited_area"
    if not title_layer:
        return "unknown"
    if not title_list:
        return "no_title"
    if any(t["extraction_allowed"] for t in title_list):
        return "titled"
    return "title_phase_not_extraction"


def legal_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """Flat columns of an alert's legal status for tables (CSV, review page): ``legal_status``,
    ``title_ids`` (``;``-joined), ``title_phases`` and ``title_share``."""
    legal = record.get("legal") or {}
    titles = legal.get("titles") or [] if isinstance(legal, Mapping) else []
    return {
        "legal_status": record.get("legal_status") or "unknown",
        "title_ids": ";".join(str(t.get("title_id")) for t in titles),
        "title_phases": ";".join(str(t.get("phase")) for t in titles),
        "title_share": legal.get("title_share") if isinstance(legal, Mapping) else None,
    }


# ------------------------------------------------------------------------------------ helpers


def _equal_area(geoms: gpd.GeoSeries) -> np.ndarray:
    if len(geoms) == 0:
        return np.array([], dtype=object)
    if geoms.isna().any():
        raise InputFormatError("legal status: a geometry is missing; expected polygons")
    projected = geoms.to_crs(EQUAL_AREA_CRS).to_numpy()
    invalid = ~shapely.is_valid(projected)
    if invalid.any():
        projected = projected.copy()
        projected[invalid] = shapely.make_valid(projected[invalid])
    return np.asarray(projected)


def _overlaps(
    sites: np.ndarray, site_area: np.ndarray, others: np.ndarray
) -> list[list[tuple[int, float]]]:
    """For each site, ``(index of other, share of the site it covers)`` where the share > 0."""
    hits: list[list[tuple[int, float]]] = [[] for _ in range(len(sites))]
    if len(others) == 0:
        return hits
    tree = shapely.STRtree(others)
    si, oi = tree.query(sites, predicate="intersects")
    if len(si) == 0:
        return hits
    shared = shapely.area(shapely.intersection(sites[si], others[oi]))
    for s, o, area in zip(si, oi, shared, strict=True):
        share = float(area / site_area[s])
        if share > 1e-9:
            hits[int(s)].append((int(o), min(1.0, share)))
    return hits


def _days(alerts: pd.DataFrame, period_end: str | dt.date | None) -> Sequence[str | None]:
    if "period_end" in alerts.columns:
        return [None if v is None else str(v)[:10] for v in alerts["period_end"]]
    day = period_end.isoformat() if isinstance(period_end, dt.date) else period_end
    return [day] * len(alerts)


def _valid_on(title: pd.Series, day: str | None) -> bool:
    if day is None:
        return True
    start, end = _text(title["valid_from"]), _text(title["valid_to"])
    return (start is None or start <= day) and (end is None or day <= end)


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value)
    return text or None


def statuses_of(values: Iterable[Any]) -> list[str]:
    """``legal_status`` values, ``unknown`` where missing or not one of :data:`LEGAL_STATUSES`."""
    return [v if isinstance(v, str) and v in LEGAL_STATUSES else "unknown" for v in values]
