"""Periods a scan compares: calendar quarters by default, or months, years, custom ranges."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Period:
    """A closed date range ``[start, end]``; ``label`` names it in file names and tables."""

    start: dt.date
    end: dt.date
    label: str

    def __post_init__(self) -> None:
        if self.end < self.start:
            raise ValueError(f"period {self.label}: end {self.end} is before start {self.start}")

    def contains(self, when: dt.datetime | dt.date) -> bool:
        day = when.date() if isinstance(when, dt.datetime) else when
        return self.start <= day <= self.end

    def as_dict(self) -> dict[str, str]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat()}


def quarter(year: int, q: int) -> Period:
    """The calendar quarter ``q`` (1..4) of ``year``."""
    if q not in (1, 2, 3, 4):
        raise ValueError(f"quarter {q!r}: expected 1, 2, 3 or 4")
    start = dt.date(year, 3 * q - 2, 1)
    end_month = 3 * q
    end = (dt.date(year + (end_month == 12), end_month % 12 + 1, 1)) - dt.timedelta(days=1)
    return Period(start, end, f"{year}Q{q}")


def month(year: int, m: int) -> Period:
    """The calendar month ``m`` of ``year``."""
    start = dt.date(year, m, 1)
    end = dt.date(year + (m == 12), m % 12 + 1, 1) - dt.timedelta(days=1)
    return Period(start, end, f"{year}-{m:02d}")


def year(y: int) -> Period:
    return Period(dt.date(y, 1, 1), dt.date(y, 12, 31), f"{y}")


def periods_between(start: dt.date, end: dt.date, *, kind: str = "quarter") -> list[Period]:
    """Every period of ``kind`` (``quarter``, ``month`` or ``year``) that overlaps ``[start, end]``.

    Raises:
        ValueError: ``kind`` is unknown or ``end`` precedes ``start``.
    """
    if end < start:
        raise ValueError(f"period range: end {end} is before start {start}")
    out: list[Period] = []
    if kind == "quarter":
        y, q = start.year, (start.month - 1) // 3 + 1
        while True:
            p = quarter(y, q)
            if p.start > end:
                break
            out.append(p)
            y, q = (y + 1, 1) if q == 4 else (y, q + 1)
    elif kind == "month":
        y, m = start.year, start.month
        while True:
            p = month(y, m)
            if p.start > end:
                break
            out.append(p)
            y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    elif kind == "year":
        out = [year(y) for y in range(start.year, end.year + 1)]
    else:
        raise ValueError(f"period kind {kind!r}: expected 'quarter', 'month' or 'year'")
    return out
