"""The report's figures: the trend of a reserve (area, change, observation), the hot-spot map
and the fastest-growing sites, drawn with matplotlib (Agg; no pyplot state) from the report's
tables and rendered as PNG."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import shapely
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from detection.errors import ConfigError
from detection.report._tables import (
    _CLASS_LABEL,
    CLASSES,
    LOW_OBSERVED,
    Report,
    Reserve,
    _records,
)

_COLOURS = {
    "mining": "#c2570c",
    "mining_light": "#f4a259",
    "deforestation": "#2a7d3a",
    "deforestation_light": "#8fcf8a",
    "observed": "#4a78a8",
    "low": "#b8c7d9",
    "reserve": "#333333",
    "imagery": "#dbe7f3",
}


@dataclass(frozen=True)
class ReportFigure:
    """A rendered figure: its file stem, title (also the image's alt text), caption and PNG."""

    name: str
    title: str
    caption: str
    png: bytes
    figure: Figure


def draw_figures(report: Report, *, dpi: int = 110) -> list[ReportFigure]:
    """Draw the report's figures (matplotlib, Agg; no pyplot state) and render them as PNG.

    Figures: the trend of every reserve together (``trend-all``), the hot-spot map
    (``hotspots``), the sites that grew most (``top-sites``, when any grew), then the trend of
    each reserve with detections or of a layer of several reserves (``trend-<aoi_id>``).

    Args:
        report: the report's tables.
        dpi: resolution of the PNGs.

    Returns:
        The figures, in the order the report shows them.

    Raises:
        ConfigError: ``dpi`` is not positive.
    """
    if dpi <= 0:
        raise ConfigError(f"dpi {dpi!r}: expected a positive number")
    out: list[ReportFigure] = []
    all_res = report.reserves[-1]
    several = len(report.reserves) > 2
    all_title = (
        f"All {len(report.reserves) - 1} reserves" if several else report.reserves[0].aoi_name
    )
    out.append(_trend_figure(report, all_res, name="trend-all", heading=all_title, dpi=dpi))
    out.append(_hotspot_figure(report, dpi=dpi))
    if len(report.top_sites):
        out.append(_top_figure(report, dpi=dpi))
    if several:
        with_sites = set(report.sites["aoi_id"].astype(str)) if len(report.sites) else set()
        for res in report.reserves[:-1]:
            if res.aoi_id in with_sites:
                out.append(
                    _trend_figure(
                        report,
                        res,
                        name=f"trend-{_slug(res.aoi_id)}",
                        heading=res.aoi_name,
                        dpi=dpi,
                    )
                )
    return out


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in text)[:60] or "reserve"


def _render(fig: Figure, *, dpi: int) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white", metadata={"Software": None})
    # keep the layout just computed: saving again (PDF) need not lay it out a second time
    fig.set_layout_engine("none")
    return buf.getvalue()


def _trend_figure(
    report: Report, res: Reserve, *, name: str, heading: str, dpi: int
) -> ReportFigure:
    table = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    labels = [p.label for p in report.periods]
    n = len(labels)
    x = np.arange(n)
    by_cls = {
        cls: table[table["alert_class"] == cls].set_index("period").reindex(labels)
        for cls in CLASSES
    }
    first = by_cls["mining"]
    state = first["observation"].astype(str).to_numpy()
    share = first["observed_share"].astype(float).to_numpy()
    imagery = first["imagery_share"].astype(float).to_numpy()
    comparison = first["comparison"].astype(str).to_numpy()
    unseen = state == "not_observed"
    low = (~unseen) & (share < LOW_OBSERVED)

    fig = Figure(figsize=(9.0, 7.6), layout="constrained")
    axes = fig.subplots(3, 1, sharex=True, height_ratios=[3.0, 2.4, 1.3])
    title = f"{heading}: mining and forest clearing detected, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    width = 0.38

    _area_panel(axes[0], by_cls, x, low=low, unseen=unseen, width=width)
    _change_panel(
        axes[1], by_cls, x, low=low, unseen=unseen, comparison=comparison, width=width
    )
    _observation_panel(axes[2], labels, share, imagery, low=low, unseen=unseen)
    caption = (
        f"{heading}: hectares of mining and forest clearing detected inside the reserve per period "
        f"({report.period_range}), new and expanding sites, and the observed share. Hatched: "
        f"under {LOW_OBSERVED:.0%} observed (a lower bound); 'not observed' periods have no data."
    )
    return ReportFigure(name, title, caption, _render(fig, dpi=dpi), fig)


def _area_panel(
    ax: Axes,
    by_cls: dict[str, Any],
    x: np.ndarray,
    *,
    low: np.ndarray,
    unseen: np.ndarray,
    width: float,
) -> None:
    """Trend panel 1: the area detected inside the reserve per period and class."""
    top = 0.0
    for k, cls in enumerate(CLASSES):
        vals = by_cls[cls]["area_ha"].astype(float).to_numpy()
        pos = x + (k - 0.5) * width
        ok = ~np.isnan(vals)
        bars = ax.bar(pos[ok], vals[ok], width, color=_COLOURS[cls], label=f"{_CLASS_LABEL[cls]}")
        for bar, is_low in zip(bars, low[ok], strict=True):
            if is_low:
                bar.set_hatch("//")
                bar.set_edgecolor("white")
        for p, v, is_low in zip(pos[ok], vals[ok], low[ok], strict=True):
            ax.annotate(
                f"≥{v:,.1f}" if is_low else f"{v:,.1f}",
                (p, v),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top = max(top, float(np.nanmax(vals)) if ok.any() else 0.0)
    ax.set_ylim(0, max(1.0, top * 1.35))
    _mark_unseen(ax, x, unseen)
    ax.set_ylabel("area inside the reserve (ha)")
    ax.set_title("Area of active sites detected in each period", fontsize=10, loc="left")
    handles, _ = ax.get_legend_handles_labels()
    handles += _observation_handles(bool(low.any()), bool(unseen.any()))
    ax.legend(handles=handles, loc="upper left", fontsize=8, frameon=False, ncol=2)
    ax.grid(axis="y", alpha=0.3)


def _change_panel(
    ax: Axes,
    by_cls: dict[str, Any],
    x: np.ndarray,
    *,
    low: np.ndarray,
    unseen: np.ndarray,
    comparison: np.ndarray,
    width: float,
) -> None:
    """Trend panel 2: new sites and growth of expanding ones since the previous period."""
    top = 0.0
    for k, cls in enumerate(CLASSES):
        new = by_cls[cls]["new_ha"].astype(float).to_numpy()
        grow = by_cls[cls]["expanding_growth_ha"].astype(float).to_numpy()
        pos = x + (k - 0.5) * width
        ok = ~np.isnan(new)
        new_bars = ax.bar(
            pos[ok], new[ok], width, color=_COLOURS[cls], label=f"new {_CLASS_LABEL[cls]} sites"
        )
        grow_bars = ax.bar(
            pos[ok],
            grow[ok],
            width,
            bottom=new[ok],
            color=_COLOURS[f"{cls}_light"],
            label=f"growth of expanding {_CLASS_LABEL[cls]} sites",
        )
        for bars in (new_bars, grow_bars):
            for bar, is_low in zip(bars, low[ok], strict=True):
                if is_low:
                    bar.set_hatch("//")
                    bar.set_edgecolor("white")
        sums = np.where(ok, np.nan_to_num(new) + np.nan_to_num(grow), np.nan)
        top = max(top, float(np.nanmax(sums)) if ok.any() else 0.0)
        n_new = by_cls[cls]["new_sites"].to_numpy()
        n_exp = by_cls[cls]["expanding_sites"].to_numpy()
        for i in np.flatnonzero(ok):
            ax.annotate(
                f"{int(n_new[i])}+{int(n_exp[i])}",
                (pos[i], sums[i]),
                xytext=(0, 2),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_ylim(0, max(1.0, top * 1.3))
    for i in np.flatnonzero(comparison == "baseline"):
        ax.text(
            x[i],
            ax.get_ylim()[1] * 0.5,
            "baseline:\nfirst period scanned",
            ha="center",
            va="center",
            fontsize=8,
            color="0.35",
        )
    _mark_unseen(ax, x, unseen & (comparison != "baseline"))
    ax.set_ylabel("area added (ha)")
    ax.set_title(
        "Change since the previous period: new sites and growth of expanding ones "
        "(labels: new + expanding sites)",
        fontsize=10,
        loc="left",
    )
    ax.legend(loc="upper left", fontsize=7, frameon=False, ncol=2)
    ax.grid(axis="y", alpha=0.3)


def _observation_panel(
    ax: Axes,
    labels: list[str],
    share: np.ndarray,
    imagery: np.ndarray,
    *,
    low: np.ndarray,
    unseen: np.ndarray,
) -> None:
    """Trend panel 3: the clear share of the imaged area per period, with the period labels."""
    n = len(labels)
    x = np.arange(n)
    colours = [_COLOURS["low"] if lo else _COLOURS["observed"] for lo in low | unseen]
    ax.bar(x, share * 100, 0.6, color=colours)
    for j in range(n):
        text = "not observed" if unseen[j] else f"{share[j]:.0%}"
        if not unseen[j] and imagery[j] < 0.99:
            text += f"\nof {imagery[j]:.0%} imaged"
        ax.annotate(
            text,
            (x[j], share[j] * 100),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
            color="#a00000" if unseen[j] else "black",
        )
    ax.axhline(LOW_OBSERVED * 100, color="0.5", lw=0.8, ls="--")
    ax.set_ylim(0, 150)
    ax.set_yticks([0, 50, 100])
    ax.set_ylabel("observed (%)")
    ax.set_title(
        "Clear (cloud-free) share of the imaged area of the reserve", fontsize=10, loc="left"
    )
    ax.set_xticks(x, labels)
    ax.set_xlabel("period")
    ax.set_xlim(-0.6, n - 0.4)


def _observation_handles(low: bool, unseen: bool) -> list[Any]:
    handles: list[Any] = []
    if low:
        handles.append(
            Patch(
                facecolor="0.6",
                hatch="//",
                edgecolor="white",
                label=f"under {LOW_OBSERVED:.0%} observed: a lower bound",
            )
        )
    if unseen:
        handles.append(
            Patch(facecolor="none", hatch="xx", edgecolor="0.6", label="not observed: no data")
        )
    return handles


def _mark_unseen(ax: Axes, x: np.ndarray, unseen: np.ndarray) -> None:
    ymax = ax.get_ylim()[1]
    for i in np.flatnonzero(unseen):
        ax.bar(x[i], ymax, 0.85, facecolor="none", edgecolor="0.6", hatch="xx", lw=0.5)
        ax.text(
            x[i],
            ymax * 0.5,
            "not observed",
            rotation=90,
            ha="center",
            va="center",
            fontsize=9,
            color="#a00000",
            bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
        )


def _hotspot_figure(report: Report, *, dpi: int) -> ReportFigure:
    sites = report.sites
    latest = (
        sites.sort_values(["period_end", "site_id"], kind="stable").groupby("site_id").tail(1)
        if len(sites)
        else sites
    )
    two = len(latest) > 0
    boxes = [tuple(report.aois.total_bounds)]
    if report.footprint is not None:
        boxes.append(report.footprint.bounds)
    if two:
        boxes.append(tuple(latest.total_bounds))
    overview = _padded(_union_bounds(boxes), 0.04)
    ratio = _display_ratio(overview)
    panel_w = 5.2
    height = min(max(panel_w * ratio, 3.2), 7.5) + 1.7
    fig = Figure(figsize=(panel_w * (2 if two else 1) + 0.8, height), layout="constrained")
    axes = fig.subplots(1, 2 if two else 1, squeeze=False)[0]
    title = f"Hot spots: latest extent of every site detected, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    ax = axes[0]
    _map_base(ax, report, overview)
    handles = _map_handles(report)
    if two:
        areas = latest["area_ha"].astype(float).to_numpy()
        scale = 220.0 / max(float(np.nanmax(areas)), 1.0)
        cents = shapely.centroid(latest.geometry.to_numpy())
        for cls in CLASSES:
            sel = (latest["alert_class"] == cls).to_numpy()
            if sel.any():
                ax.scatter(
                    shapely.get_x(cents[sel]),
                    shapely.get_y(cents[sel]),
                    s=np.maximum(areas[sel] * scale, 12.0),
                    c=_COLOURS[cls],
                    alpha=0.75,
                    edgecolors="black",
                    linewidths=0.4,
                    zorder=4,
                )
        ax.set_title("All reserves (circle area ~ site area)", fontsize=10, loc="left")
        size_handles = [
            Line2D(
                [],
                [],
                ls="",
                marker="o",
                markersize=math.sqrt(max(a * scale, 12.0)),
                markerfacecolor="0.7",
                markeredgecolor="black",
                label=f"{a:g} ha",
            )
            for a in _nice_sizes(float(np.nanmax(areas)))
        ]
        class_handles = [
            Patch(facecolor=_COLOURS[c], edgecolor="black", label=_CLASS_LABEL[c]) for c in CLASSES
        ]
        handles = class_handles + size_handles + handles
        # zoom on the sites, squarish, at least 2 km across
        zoom = _squarish(_padded(tuple(latest.total_bounds), 0.12), min_km=2.0)
        axz = axes[1]
        _map_base(axz, report, zoom)
        for cls in CLASSES:
            sel = latest[latest["alert_class"] == cls]
            if len(sel):
                sel.plot(ax=axz, color=_COLOURS[cls], edgecolor="black", linewidth=0.4, zorder=4)
        for row in _records(report.top_sites.head(5)):
            axz.annotate(
                f"#{row['rank']}",
                (row["lon"], row["lat"]),
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=8,
                fontweight="bold",
                zorder=5,
            )
        axz.set_title(
            "Where the sites are (outlines; #n: fastest-growing)", fontsize=10, loc="left"
        )
        ax.add_patch(_rect(zoom, edgecolor="#a00000", facecolor="none", lw=1.2, zorder=5))
        handles.append(Patch(facecolor="none", edgecolor="#a00000", label="zoomed area"))
    else:
        ax.set_title("No site detected in the periods reported", fontsize=10, loc="left")
    fig.legend(
        handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False
    )
    caption = (
        f"Reserve outlines, the area with imagery, and the latest extent of each site detected in "
        f"{report.period_range}, coloured by class and sized by area. No background tiles: the map "
        "is drawn from the run's own layers."
    )
    return ReportFigure("hotspots", title, caption, _render(fig, dpi=dpi), fig)


Bounds = tuple[float, float, float, float]


def _union_bounds(boxes: Sequence[Sequence[float]]) -> Bounds:
    arr = np.asarray(boxes, dtype=float)
    return (
        float(arr[:, 0].min()),
        float(arr[:, 1].min()),
        float(arr[:, 2].max()),
        float(arr[:, 3].max()),
    )


def _padded(bounds: Sequence[float], share: float) -> Bounds:
    x0, y0, x1, y1 = (float(v) for v in bounds)
    pad = max(x1 - x0, y1 - y0, 1e-4) * share
    return (x0 - pad, y0 - pad, x1 + pad, y1 + pad)


def _lon_factor(bounds: Bounds) -> float:
    return max(math.cos(math.radians((bounds[1] + bounds[3]) / 2)), 0.05)


def _display_ratio(bounds: Bounds) -> float:
    """Height / width of ``bounds`` drawn with equal ground distances."""
    x0, y0, x1, y1 = bounds
    return (y1 - y0) / max((x1 - x0) * _lon_factor(bounds), 1e-9)


def _squarish(bounds: Bounds, *, min_km: float) -> Bounds:
    """Widen the narrow side of ``bounds`` to at least 60 % of the wide one and ``min_km``."""
    x0, y0, x1, y1 = bounds
    f = _lon_factor(bounds)
    w_km, h_km = (x1 - x0) * f * 111.32, (y1 - y0) * 111.32
    target_w = max(w_km, 0.6 * h_km, min_km)
    target_h = max(h_km, 0.6 * w_km, min_km)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    dx, dy = target_w / 111.32 / f / 2, target_h / 111.32 / 2
    return (cx - dx, cy - dy, cx + dx, cy + dy)


def _rect(bounds: tuple[float, float, float, float], **kwargs: Any) -> Any:
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = bounds
    return Rectangle((x0, y0), x1 - x0, y1 - y0, **kwargs)


def _map_handles(report: Report) -> list[Any]:
    handles: list[Any] = [
        Patch(facecolor="#f3efe6", edgecolor=_COLOURS["reserve"], label="reserve")
    ]
    if report.footprint is not None:
        handles.append(Patch(facecolor=_COLOURS["imagery"], edgecolor="none", label="imagery"))
    return handles


def _map_base(ax: Axes, report: Report, bounds: Bounds) -> None:
    x0, y0, x1, y1 = bounds
    report.aois.plot(ax=ax, facecolor="#f3efe6", edgecolor="none", zorder=1)
    if report.footprint is not None:
        gpd.GeoSeries([report.footprint], crs="EPSG:4326").plot(
            ax=ax, facecolor=_COLOURS["imagery"], edgecolor="none", alpha=0.8, zorder=2
        )
    report.aois.boundary.plot(ax=ax, color=_COLOURS["reserve"], linewidth=0.8, zorder=3)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_aspect(1.0 / _lon_factor(bounds))
    ax.set_xlabel("longitude (°)")
    ax.set_ylabel("latitude (°)")
    ax.tick_params(labelsize=7)
    _scale_bar(ax, bounds)


def _scale_bar(ax: Axes, bounds: tuple[float, float, float, float]) -> None:
    x0, y0, x1, y1 = bounds
    km_per_deg = 111.32 * math.cos(math.radians((y0 + y1) / 2))
    width_km = (x1 - x0) * km_per_deg
    length = max(
        (v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500) if v <= width_km / 4), default=0.5
    )
    bx = x1 - (x1 - x0) * 0.05 - length / km_per_deg
    by = y0 + (y1 - y0) * 0.05
    ax.plot([bx, bx + length / km_per_deg], [by, by], color="black", lw=2.5, zorder=6)
    ax.text(
        bx + length / km_per_deg / 2,
        by + (y1 - y0) * 0.015,
        f"{length:g} km",
        ha="center",
        va="bottom",
        fontsize=8,
        zorder=6,
    )


def _nice_sizes(max_area: float) -> list[float]:
    candidates = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]
    fit = [c for c in candidates if c <= max_area] or [candidates[0]]
    return sorted({fit[-1], fit[max(0, len(fit) - 3)]})


def _top_figure(report: Report, *, dpi: int) -> ReportFigure:
    top = report.top_sites.iloc[::-1]
    fig = Figure(figsize=(9.0, max(3.4, 1.4 + 0.42 * len(top))), layout="constrained")
    ax = fig.subplots()
    title = f"Fastest-growing sites, {report.period_range}"
    fig.suptitle(title, fontsize=13, fontweight="bold")
    y = np.arange(len(top))
    ax.barh(y, top["growth_ha"], color=[_COLOURS[c] for c in top["alert_class"]], height=0.65)
    for yi, g, a in zip(y, top["growth_ha"], top["area_ha"], strict=True):
        ax.annotate(
            f"+{g:,.1f} ha (now {a:,.1f} ha)",
            (g, yi),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    multi = len(report.reserves) > 2
    ax.set_yticks(
        y,
        [
            f"#{r['rank']} {r['site_id']}"
            + (f" ({r['aoi_name']})" if multi else "")
            + (" [buffer]" if r["aoi_relation"] == "buffer" else "")
            for r in _records(top)
        ],
        fontsize=8,
    )
    ax.set_xlim(0, float(top["growth_ha"].max()) * 1.35)
    ax.set_xlabel("area gained over the periods reported (ha)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(
        handles=[Patch(facecolor=_COLOURS[c], label=_CLASS_LABEL[c]) for c in CLASSES],
        loc="lower right",
        fontsize=8,
        frameon=False,
    )
    caption = (
        f"The {len(top)} sites that gained most area over {report.period_range}: area at their "
        "last detection minus their area at the start (before the first period reported, or in "
        "the baseline period when the report starts there; 0 for sites that appeared since). "
        "[buffer]: outside the reserve, within its buffer zone."
    )
    return ReportFigure("top-sites", title, caption, _render(fig, dpi=dpi), fig)
