"""The ``periods`` section: fixed ranges, rolling windows (``last: N`` up to ``end``/today), and
the errors of each, named by key with the fix."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

import tiles.config
from detection.errors import ConfigError
from detection.runs import load_config
from tiles.config import PeriodsConfig, utc_today


def labels(config: PeriodsConfig, today: dt.date) -> list[str]:
    return [p.label for p in config.resolve(today=today)]


# ---------------------------------------------------------------------------- rolling windows
@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2025, 5, 15), ["2024Q3", "2024Q4", "2025Q1", "2025Q2"]),
        # the first day of a quarter: the quarter just begun is included (still running)
        (dt.date(2025, 4, 1), ["2024Q3", "2024Q4", "2025Q1", "2025Q2"]),
        # the last day of a quarter: that quarter is the newest
        (dt.date(2025, 3, 31), ["2024Q2", "2024Q3", "2024Q4", "2025Q1"]),
        (dt.date(2025, 1, 1), ["2024Q2", "2024Q3", "2024Q4", "2025Q1"]),
        (dt.date(2024, 12, 31), ["2024Q1", "2024Q2", "2024Q3", "2024Q4"]),
    ],
)
def test_last_quarters_up_to_today(today: dt.date, expected: list[str]) -> None:
    assert labels(PeriodsConfig(kind="quarter", last=4), today) == expected


def test_last_two_quarters_on_the_first_day_of_a_quarter() -> None:
    periods = PeriodsConfig(last=2).resolve(today=dt.date(2025, 7, 1))
    assert [p.label for p in periods] == ["2025Q2", "2025Q3"]
    assert periods[-1].start == dt.date(2025, 7, 1) and periods[-1].end == dt.date(2025, 9, 30)


@pytest.mark.parametrize(
    ("last", "today", "expected"),
    [
        (3, dt.date(2025, 3, 1), ["2025-01", "2025-02", "2025-03"]),
        (2, dt.date(2025, 1, 31), ["2024-12", "2025-01"]),
        (2, dt.date(2024, 3, 1), ["2024-02", "2024-03"]),  # leap February
    ],
)
def test_last_months(last: int, today: dt.date, expected: list[str]) -> None:
    assert labels(PeriodsConfig(kind="month", last=last), today) == expected


def test_last_months_across_several_years() -> None:
    got = labels(PeriodsConfig(kind="month", last=26), dt.date(2025, 2, 10))
    assert len(got) == 26 and got[0] == "2023-01" and got[-1] == "2025-02"


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (dt.date(2025, 1, 1), ["2023", "2024", "2025"]),
        (dt.date(2025, 12, 31), ["2023", "2024", "2025"]),
    ],
)
def test_last_years(today: dt.date, expected: list[str]) -> None:
    assert labels(PeriodsConfig(kind="year", last=3), today) == expected


def test_end_today_literal_equals_absent_end() -> None:
    today = dt.date(2025, 8, 20)
    explicit = PeriodsConfig(kind="quarter", last=3, end="today")
    assert explicit.end == "today"
    assert labels(explicit, today) == labels(PeriodsConfig(kind="quarter", last=3), today)
    assert labels(explicit, today) == ["2025Q1", "2025Q2", "2025Q3"]


def test_last_counts_back_from_an_explicit_end() -> None:
    """``end`` a date (written in the file, or set by ``--until``): today does not matter."""
    config = PeriodsConfig(kind="quarter", last=2, end=dt.date(2024, 9, 30))
    for today in (dt.date(2024, 10, 1), dt.date(2031, 1, 1)):
        assert labels(config, today) == ["2024Q2", "2024Q3"]
    assert labels(PeriodsConfig(last=2, end=dt.date(2024, 7, 1)), dt.date(2030, 1, 1)) == [
        "2024Q2",
        "2024Q3",
    ]


def test_start_with_end_today() -> None:
    config = PeriodsConfig(kind="quarter", start=dt.date(2024, 4, 1), end="today")
    assert labels(config, dt.date(2024, 10, 1)) == ["2024Q2", "2024Q3", "2024Q4"]
    assert labels(config, dt.date(2025, 2, 1)) == ["2024Q2", "2024Q3", "2024Q4", "2025Q1"]


def test_fixed_range_is_unchanged() -> None:
    config = PeriodsConfig(kind="quarter", start=dt.date(2024, 4, 1), end=dt.date(2024, 9, 30))
    assert labels(config, dt.date(2030, 1, 1)) == ["2024Q2", "2024Q3"]


def test_today_defaults_to_the_utc_date(monkeypatch: pytest.MonkeyPatch) -> None:
    now = dt.datetime.now(dt.timezone.utc).date()
    assert utc_today() in (now, now + dt.timedelta(days=1))  # a run across midnight
    monkeypatch.setattr(tiles.config, "utc_today", lambda: dt.date(2025, 11, 30))
    assert [p.label for p in PeriodsConfig(last=2).resolve()] == ["2025Q3", "2025Q4"]
    assert [p.label for p in PeriodsConfig(last=2, end="today").resolve()] == ["2025Q3", "2025Q4"]


def test_the_window_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("INFO", logger="tiles.config"):
        PeriodsConfig(last=2).resolve(today=dt.date(2025, 5, 2))
    assert "last 2 quarter period(s) up to 2025-05-02 (today, UTC): 2025Q1..2025Q2" in caplog.text


# ------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize(
    ("section", "match"),
    [
        ({"last": 1}, r"expected 2 or more periods .* set 'last: 2' or more"),
        ({"last": 0}, r"expected 2 or more periods"),
        (
            {"start": "2024-01-01", "last": 4},
            r"'start' \(2024-01-01\) and 'last' \(4\) are both given .* remove 'start' \(or "
            r"--since\) for a rolling window, or remove 'last' for a fixed range",
        ),
        (
            {
                "kind": "custom",
                "last": 2,
                "custom": [
                    {"start": "2024-01-01", "end": "2024-02-01"},
                    {"start": "2024-03-01", "end": "2024-04-01"},
                ],
            },
            r"'last' \(2\) does not apply to kind 'custom'.*remove 'last', or set kind to "
            r"quarter, month or year",
        ),
        ({"last": 2, "end": "tomorrow"}, r"expected a date \(YYYY-MM-DD\) or 'today'"),
        ({"last": 2, "end": "Today"}, r"expected a date \(YYYY-MM-DD\) or 'today'"),
        ({"end": "2024-09-30"}, r"'start' missing: add it, .* or use 'last: 4'"),
        ({"start": "2024-04-01"}, r"'end' missing: add it, e\.g\. .*'end: today'"),
        ({}, r"'start' and 'end' missing: add them"),
        (
            {"start": "2024-04-01", "end": "2024-01-01"},
            r"'end' \(2024-01-01\) is before 'start' \(2024-04-01\)",
        ),
        ({"start": "2999-01-01", "end": "today"}, r"'end' \(today\) is before 'start'"),
        ({"last": 2, "every": 3}, r"every"),
    ],
)
def test_bad_periods(section: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        PeriodsConfig.model_validate(section)


# ------------------------------------------------------------- through the scan config file
def _write(tmp_path: Path, periods: dict[str, Any], name: str = "scan.yaml") -> Path:
    path = tmp_path / name
    data = {
        "name": "rolling",
        "aoi": {"path": "package:aoi/data/munduruku.geojson", "kind": "indigenous_land"},
        "source": {"kind": "local", "path": "scenes"},
        "periods": periods,
    }
    path.write_text(yaml.safe_dump(data))
    return path


def test_rolling_config_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.yaml"
    path.write_text(
        "aoi: {path: 'package:aoi/data/munduruku.geojson', kind: indigenous_land}\n"
        "source: {kind: local, path: scenes}\n"
        "periods:\n  kind: quarter\n  last: 4\n  end: today\n"
    )
    config = load_config(path)
    assert config.periods.last == 4 and config.periods.end == "today"
    assert labels(config.periods, dt.date(2025, 2, 14)) == ["2024Q2", "2024Q3", "2024Q4", "2025Q1"]


def test_until_override_sets_the_end_of_a_rolling_window(tmp_path: Path) -> None:
    """``minewatch scan --until D`` overrides ``periods.end`` (minewatch/cli.py)."""
    path = _write(tmp_path, {"kind": "quarter", "last": 2})
    config = load_config(path, overrides={"periods.end": "2024-09-30"})
    assert labels(config.periods, dt.date(2031, 1, 1)) == ["2024Q2", "2024Q3"]


def test_since_override_with_last_is_a_clear_error(tmp_path: Path) -> None:
    """``minewatch scan --since D`` sets ``periods.start``, which a rolling window refuses."""
    path = _write(tmp_path, {"kind": "quarter", "last": 4})
    with pytest.raises(ConfigError, match=r"scan\.yaml: key 'periods': .*'start' \(2023-01-01\) "):
        load_config(path, overrides={"periods.start": "2023-01-01"})


def test_bad_last_names_the_key_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, {"kind": "month", "last": 1})
    with pytest.raises(ConfigError, match=r"key 'periods\.last': .*'last: 2' or more \(got 1\)"):
        load_config(path)


def test_bad_end_names_the_key_and_value(tmp_path: Path) -> None:
    path = _write(tmp_path, {"last": 3, "end": "now"})
    with pytest.raises(ConfigError, match=r"key 'periods\.end': .*'end: today' \(got 'now'\)"):
        load_config(path)


# --------------------------------------------------------------------------- scan identity
def test_a_rolling_scan_keeps_its_identity_as_it_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ScanConfig.identity()`` leaves ``periods`` out: next quarter's run of a rolling config
    (and the fixed config it replaces, and an ``--until`` backfill) is the same scan, writing to
    the same output folder."""
    path = _write(tmp_path, {"kind": "quarter", "last": 2})
    runs = {}
    for today in (dt.date(2024, 5, 10), dt.date(2024, 8, 10)):  # two cron runs a quarter apart
        monkeypatch.setattr(tiles.config, "utc_today", lambda today=today: today)
        config = load_config(path)
        runs[today] = ([p.label for p in config.periods.resolve()], config.identity())
    (q2, id_q2), (q3, id_q3) = runs.values()
    assert q2 == ["2024Q1", "2024Q2"] and q3 == ["2024Q2", "2024Q3"]
    assert id_q2 == id_q3
    rolling = load_config(path)
    fixed_q2 = load_config(
        _write(tmp_path, {"start": "2024-01-01", "end": "2024-06-30"}, "q2.yaml")
    )
    fixed_q3 = load_config(
        _write(tmp_path, {"start": "2024-04-01", "end": "2024-09-30"}, "q3.yaml")
    )
    until = load_config(
        _write(tmp_path, {"kind": "quarter", "last": 2}, "until.yaml"),
        overrides={"periods.end": "2024-06-30"},
    )
    assert rolling.identity() == fixed_q2.identity() == fixed_q3.identity() == until.identity()
    assert rolling.digest() != fixed_q2.digest()  # the run metadata still tells them apart
    other = load_config(_write(tmp_path, {"kind": "quarter", "last": 2}, "other.yaml"))
    assert other.identity() == rolling.identity() and other.digest() == rolling.digest()
