"""`minewatch report`: per-reserve figures of an output folder, checked on a run store and
GeoPackage built in code (two reserves, four quarters, one of them under cloud in one reserve),
where every expected hectare is known; then once on a real scan."""

from __future__ import annotations

import base64
import csv
import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import click
import geopandas as gpd
import numpy as np
import pyogrio
import pytest
from click.testing import CliRunner
from PIL import Image

from detection.errors import (
    ConfigError,
    DetectionError,
    InputFormatError,
    InputNotFoundError,
    OutputExistsError,
    RunStateError,
)
from detection.report import (
    ALL_ID,
    PERIOD_COLUMNS,
    TOP_COLUMNS,
    ReportResult,
    build_report,
    draw_figures,
    write_report,
)
from detection.runs import RunStore
from detection.sites import HISTORY_COLUMNS
from minewatch.cli_report import report as report_command
from tests.detection.conftest import to_wgs84, utm_box
from tiles.periods import quarter

QUARTERS = [quarter(2024, q) for q in (1, 2, 3, 4)]
LABELS = [p.label for p in QUARTERS]

# Reserve A: 2 x 2 km at (0, 0); reserve B: 2 x 2 km at (5 km, 0). One chip over each, 3 x 3 km.
RESERVES = [
    ("A", "Reserva Alfa", "protected_area", 0.0),
    ("B", "Terra Beta", "indigenous_land", 5000.0),
]
CHIPS = {"T_A": -500.0, "T_B": 4500.0}

# Clear share per chip and period: B is all cloud in 2024Q2; A is 30 % clear in 2024Q3.
OBSERVED = {
    ("T_A", "2024Q1"): 1.0,
    ("T_A", "2024Q2"): 1.0,
    ("T_A", "2024Q3"): 0.3,
    ("T_A", "2024Q4"): 1.0,
    ("T_B", "2024Q1"): 1.0,
    ("T_B", "2024Q2"): 0.0,
    ("T_B", "2024Q3"): 1.0,
    ("T_B", "2024Q4"): 1.0,
}

# (site, class, x, y, w, h, {period: (status, area_ha, area_change_ha)}); x, y in metres.
SITES: list[tuple[str, str, float, float, float, float, dict[str, tuple[str, float, float]]]] = [
    (
        "mw-m-a1",
        "mining",
        200,
        200,
        300,
        300,
        {
            "2024Q1": ("new", 2.0, 2.0),
            "2024Q2": ("expanding", 3.0, 1.0),
            "2024Q3": ("stable", 3.1, 0.1),
            "2024Q4": ("expanding", 5.0, 1.9),
        },
    ),
    (
        "mw-d-a2",
        "deforestation",
        1200,
        1200,
        200,
        200,
        {"2024Q2": ("new", 1.5, 1.5), "2024Q4": ("expanding", 2.5, 1.0)},
    ),
    (
        "mw-m-b1",
        "mining",
        5500,
        500,
        400,
        400,
        {"2024Q1": ("new", 4.0, 4.0), "2024Q3": ("reactivated", 6.0, 6.0)},
    ),
    # in B's 1 km buffer zone, 300 m east of its boundary
    ("mw-m-b2", "mining", 7300, 900, 100, 100, {"2024Q4": ("new", 1.0, 1.0)}),
    # 20 km away from both: not counted
    ("mw-m-zz", "mining", 25000, 0, 100, 100, {"2024Q4": ("new", 0.7, 0.7)}),
]


def _history() -> gpd.GeoDataFrame:
    rows: list[dict[str, Any]] = []
    for site_id, cls, x, y, w, h, periods in SITES:
        geom = to_wgs84([utm_box(x, y, w, h)])[0]
        first = None
        for period in QUARTERS:
            if period.label not in periods:
                continue
            status, area, change = periods[period.label]
            first = first or period.end.isoformat()
            rows.append(
                {
                    "site_id": site_id,
                    "alert_class": cls,
                    "period_label": period.label,
                    "period_start": period.start.isoformat(),
                    "period_end": period.end.isoformat(),
                    "status": status,
                    "area_ha": area,
                    "area_change_ha": change,
                    "confidence": 0.8,
                    "observed_fraction": OBSERVED.get(
                        ("T_A" if x < 4000 else "T_B", period.label), 1.0
                    ),
                    "first_detected": first,
                    "last_detected": period.end.isoformat(),
                    "merged_from": [],
                    "split_from": None,
                    "geometry": geom,
                }
            )
    frame = gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")
    return frame[list(HISTORY_COLUMNS)]


def _make_output(out: Path, *, history: gpd.GeoDataFrame | None = None) -> Path:
    """An output folder as a scan leaves it: runs.sqlite, alerts.gpkg (aois, coverage), run.json."""
    out.mkdir(parents=True, exist_ok=True)
    aois = gpd.GeoDataFrame(
        {
            "aoi_id": [r[0] for r in RESERVES],
            "aoi_name": [r[1] for r in RESERVES],
            "aoi_kind": [r[2] for r in RESERVES],
        },
        geometry=to_wgs84([utm_box(r[3], 0, 2000, 2000) for r in RESERVES]),
        crs="EPSG:4326",
    )
    cov_rows = []
    for (tile, label), frac in OBSERVED.items():
        period = QUARTERS[LABELS.index(label)]
        cov_rows.append(
            {
                "tile_id": tile,
                "period": label,
                "period_start": period.start.isoformat(),
                "period_end": period.end.isoformat(),
                "status": "observed"
                if frac >= 0.99
                else ("not_observed" if frac == 0 else "partly_observed"),
                "observed_fraction": frac,
                "geometry": to_wgs84([utm_box(CHIPS[tile], -500, 3000, 3000)])[0],
            }
        )
    coverage = gpd.GeoDataFrame(cov_rows, geometry="geometry", crs="EPSG:4326")
    gpkg = out / "alerts.gpkg"
    pyogrio.write_dataframe(aois, gpkg, layer="aois", driver="GPKG", promote_to_multi=True)
    pyogrio.write_dataframe(coverage, gpkg, layer="coverage", driver="GPKG", promote_to_multi=True)
    store = RunStore(out)
    store.start_run(
        "20250101T000000Z-test",
        config_name="two-reserves",
        config_sha256="ab" * 32,
        model_sha256="cd" * 32,
        software_version="0.1.0",
        period=QUARTERS[-1].as_dict(),
    )
    for (tile, label), frac in OBSERVED.items():
        store.record_unit(
            "20250101T000000Z-test",
            tile_id=tile,
            period=label,
            status="observed" if frac else "not_observed",
            reused=False,
            observed_fraction=frac,
            scenes=3,
            reason="",
            unit_key=f"{tile}-{label}",
            scene_ids=("S2A_x",),
            newest_acquisition=None,
        )
    store.save_history(_history() if history is None else history)
    store.finish_run("20250101T000000Z-test", outcome="success", summary={})
    (out / "run.json").write_text(
        json.dumps({"config": {"name": "two-reserves", "aoi": {"buffer_m": 1000.0}}})
    )
    return out


@pytest.fixture
def output(tmp_path: Path) -> Path:
    return _make_output(tmp_path / "out")


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> ReportResult:
    """One output folder and its report (with the PDF), shared by the tests that only read."""
    out = _make_output(tmp_path_factory.mktemp("written") / "out")
    store = (out / "runs.sqlite").read_bytes()
    result = write_report(out, pdf=True)
    assert (out / "runs.sqlite").read_bytes() == store  # the report never writes the store
    return result


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _row(rows: list[dict[str, str]], aoi: str, period: str, cls: str) -> dict[str, str]:
    (found,) = [
        r for r in rows if r["aoi_id"] == aoi and r["period"] == period and r["alert_class"] == cls
    ]
    return found


def _cli(*args: str) -> Any:
    group = click.Group()
    group.add_command(report_command)
    return CliRunner().invoke(group, ["report", *args])


# ------------------------------------------------------------------------------------- tables


def test_csv_hectares_match_the_site_history(written: ReportResult) -> None:
    result, output = written, written.report.out_dir
    rows = _rows(result.report_dir / "reserve_periods.csv")
    assert list(rows[0]) == list(PERIOD_COLUMNS)
    assert len(rows) == 3 * 4 * 2  # (A, B, all) x 4 quarters x 2 classes
    hist = pyogrio.read_dataframe(output / "alerts.gpkg", layer="aois")  # the layer is read back
    assert set(hist["aoi_id"]) == {"A", "B"}
    history = _history()
    for site_id, aoi in (("mw-m-a1", "A"), ("mw-d-a2", "A"), ("mw-m-b1", "B")):
        for rec in history[history["site_id"] == site_id].itertuples():
            row = _row(rows, aoi, rec.period_label, rec.alert_class)
            assert float(row["area_ha"]) == pytest.approx(rec.area_ha)
    # sums against the history: A's mining is mw-m-a1 alone; "all" adds A and B, inside only
    assert float(_row(rows, "A", "2024Q4", "mining")["area_ha"]) == pytest.approx(5.0)
    assert float(_row(rows, "B", "2024Q4", "mining")["area_ha"]) == pytest.approx(0.0)
    assert float(_row(rows, "B", "2024Q4", "mining")["buffer_area_ha"]) == pytest.approx(1.0)
    assert _row(rows, "B", "2024Q4", "mining")["buffer_sites"] == "1"
    for label in LABELS:
        for cls in ("mining", "deforestation"):
            a, b, everything = (_row(rows, k, label, cls) for k in ("A", "B", ALL_ID))
            for col in ("area_ha", "buffer_area_ha"):
                parts = [float(r[col]) for r in (a, b) if r[col] != ""]
                if everything[col] != "":
                    assert float(everything[col]) == pytest.approx(sum(parts)), (label, cls, col)
    inside = history[history["site_id"].isin(["mw-m-a1", "mw-m-b1"])]
    total = inside[inside["period_label"] == "2024Q3"]["area_ha"].sum()
    assert float(_row(rows, ALL_ID, "2024Q3", "mining")["area_ha"]) == pytest.approx(total)


def test_new_vs_expanding_and_the_baseline(written: ReportResult) -> None:
    rows = _rows(written.report_dir / "reserve_periods.csv")
    q1 = _row(rows, "A", "2024Q1", "mining")
    assert q1["comparison"] == "baseline"
    assert q1["new_sites"] == "" and q1["new_ha"] == ""  # not "new on the ground"
    q4 = _row(rows, "A", "2024Q4", "mining")
    assert q4["comparison"] == "vs 2024Q3"
    assert (q4["new_sites"], q4["expanding_sites"]) == ("0", "1")
    assert float(q4["expanding_growth_ha"]) == pytest.approx(1.9)
    d2 = _row(rows, "A", "2024Q2", "deforestation")
    assert (d2["new_sites"], float(d2["new_ha"])) == ("1", pytest.approx(1.5))
    b3 = _row(rows, "B", "2024Q3", "mining")
    assert b3["reactivated_sites"] == "1"


def test_unobserved_period_is_not_zero(written: ReportResult) -> None:
    rows = _rows(written.report_dir / "reserve_periods.csv")
    b2 = _row(rows, "B", "2024Q2", "mining")
    assert b2["observation"] == "not_observed"
    assert b2["observed_share"] == "0.0"
    assert b2["area_ha"] == "" and b2["sites"] == ""  # no figure, never 0
    a3 = _row(rows, "A", "2024Q3", "mining")
    assert a3["observation"] == "partly_observed"
    assert float(a3["observed_share"]) == pytest.approx(0.3)
    assert float(a3["imagery_share"]) == pytest.approx(1.0)
    a1 = _row(rows, "A", "2024Q1", "mining")
    assert a1["observation"] == "observed"
    # all reserves in 2024Q2: A seen, B not: half the area observed
    assert float(_row(rows, ALL_ID, "2024Q2", "mining")["observed_share"]) == pytest.approx(
        0.5, abs=0.01
    )
    html = (written.report_dir / "report.html").read_text()
    assert "not observed" in html


def test_top_sites_by_growth(output: Path) -> None:
    result = write_report(output, top_n=4)
    rows = _rows(result.report_dir / "top_sites.csv")
    assert list(rows[0]) == list(TOP_COLUMNS)
    assert [r["site_id"] for r in rows] == ["mw-m-a1", "mw-d-a2", "mw-m-b1", "mw-m-b2"]
    # from the baseline 2024Q1: a1 2.0 -> 5.0, b1 4.0 -> 6.0; a2 and b2 appeared later
    assert [float(r["growth_ha"]) for r in rows] == pytest.approx([3.0, 2.5, 2.0, 1.0])
    assert [float(r["area_start_ha"]) for r in rows] == pytest.approx([2.0, 0.0, 4.0, 0.0])
    assert rows[3]["aoi_relation"] == "buffer"
    assert [r["rank"] for r in rows] == ["1", "2", "3", "4"]
    assert result.report.outside_sites == 1  # mw-m-zz, 20 km from both reserves
    assert (
        len(_rows(write_report(output, top_n=2, overwrite=True).report_dir / "top_sites.csv")) == 2
    )


def test_since_filters_periods(output: Path) -> None:
    result = write_report(output, since=__import__("datetime").date(2024, 7, 1))
    rows = _rows(result.report_dir / "reserve_periods.csv")
    assert {r["period"] for r in rows} == {"2024Q3", "2024Q4"}
    assert _row(rows, "A", "2024Q3", "mining")["comparison"] == "vs previous"
    top = _rows(result.report_dir / "top_sites.csv")
    # growth since the end of 2024Q2: a1 3.0 -> 5.0, b1 (last seen 4.0 in 2024Q1) -> 6.0
    growth = {r["site_id"]: float(r["growth_ha"]) for r in top}
    assert growth["mw-m-a1"] == pytest.approx(2.0)
    assert growth["mw-m-b1"] == pytest.approx(2.0)
    assert growth["mw-d-a2"] == pytest.approx(1.0)
    with pytest.raises(DetectionError, match=r"--since 2025-01-01: no period ends on or after it"):
        build_report(output, since=__import__("datetime").date(2025, 1, 1))


# ------------------------------------------------------------------------------------ figures


def _image(png: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(png))
    img.load()
    return img.convert("RGB")


def _check_not_blank(img: Image.Image) -> None:
    arr = np.asarray(img)
    assert arr.std() > 20, "figure looks blank"
    colours = {tuple(c) for c in arr.reshape(-1, 3)[:: max(1, arr.size // 3 // 20000)]}
    assert len(colours) > 20
    # the class colours of the bars/markers are drawn
    assert ((np.abs(arr.astype(int) - [0xC2, 0x57, 0x0C]).sum(axis=2)) < 30).sum() > 50


def test_figures_render_and_read_back(output: Path) -> None:
    report = build_report(output)
    figures = draw_figures(report, dpi=80)
    names = [f.name for f in figures]
    assert names == ["trend-all", "hotspots", "top-sites", "trend-A", "trend-B"]
    for fig in figures:
        img = _image(fig.png)
        assert img.width >= 500 and img.height >= 250, fig.name
        _check_not_blank(img)
        assert fig.title and fig.caption
        axes = fig.figure.get_axes()
        assert axes
        assert fig.figure.get_suptitle() == fig.title  # titled
        for ax in axes:
            if ax.get_visible() and ax.has_data():
                assert ax.get_xlabel() or ax.get_ylabel(), (fig.name, ax.get_title())
    trend = figures[0].figure
    ylabels = [ax.get_ylabel() for ax in trend.get_axes()]
    assert ylabels == ["area inside the reserve (ha)", "area added (ha)", "observed (%)"]
    texts = [t.get_text() for ax in figures[4].figure.get_axes() for t in ax.texts]
    assert "not observed" in texts  # reserve B, 2024Q2


def test_html_is_self_contained_with_figures(written: ReportResult) -> None:
    result = written
    html = (result.report_dir / "report.html").read_text(encoding="utf-8")
    assert "<title>minewatch report: two-reserves</title>" in html
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)["']""", html, flags=re.I)
    assert refs and all(r.startswith("data:") or r.startswith("#") for r in refs), refs
    assert not re.search(r"https?://", html)
    assert "<script" not in html and "@import" not in html and "url(" not in html
    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)" alt="([^"]+)"', html)
    assert len(imgs) == 5
    for data, alt in imgs:
        _check_not_blank(_image(base64.b64decode(data)))
        assert alt
    alts = [alt for _, alt in imgs]
    assert alts == [
        "All 2 reserves: mining and forest clearing detected, 2024Q1–2024Q4",
        "Hot spots: latest extent of every site detected, 2024Q1–2024Q4",
        "Fastest-growing sites, 2024Q1–2024Q4",
        "Reserva Alfa: mining and forest clearing detected, 2024Q1–2024Q4",
        "Terra Beta: mining and forest clearing detected, 2024Q1–2024Q4",
    ]
    for name in ("trend-all", "hotspots", "top-sites", "trend-A", "trend-B"):
        png = result.report_dir / "figures" / f"{name}.png"
        _check_not_blank(_image(png.read_bytes()))
    assert "Reserva Alfa" in html and "Terra Beta" in html


def test_pdf_option(written: ReportResult) -> None:
    pdf = (written.report_dir / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF")
    pages = re.findall(rb"/Type\s*/Page[^s]", pdf)
    assert len(pages) == 8  # cover, 5 figures, top-sites table, legal status
    assert pdf.rstrip().endswith(b"%%EOF")


def test_empty_history_still_reports(tmp_path: Path) -> None:
    empty = gpd.GeoDataFrame(
        {c: [] for c in HISTORY_COLUMNS if c != "geometry"},
        geometry=gpd.GeoSeries([], crs="EPSG:4326"),
        crs="EPSG:4326",
    )
    out = _make_output(tmp_path / "out", history=empty)
    result = write_report(out)
    rows = _rows(result.report_dir / "reserve_periods.csv")
    assert float(_row(rows, "A", "2024Q1", "mining")["area_ha"]) == 0.0
    assert _row(rows, "B", "2024Q2", "mining")["area_ha"] == ""
    assert _rows(result.report_dir / "top_sites.csv") == []
    html = (result.report_dir / "report.html").read_text()
    assert "No site gained area" in html


# ---------------------------------------------------------------------------------------- CLI


def test_cli_writes_the_report(output: Path, tmp_path: Path) -> None:
    res = _cli(str(output), "--out", str(tmp_path / "rep"), "--pdf", "--json")
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["periods"] == LABELS
    assert summary["reserves"] == 2
    latest = {e["aoi_id"]: e for e in summary["latest"]}
    assert latest["A"]["mining_ha"] == pytest.approx(5.0)
    for name in ("report.html", "report.pdf", "reserve_periods.csv", "top_sites.csv"):
        assert (tmp_path / "rep" / name).is_file()
    res = _cli(str(output), "--out", str(tmp_path / "rep"))
    assert res.exit_code == 1
    assert "already holds a report" in res.output and "--overwrite" in res.output
    res = _cli(str(output), "--out", str(tmp_path / "rep"), "--overwrite", "--since", "2024-10-01")
    assert res.exit_code == 0, res.output
    assert res.output.startswith("report: 1 period(s) 2024Q4..2024Q4, 2 reserve(s)")
    assert not (tmp_path / "rep" / "report.pdf").exists()  # replaced without the PDF


def test_cli_bad_input_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    res = _cli(str(tmp_path / "empty"))
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1
    assert "holds no run store (runs.sqlite)" in lines[0]
    assert not (tmp_path / "empty" / "runs.sqlite").exists()  # nothing created
    res = _cli(str(tmp_path / "missing"))
    assert res.exit_code == 1 and "holds no run store" in res.output
    res = _cli(str(tmp_path / "empty"), "--since", "yesterday")
    assert res.exit_code == 2  # usage error


def test_corrupt_store_and_missing_geopackage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(DetectionError, match="not a readable minewatch run store"):
        build_report(out)
    good = _make_output(tmp_path / "good")
    (good / "alerts.gpkg").unlink()
    with pytest.raises(DetectionError, match=r"holds no alerts\.gpkg"):
        build_report(good)


def test_each_refusal_is_its_cause_and_the_builtin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each refusal raises the ``DetectionError`` of its cause, which is also the builtin a
    caller may catch without knowing minewatch; the command still prints one line, exit 1."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"holds no run store \(runs\.sqlite\)") as info:
        build_report(tmp_path / "empty")
    assert isinstance(info.value, InputNotFoundError)
    from minewatch.cli import main

    assert main(["report", str(tmp_path / "empty")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no run store (runs.sqlite)" in err[0], err

    running = tmp_path / "running"
    running.mkdir()
    RunStore(running).start_run(
        "20250101T000000Z-live",
        config_name="two-reserves",
        config_sha256="ab" * 32,
        model_sha256="cd" * 32,
        software_version="0.1.0",
        period=QUARTERS[-1].as_dict(),
    )
    with pytest.raises(RuntimeError, match="no finished run yet") as info:
        build_report(running)
    assert isinstance(info.value, RunStateError)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "runs.sqlite").write_bytes(b"not a database" * 100)
    with pytest.raises(ValueError, match="not a readable minewatch run store") as info:
        build_report(corrupt)
    assert isinstance(info.value, InputFormatError)

    good = _make_output(tmp_path / "good")
    with pytest.raises(ValueError, match="top_n 0: expected at least 1") as info:
        build_report(good, top_n=0)
    assert isinstance(info.value, ConfigError)
    with pytest.raises(ConfigError, match="--since 2030-01-01: no period ends on or after it"):
        build_report(good, since=dt.date(2030, 1, 1))
    with pytest.raises(ConfigError, match="dpi 0: expected a positive number"):
        draw_figures(build_report(good), dpi=0)

    no_coverage = _make_output(tmp_path / "no-coverage")
    aois = pyogrio.read_dataframe(no_coverage / "alerts.gpkg", layer="aois")
    (no_coverage / "alerts.gpkg").unlink()
    pyogrio.write_dataframe(aois, no_coverage / "alerts.gpkg", layer="aois", driver="GPKG")
    with pytest.raises(InputFormatError, match="no layer 'coverage'"):
        build_report(no_coverage)


def test_existing_report_needs_overwrite(output: Path) -> None:
    write_report(output)
    with pytest.raises(OutputExistsError, match="pass --overwrite"):
        write_report(output)
    write_report(output, overwrite=True)


# ------------------------------------------------------------------------ a real scan, end to end


@pytest.mark.slow
def test_report_of_a_real_scan(tmp_path: Path) -> None:
    """A real three-quarter scan of a small synthetic world: the report's hectares are the
    sums of the GeoPackage's sites_history layer."""
    from tests.cli.conftest import minewatch, small_config

    cfg = small_config(
        tmp_path,
        world=tmp_path / "world",
        source__world__periods=["2024Q1", "2024Q2", "2024Q3"],
        periods__start="2024-01-01",
    )
    proc = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = tmp_path / "out"
    result = write_report(out, pdf=True)
    rows = _rows(result.report_dir / "reserve_periods.csv")
    assert {r["period"] for r in rows} == {"2024Q1", "2024Q2", "2024Q3"}
    history = pyogrio.read_dataframe(out / "alerts.gpkg", layer="sites_history")
    alerts = pyogrio.read_dataframe(out / "alerts.gpkg", layer="alerts")
    inside_ids = set(alerts.loc[alerts["aoi_relation"] == "inside", "site_id"])
    last = history[(history["period_label"] == "2024Q3") & history["site_id"].isin(inside_ids)]
    for cls in ("mining", "deforestation"):
        expected = last.loc[last["alert_class"] == cls, "area_ha"].sum()
        assert float(_row(rows, "box-1", "2024Q3", cls)["area_ha"]) == pytest.approx(
            expected, abs=1e-3
        )
    run = json.loads((out / "run.json").read_text())
    share = float(_row(rows, "box-1", "2024Q3", "mining")["observed_share"])
    assert 0 < share <= 1
    assert run["observed_fraction"]["2024Q3"] > 0
    assert (result.report_dir / "report.pdf").read_bytes().startswith(b"%PDF")


def test_hectares_by_legal_status(output: Path, tmp_path: Path) -> None:
    """Reserve A is open to mining: a concession covers mw-m-a1 from 2024Q3 on; B is an
    indigenous land (closed); mw-m-b2 lies in B's buffer with no title."""
    titles = gpd.GeoDataFrame(
        {
            "title_id": ["850.100/2024"],
            "phase": ["CONCESSÃO DE LAVRA"],
            "holder": ["Mineração Exemplo"],
            "substance": ["OURO"],
            "use": [None],
            "state": ["PA"],
            "valid_from": ["2024-07-01"],
            "valid_to": [None],
        },
        geometry=to_wgs84([utm_box(0, 0, 1000, 1000)]),
        crs="EPSG:4326",
    )
    pyogrio.write_dataframe(titles, output / "alerts.gpkg", layer="titles", driver="GPKG")
    result = write_report(output, tmp_path / "rep")
    rows = _rows(tmp_path / "rep" / "legal_status.csv")

    def ha(aoi: str, period: str, status: str) -> float:
        [row] = [
            r for r in rows
            if (r["aoi_id"], r["period"], r["alert_class"], r["legal_status"])
            == (aoi, period, "mining", status)
        ]
        return float(row["area_ha"])

    assert ha("A", "2024Q2", "no_title") == 3.0  # the title starts in 2024Q3
    assert ha("A", "2024Q2", "titled") == 0.0
    assert ha("A", "2024Q4", "titled") == 5.0
    assert ha("B", "2024Q3", "prohibited_area") == 6.0
    assert ha("B", "2024Q4", "no_title") == 1.0  # buffer zone, outside the closed land
    assert ha("all", "2024Q4", "titled") == 5.0
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "<h2>Legal status</h2>" in html and "prohibited_area" in html
    assert result.report.legal_by_period["area_ha"].sum() > 0
