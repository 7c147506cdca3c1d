"""The run report: tables, figures, HTML and PDF.

Rooms: ``_read`` (the output folder: run store, GeoPackage layers, run.json), ``_tables`` (the
report's tables, :func:`build_report`), ``_figures`` (PNG figures), ``_cells`` (table cell text
shared by the page and the PDF), ``_html`` (the page), ``_pdf`` and ``_write``
(:func:`write_report`: every file of a report folder).
"""

from __future__ import annotations

from detection.report._figures import Bounds, ReportFigure, draw_figures
from detection.report._html import render_html
from detection.report._read import DEFAULT_BUFFER_M
from detection.report._tables import (
    ALL_ID,
    CLASSES,
    EQUAL_AREA_CRS,
    LEGAL_COLUMNS,
    LOW_OBSERVED,
    PERIOD_COLUMNS,
    TOP_COLUMNS,
    Report,
    Reserve,
    build_report,
)
from detection.report._write import REPORT_FILES, ReportResult, write_report

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
