"""The report as a PDF, for e-mail and print: a cover page with the per-period table, the
figures, and A4 landscape pages for the fastest-growing sites and the legal status."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from detection.report._cells import _fmt, _legal_cells, _sum
from detection.report._figures import ReportFigure
from detection.report._tables import _CLASS_LABEL, LOW_OBSERVED, Report, _records
from tiles.files import atomic_path


def _write_pdf(path: Path, report: Report, figures: Iterable[ReportFigure]) -> None:
    """The figures and the key tables as a PDF (A4 landscape pages for the tables)."""
    meta = {"Title": f"minewatch report: {report.title}", "Creator": "minewatch"}
    with atomic_path(path) as tmp, PdfPages(tmp, metadata=meta) as pdf:
        pdf.savefig(_cover_page(report))
        for fig in figures:
            pdf.savefig(fig.figure)
        if len(report.top_sites):
            pdf.savefig(_table_page(report))
        pdf.savefig(_legal_page(report))


def _cover_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    fig.text(0.05, 0.92, f"minewatch report: {report.title}", fontsize=20, fontweight="bold")
    fig.text(
        0.05,
        0.87,
        f"Periods {report.period_range} ({report.periods[0].start} to {report.periods[-1].end});"
        f" {len(report.reserves) - 1} reserve(s); generated "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC",
        fontsize=11,
        color="0.3",
    )
    notes = (
        "Hectares: area of the sites detected inside each reserve (parts outside apart). "
        "Observed: clear share of the imaged area;\n'not observed' periods have no figure (never "
        f"zero); under {LOW_OBSERVED:.0%} observed the hectares are a lower bound. "
        + (f"{report.baseline} is the baseline (first period scanned)." if report.baseline else "")
    )
    fig.text(0.05, 0.80, notes, fontsize=9, va="top")
    ax = fig.add_axes((0.05, 0.05, 0.9, 0.62))
    ax.axis("off")
    res = report.reserves[-1] if len(report.reserves) > 2 else report.reserves[0]
    sub = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    cells = []
    for period in report.periods:
        rows = sub[sub["period"] == period.label].set_index("alert_class")
        m, d = rows.loc["mining"], rows.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        na = "not observed"
        cells.append(
            [
                period.label,
                na if unseen else f"{m['observed_share']:.0%}",
                f"{m['imagery_share']:.1%}",
                na if unseen else _fmt(m["area_ha"]),
                na if unseen else _fmt(d["area_ha"]),
                "baseline"
                if m["comparison"] == "baseline"
                else _fmt(_sum(m["new_ha"], d["new_ha"])),
                "baseline"
                if m["comparison"] == "baseline"
                else _fmt(_sum(m["expanding_growth_ha"], d["expanding_growth_ha"])),
            ]
        )
    ax.set_title(f"{res.aoi_name}: per period", loc="left", fontsize=12)
    table = ax.table(
        cellText=cells,
        colLabels=[
            "period", "observed", "imaged", "mining (ha)", "forest clearing (ha)", "new sites (ha)",
            "expansion (ha)",
        ],
        loc="upper left",
        cellLoc="right",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(9)
    table.scale(1.0, 1.4)
    return fig


def _table_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.85))
    ax.axis("off")
    ax.set_title(f"Fastest-growing sites, {report.period_range}", loc="left", fontsize=14)
    cells = [
        [
            str(r["rank"]),
            r["site_id"],
            _CLASS_LABEL.get(r["alert_class"], r["alert_class"]),
            r["aoi_name"] + (" (buffer)" if r["aoi_relation"] == "buffer" else ""),
            f"{r['growth_ha']:,.2f}",
            f"{r['area_ha']:,.2f}",
            f"{r['first_period']} / {r['last_period']}",
            r["status"],
            f"{r['lon']:.5f}, {r['lat']:.5f}",
        ]
        for r in _records(report.top_sites)
    ]
    table = ax.table(
        cellText=cells,
        colLabels=[
            "#",
            "site",
            "class",
            "reserve",
            "gained (ha)",
            "area (ha)",
            "periods",
            "status",
            "lon, lat",
        ],
        loc="upper left",
        cellLoc="left",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    return fig


def _legal_page(report: Report) -> Figure:
    fig = Figure(figsize=(11.69, 8.27))
    ax = fig.add_axes((0.03, 0.05, 0.94, 0.85))
    ax.axis("off")
    ax.set_title(
        f"Mining hectares (sites) by legal status, {report.period_range}", loc="left", fontsize=14
    )
    header, rows = _legal_cells(report)
    if not rows:
        ax.text(0.0, 0.9, "No mining site in the periods reported.", fontsize=11)
        return fig
    table = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="left")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.3)
    return fig
