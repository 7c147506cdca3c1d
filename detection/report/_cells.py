"""The text of the report's table cells, shared by the HTML page and the PDF: numbers with a
dash for no data, sums that skip missing values, the legal-status table."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from detection.report._tables import ALL_ID, Report
from detection.sites import LEGAL_STATUSES


def _fmt(value: Any, spec: str = ",.1f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return "–"
    return format(value, spec)


def _sum(*values: Any) -> float:
    vals = [float(v) for v in values if v is not None and v is not pd.NA and not pd.isna(v)]
    return float(sum(vals)) if vals else float("nan")


def _int_sum(*values: Any) -> int:
    return int(sum(int(v) for v in values if v is not None and not pd.isna(v)))


def _legal_cells(report: Report) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the legal-status table: mining hectares (sites) by status, per
    reserve with detections and period."""
    table = report.legal_by_period
    mining = table[table["alert_class"] == "mining"]
    header = ["reserve", "period", *LEGAL_STATUSES]
    rows = []
    for res in report.reserves:
        sub = mining[mining["aoi_id"] == res.aoi_id]
        if res.aoi_id == ALL_ID and len(report.reserves) <= 2:
            continue
        for period in report.periods:
            cells = sub[sub["period"] == period.label].set_index("legal_status")
            if cells.empty or not cells["sites"].sum():
                continue
            rows.append(
                [res.aoi_name, period.label]
                + [
                    f"{cells.loc[s, 'area_ha']:,.1f} ({int(cells.loc[s, 'sites'])})"
                    if s in cells.index and cells.loc[s, "sites"]
                    else "–"
                    for s in LEGAL_STATUSES
                ]
            )
    return header, rows
