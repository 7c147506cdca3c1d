"""The report as one self-contained HTML page: figures inlined as ``data:`` PNGs, inline CSS,
no script and no external reference, readable offline."""

from __future__ import annotations

import base64
import datetime as dt
import html
from collections.abc import Sequence
from typing import Any

import pandas as pd

from detection.report._cells import _fmt, _int_sum, _legal_cells, _sum
from detection.report._figures import ReportFigure, _slug
from detection.report._tables import (
    _CLASS_LABEL,
    ALL_ID,
    LOW_OBSERVED,
    Report,
    Reserve,
    _records,
)

_CSS = """
body{font-family:"Segoe UI",Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{border-bottom:2px solid #c2570c;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.5em}
.meta{color:#555}.note{background:#f6f3ea;border-left:4px solid #c2570c;padding:.6em 1em}
table{border-collapse:collapse;margin:.8em 0;font-size:.9em}th,td{border:1px solid #ccc;
padding:.3em .6em;text-align:right}th{background:#f0f0f0}td.l,th.l{text-align:left}
td.unseen{color:#a00000;font-style:italic;background:repeating-linear-gradient(45deg,#fff,#fff 4px,
#eee 4px,#eee 8px)}td.low{background:#eef3f8}
figure{margin:1em 0}figure img{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{color:#555;font-size:.9em}
@media print{body{max-width:none}figure{page-break-inside:avoid}}
"""


def render_html(report: Report, figures: Sequence[ReportFigure], *, pdf: bool = False) -> str:
    """The report as one self-contained HTML page (figures as ``data:`` PNGs, inline CSS).

    Args:
        report: the report's tables.
        figures: the figures of :func:`draw_figures`.
        pdf: mention ``report.pdf`` among the files.

    Returns:
        The page.
    """
    e = html.escape
    figs = {f.name: f for f in figures}
    last = report.runs[-1] if report.runs else {}
    finished = [r for r in report.runs if r["outcome"] != "running"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>minewatch report: {e(report.title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>minewatch report: {e(report.title)}</h1>",
        f'<p class="meta">Periods {e(report.period_range)} '
        f"({report.periods[0].start.isoformat()} to {report.periods[-1].end.isoformat()}); "
        f"{len(report.reserves) - 1} reserve(s); {len(finished)} scan run(s) in the store, the "
        f"last {e(str(last.get('run_id', '?')))} ({e(str(last.get('outcome', '?')))}, "
        f"{e(str(last.get('started_at', '?')))}). Generated "
        f"{dt.datetime.now(dt.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}.</p>",
        '<div class="note"><b>How to read this report.</b> Hectares are the area of the sites '
        "detected by the scans inside each reserve (of a site crossing the boundary, only its part "
        "inside); sites and parts outside but within the "
        f"{report.buffer_m / 1000:g} km buffer zone are counted apart. <i>Observed</i> is the "
        "clear, cloud-free share of the area that had imagery in that period: where nothing was "
        "observed there is no figure (<i>not observed</i>, hatched), never a zero; below "
        f"{LOW_OBSERVED:.0%} observed, hectares are a lower bound (hatched bars). "
        "<i>Imaged</i> is the share of the reserve covered by the scan's imagery. "
        + (
            f"The first period scanned ({e(report.baseline)}) is the baseline: every site "
            "in it is new to the scanner, not necessarily on the ground. "
            if report.baseline
            else ""
        )
        + "Detections are automatic and unreviewed unless analysts confirmed them.</div>",
    ]
    parts += _summary_section(report)
    all_res = report.reserves[-1]
    several = len(report.reserves) > 2
    parts.append(f"<h2>Trend: {e('all reserves' if several else report.reserves[0].aoi_name)}</h2>")
    parts += _figure_html(figs.get("trend-all"))
    parts += _period_table(report, all_res if several else report.reserves[0])
    parts.append("<h2>Hot spots</h2>")
    parts += _figure_html(figs.get("hotspots"))
    parts.append("<h2>Fastest-growing sites</h2>")
    if len(report.top_sites):
        parts += _figure_html(figs.get("top-sites"))
        parts += _top_table(report)
    else:
        parts.append("<p>No site gained area over the periods reported.</p>")
    if several:
        parts.append("<h2>Per reserve</h2>")
        for res in report.reserves[:-1]:
            parts.append(f"<h3>{e(res.aoi_name)} ({e(res.aoi_kind)}, {res.area_ha:,.0f} ha)</h3>")
            fig = figs.get(f"trend-{_slug(res.aoi_id)}")
            if fig is None:
                parts.append("<p>No site detected in the periods reported.</p>")
            else:
                parts += _figure_html(fig)
            parts += _period_table(report, res)
    parts += _legal_section(report)
    parts += _provenance(report, pdf=pdf)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _figure_html(fig: ReportFigure | None) -> list[str]:
    if fig is None:
        return []
    data = base64.b64encode(fig.png).decode("ascii")
    return [
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(fig.title)}">'
        f"<figcaption>{html.escape(fig.caption)}</figcaption></figure>"
    ]


def _summary_section(report: Report) -> list[str]:
    e = html.escape
    latest = report.periods[-1].label
    rows = report.by_period
    out = [
        f"<h2>Summary, latest period {e(latest)}</h2>",
        "<table><tr><th class='l'>reserve</th><th class='l'>kind</th><th>area (ha)</th>"
        "<th>observed</th><th>imaged</th><th>mining (ha)</th><th>forest clearing (ha)</th>"
        f"<th>mining gained over {e(report.period_range)} (ha)</th></tr>",
    ]
    for res in report.reserves:
        sub = rows[(rows["aoi_id"] == res.aoi_id) & (rows["period"] == latest)].set_index(
            "alert_class"
        )
        m = sub.loc["mining"]
        d = sub.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        gain = _mining_gain(report, res.aoi_id)
        cls = (
            " class='unseen'"
            if unseen
            else (" class='low'" if m["observed_share"] < LOW_OBSERVED else "")
        )
        out.append(
            f"<tr><td class='l'>{e(res.aoi_name)}</td><td class='l'>{e(res.aoi_kind)}</td>"
            f"<td>{res.area_ha:,.0f}</td>"
            f"<td{cls}>{'not observed' if unseen else format(m['observed_share'], '.0%')}</td>"
            f"<td>{m['imagery_share']:.1%}</td>"
            f"<td{cls}>{'not observed' if unseen else _fmt(m['area_ha'])}</td>"
            f"<td{cls}>{'not observed' if unseen else _fmt(d['area_ha'])}</td>"
            f"<td>{_fmt(gain)}</td></tr>"
        )
    out.append("</table>")
    if report.outside_sites:
        out.append(
            f"<p>{report.outside_sites} site-period record(s) lie farther than "
            f"{report.buffer_m / 1000:g} km from every reserve and are not counted.</p>"
        )
    if report.failed_chips:
        out.append(
            "<p>Chips that failed (not observed; retried by the next scan): "
            + ", ".join(f"{e(k)} {v}" for k, v in sorted(report.failed_chips.items()))
            + ".</p>"
        )
    return out


def _mining_gain(report: Report, aoi_id: str) -> float:
    """Area gained by the mining sites inside the reserve over the periods reported (the sum of
    their gains, as in ``top_sites.csv``; sites that shrank are not subtracted)."""
    g = report.growth
    sel = (g["alert_class"] == "mining") & (g["aoi_relation"] == "inside") & (g["growth_ha"] > 0)
    if aoi_id != ALL_ID:
        sel &= g["aoi_id"] == aoi_id
    return float(g.loc[sel, "growth_ha"].sum())


def _period_table(report: Report, res: Reserve) -> list[str]:
    e = html.escape
    sub = report.by_period[report.by_period["aoi_id"] == res.aoi_id]
    out = [
        "<table><tr><th class='l'>period</th><th>observed</th><th>imaged</th>"
        "<th>mining (ha)</th><th>forest clearing (ha)</th><th>new sites (ha)</th>"
        "<th>expanding sites (+ha)</th><th>buffer zone (ha)</th></tr>"
    ]
    for period in report.periods:
        rows = sub[sub["period"] == period.label].set_index("alert_class")
        m, d = rows.loc["mining"], rows.loc["deforestation"]
        unseen = m["observation"] == "not_observed"
        low = m["observed_share"] < LOW_OBSERVED
        cls = " class='unseen'" if unseen else (" class='low'" if low else "")

        def cell(val: Any, unseen: bool = unseen, cls: str = cls) -> str:
            return f"<td{cls}>{'not observed' if unseen else val}</td>"

        if m["comparison"] == "baseline":
            new = exp = "<td class='l'>baseline</td>"
        else:
            n_new = _int_sum(m["new_sites"], d["new_sites"])
            n_exp = _int_sum(m["expanding_sites"], d["expanding_sites"])
            new = cell(f"{n_new} ({_fmt(_sum(m['new_ha'], d['new_ha']))})")
            exp = cell(
                f"{n_exp} (+{_fmt(_sum(m['expanding_growth_ha'], d['expanding_growth_ha']))})"
            )
        out.append(
            f"<tr><td class='l'>{e(period.label)}</td>"
            f"{cell(format(m['observed_share'], '.0%'))}<td>{m['imagery_share']:.1%}</td>"
            f"{cell(_fmt(m['area_ha']))}{cell(_fmt(d['area_ha']))}{new}{exp}"
            f"{cell(_fmt(_sum(m['buffer_area_ha'], d['buffer_area_ha'])))}</tr>"
        )
    out.append("</table>")
    return out


def _top_table(report: Report) -> list[str]:
    e = html.escape
    out = [
        "<table><tr><th>#</th><th class='l'>site</th><th class='l'>class</th>"
        "<th class='l'>reserve</th><th>gained (ha)</th><th>area now (ha)</th>"
        "<th class='l'>first / last period</th><th class='l'>status</th><th>observed</th>"
        "<th>lon, lat</th></tr>"
    ]
    for r in _records(report.top_sites):
        where = e(r["aoi_name"]) + (" (buffer zone)" if r["aoi_relation"] == "buffer" else "")
        obs = (
            "–"
            if r["observed_fraction"] is None or pd.isna(r["observed_fraction"])
            else f"{r['observed_fraction']:.0%}"
        )
        out.append(
            f"<tr><td>{r['rank']}</td><td class='l'>{e(r['site_id'])}</td>"
            f"<td class='l'>{e(_CLASS_LABEL.get(r['alert_class'], r['alert_class']))}</td>"
            f"<td class='l'>{where}</td><td>{r['growth_ha']:,.2f}</td><td>{r['area_ha']:,.2f}</td>"
            f"<td class='l'>{e(r['first_period'])} / {e(r['last_period'])}</td>"
            f"<td class='l'>{e(r['status'])}</td><td>{obs}</td>"
            f"<td>{r['lon']:.5f}, {r['lat']:.5f}</td></tr>"
        )
    out.append("</table>")
    return out


def _legal_section(report: Report) -> list[str]:
    e = html.escape
    header, rows = _legal_cells(report)
    out = [
        "<h2>Legal status</h2>",
        "<p>Mining hectares (sites) of each reserve and its buffer zone by legal status: "
        "<i>prohibited_area</i> (in an area closed to mining), <i>no_title</i>, <i>titled</i> "
        "(a title in a phase that allows extraction), <i>title_phase_not_extraction</i> (only "
        "research or application titles), <i>unknown</i> (no title layer). All classes: "
        "<code>legal_status.csv</code>.</p>",
    ]
    if not rows:
        return [*out, "<p>No mining site in the periods reported.</p>"]
    out.append(
        "<table><tr>"
        + "".join(f"<th class='l'>{e(h)}</th>" if i < 2 else f"<th>{e(h)}</th>"
                  for i, h in enumerate(header))
        + "</tr>"
    )
    for row in rows:
        out.append(
            "<tr>"
            + "".join(f"<td class='l'>{e(c)}</td>" if i < 2 else f"<td>{e(c)}</td>"
                      for i, c in enumerate(row))
            + "</tr>"
        )
    out.append("</table>")
    return out


def _provenance(report: Report, *, pdf: bool) -> list[str]:
    e = html.escape
    files = ["reserve_periods.csv", "top_sites.csv", "figures/*.png"] + (
        ["report.pdf"] if pdf else []
    )
    out = [
        "<h2>Sources</h2>",
        f"<p>Computed from <code>{e(report.out_dir.name or str(report.out_dir))}/runs.sqlite</code>"
        " (site history, runs) and the <code>aois</code> and <code>coverage</code> layers of "
        "<code>alerts.gpkg</code>. The same figures: "
        + ", ".join(f"<code>{f}</code>" for f in files)
        + ".</p>",
        "<table><tr><th class='l'>run</th><th class='l'>started</th><th class='l'>outcome</th>"
        "<th class='l'>period</th><th>units computed</th><th>reused</th><th>failed</th></tr>",
    ]
    for r in report.runs[-12:]:
        out.append(
            f"<tr><td class='l'>{e(str(r['run_id']))}</td>"
            f"<td class='l'>{e(str(r['started_at']))}</td>"
            f"<td class='l'>{e(str(r['outcome']))}</td>"
            f"<td class='l'>{e(str(r['period_start']))}..{e(str(r['period_end']))}</td>"
            f"<td>{r['units_computed'] or 0}</td><td>{r['units_reused'] or 0}</td>"
            f"<td>{r['units_failed'] or 0}</td></tr>"
        )
    out.append("</table>")
    return out
