"""Cell values of the tables the rooms read back (GeoPackage, CSV, pandas, JSON): whether a
value is there at all, and dates in the one form every output writes (``YYYY-MM-DD``)."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd

from detection.errors import InputFormatError


def present(value: Any) -> bool:
    """``False`` for None, float NaN and pandas' missing values (``NA``, ``NaT``), else ``True``."""
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    return not (isinstance(value, float) and math.isnan(value))


def iso_date(value: Any) -> str:
    """``YYYY-MM-DD`` from a date, datetime, pandas Timestamp or ISO string (its first ten
    characters: a datetime string gives its date).

    Raises:
        InputFormatError: the value is not a date.
    """
    if isinstance(value, (dt.datetime, pd.Timestamp)):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10]).isoformat()
        except ValueError as exc:
            raise InputFormatError(f"not an ISO date: {value!r}; expected YYYY-MM-DD") from exc
    raise InputFormatError(f"not a date: {value!r} ({type(value).__name__}); expected YYYY-MM-DD")
