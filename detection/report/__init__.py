"""The run report: tables, figures, HTML and PDF."""

from __future__ import annotations

from detection.report._tables import (
    ALL_ID,
    CLASSES,
    DEFAULT_BUFFER_M,
    EQUAL_AREA_CRS,
    LEGAL_COLUMNS,
    LOW_OBSERVED,
    PERIOD_COLUMNS,
    REPORT_FILES,
    TOP_COLUMNS,
    Bounds,
    Report,
    ReportFigure,
    ReportResult,
    Reserve,
    build_report,
    draw_figures,
    render_html,
    write_report,
)

__all__ = [
    "ALL_ID",
    "CLASSES",
    "DEFAULT_BUFFER_M",
    "EQUAL_AREA_CRS",
    "LEGAL_COLUMNS",
    "LOW_OBSERVED",
    "PERIOD_COLUMNS",
    "REPORT_FILES",
    "TOP_COLUMNS",
    "Bounds",
    "Report",
    "ReportFigure",
    "ReportResult",
    "Reserve",
    "build_report",
    "draw_figures",
    "render_html",
    "write_report",
]
