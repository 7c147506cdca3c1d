"""Writing a report: the tables as CSV, the figures as PNG, the HTML page and the PDF, each
file replaced atomically, into a report folder that is refused when it already holds a report
unless ``overwrite``."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detection.errors import OutputExistsError
from detection.report._figures import draw_figures
from detection.report._html import render_html
from detection.report._pdf import _write_pdf
from detection.report._tables import CLASSES, Report, _json_number, build_report
from tiles.files import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

#: Files :func:`write_report` may write into the report folder (``figures/`` too).
REPORT_FILES = (
    "report.html", "reserve_periods.csv", "top_sites.csv", "legal_status.csv", "report.pdf",
)


@dataclass
class ReportResult:
    """What :func:`write_report` wrote."""

    report_dir: Path
    files: list[Path]
    report: Report
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """Machine-readable summary (the CLI's ``--json``)."""
        rep = self.report
        latest = rep.periods[-1].label
        rows = rep.by_period[rep.by_period["period"] == latest]
        per_reserve = []
        for res in rep.reserves:
            sub = rows[rows["aoi_id"] == res.aoi_id]
            entry: dict[str, Any] = {"aoi_id": res.aoi_id, "aoi_name": res.aoi_name}
            for cls in CLASSES:
                val = sub.loc[sub["alert_class"] == cls, "area_ha"]
                entry[f"{cls}_ha"] = _json_number(val.iloc[0]) if len(val) else None
            obs = sub["observed_share"]
            entry["observed_share"] = _json_number(obs.iloc[0]) if len(obs) else None
            entry["observation"] = str(sub["observation"].iloc[0]) if len(sub) else None
            per_reserve.append(entry)
        return {
            "report_dir": str(self.report_dir),
            "files": [str(p) for p in self.files],
            "periods": [p.label for p in rep.periods],
            "reserves": len(rep.reserves) - 1,
            "sites": int(rep.sites["site_id"].nunique()) if len(rep.sites) else 0,
            "latest_period": latest,
            "latest": per_reserve,
            "seconds": round(self.seconds, 2),
        }


def write_report(
    out_dir: Path,
    report_dir: Path | None = None,
    *,
    since: dt.date | None = None,
    pdf: bool = False,
    overwrite: bool = False,
    top_n: int = 10,
    dpi: int = 110,
) -> ReportResult:
    """Build the report of an output folder and write it: HTML, CSVs, PNGs and optionally PDF.

    Args:
        out_dir: the scan's output folder.
        report_dir: where to write (default ``out_dir/report``).
        since: report only the periods ending on or after this day.
        pdf: also write ``report.pdf``.
        overwrite: replace a report already in ``report_dir``.
        top_n: sites in the top-growth table.
        dpi: resolution of the PNG figures.

    Returns:
        The files written and the report's tables.

    Raises:
        DetectionError: the errors of :func:`build_report` (``ConfigError``,
            ``InputNotFoundError``, ``RunStateError``, ``InputFormatError``, ``InputReadError``).
        OutputExistsError: ``report_dir`` holds a report and ``overwrite`` is False.
    """
    started = time.monotonic()
    out_dir = Path(out_dir)
    report_dir = Path(report_dir) if report_dir is not None else out_dir / "report"
    existing = [n for n in REPORT_FILES if (report_dir / n).exists()]
    if existing and not overwrite:
        raise OutputExistsError(
            f"report folder {str(report_dir)!r} already holds a report ({', '.join(existing)}); "
            "pass --overwrite to replace it or --out to write elsewhere"
        )
    report = build_report(out_dir, since=since, top_n=top_n)
    figures = draw_figures(report, dpi=dpi)
    report_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    fig_dir = report_dir / "figures"
    if overwrite and fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    for fig in figures:
        path = fig_dir / f"{fig.name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(fig.png)
        files.append(path)
    csv_periods = report_dir / "reserve_periods.csv"
    write_text_atomic(csv_periods, report.by_period.to_csv(index=False, lineterminator="\n"))
    csv_top = report_dir / "top_sites.csv"
    write_text_atomic(csv_top, report.top_sites.to_csv(index=False, lineterminator="\n"))
    csv_legal = report_dir / "legal_status.csv"
    write_text_atomic(csv_legal, report.legal_by_period.to_csv(index=False, lineterminator="\n"))
    files += [csv_periods, csv_top, csv_legal]
    pdf_path = report_dir / "report.pdf"
    if pdf:
        _write_pdf(pdf_path, report, figures)
        files.append(pdf_path)
    elif overwrite:
        pdf_path.unlink(missing_ok=True)
    html_path = report_dir / "report.html"
    write_text_atomic(html_path, render_html(report, figures, pdf=pdf))
    files.insert(0, html_path)
    seconds = time.monotonic() - started
    log.info("report written to %s in %.1f s", report_dir, seconds)
    return ReportResult(report_dir=report_dir, files=files, report=report, seconds=seconds)
