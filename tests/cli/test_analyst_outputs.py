"""What an analyst and an operator see, through the real command line: evidence chips that stand
alone, KML time spans, a CSV a pt-BR spreadsheet reads, the observed share of the reserve, the
lock file gone after a run, -v/-q after the subcommand, --json everywhere, plain id/name fields,
and a README outputs table that lists what a scan writes."""

from __future__ import annotations

import codecs
import csv
import io
import json
import os
import re
from pathlib import Path

import click
import geopandas as gpd
import pyogrio
import pytest
import rasterio
import shapely
from PIL import Image
from pyproj import Transformer

from detection.runs import LOCK_NAME, output_lock
from tests.cli.conftest import CENTER, minewatch, small_config

REPO = Path(__file__).resolve().parents[2]
#: A reserve whose west half lies over the small synthetic world (6.4 km around CENTER) and whose
#: east half has no imagery at all: half of it cannot have been observed.
WEST, SOUTH, EAST, NORTH = CENTER[0], CENTER[1] - 0.03, CENTER[0] + 0.06, CENTER[1] + 0.03
RESERVE = {"id": "TI-0042", "name": "Terra Indígena Sawré Muybu"}


def _write_reserve(folder: Path) -> None:
    ring = [[WEST, SOUTH], [EAST, SOUTH], [EAST, NORTH], [WEST, NORTH], [WEST, SOUTH]]
    feature = {
        "type": "Feature",
        "properties": RESERVE,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    (folder / "aoi.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [feature]}, ensure_ascii=False),
        encoding="utf-8",
    )


@pytest.fixture(scope="module")
def scan(
    tmp_path_factory: pytest.TempPathFactory, small_world: Path
) -> tuple[Path, dict, str]:
    """One scan of the half-imaged reserve, its layer with plain ``id``/``name`` fields and no
    field settings; returns the output folder, the --json summary and stderr."""
    folder = tmp_path_factory.mktemp("analyst")
    _write_reserve(folder)
    cfg = small_config(folder, world=small_world, aoi__id_field=None, aoi__name_field=None)
    proc = minewatch("scan", str(cfg), "--out", "out", "--json", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return folder / "out", json.loads(proc.stdout), proc.stderr


def _alerts(out: Path) -> list[dict]:
    return json.loads((out / "alerts.geojson").read_text(encoding="utf-8"))["features"]


def test_plain_id_and_name_fields_are_recognised(scan: tuple[Path, dict, str]) -> None:
    out, summary, stderr = scan
    assert summary["alerts"] > 0
    inside = [f for f in _alerts(out) if f["properties"]["aoi_relation"] == "inside"]
    assert inside, "some sites lie inside the reserve"
    for feature in inside:
        assert feature["properties"]["aoi_id"] == RESERVE["id"]
        assert feature["properties"]["aoi_name"] == RESERVE["name"]
    assert "no name" not in stderr and "no id_field" not in stderr and "aoi-0" not in stderr


def test_observed_share_is_of_the_reserve(scan: tuple[Path, dict, str]) -> None:
    """Half the reserve has no imagery: its observed share is at most what the imaged chips
    cover of it, and well below the share of the imaged chips that was seen."""
    out, summary, _ = scan
    coverage = pyogrio.read_dataframe(out / "alerts.gpkg", layer="coverage")
    imaged = coverage[coverage["status"] != "no_imagery"]
    reserve = shapely.box(WEST, SOUTH, EAST, NORTH)
    frame = gpd.GeoDataFrame(geometry=[reserve, imaged.union_all()], crs=4326).to_crs(6933)
    most = frame.geometry[0].intersection(frame.geometry[1]).area / frame.geometry[0].area
    assert 0.3 < most < 0.7
    for period, share in summary["aoi_observed_fraction"].items():
        assert 0.3 * most < share <= most + 1e-3, (period, share, most)
        assert share < summary["observed_fraction"][period] - 0.1
    run = json.loads((out / "run.json").read_text())
    assert run["aoi_observed_fraction"] == summary["aoi_observed_fraction"]


def test_evidence_pngs_say_what_they_show_and_have_a_geotiff(
    scan: tuple[Path, dict, str],
) -> None:
    out, _, _ = scan
    for feature in _alerts(out):
        props = feature["properties"]
        evidence = props["evidence"]
        site = shapely.geometry.shape(feature["geometry"])
        for side in ("before", "after"):
            for rendering, bands in (("true_colour", "B04, G B03, B B02"), ("swir", "B12")):
                png_path = out / evidence[f"{side}_{rendering}"]
                png = Image.open(png_path)
                text = png.text["Description"]
                assert png.text["Title"] == f"site {props['site_id']}"
                start, end = evidence[f"{side}_period_start"], evidence[f"{side}_period_end"]
                assert f"{side.upper()}: composite of {start}..{end}" in text
                dates = [e["date"] for e in evidence["scenes"] if e["role"] == side]
                assert dates and all(d in text for d in dates)
                assert f"R {bands}" in text and int(png.text["scale_bar_m"]) > 0
                with rasterio.open(png_path.with_suffix(".tif")) as tif:
                    assert tif.count == 3 and tif.crs is not None
                    to_tif = Transformer.from_crs(4326, tif.crs, always_xy=True)
                    x, y = to_tif.transform(site.centroid.x, site.centroid.y)
                    left, bottom, right, top = tif.bounds
                    assert left < x < right and bottom < y < top  # the site is in the picture
                    assert tif.tags()["SITE_ID"] == props["site_id"]
    assert not list((out / "evidence").rglob("*.tmp")), "no temporary file left behind"


def test_kml_time_span_and_csv_for_a_spreadsheet(scan: tuple[Path, dict, str]) -> None:
    out, _, _ = scan
    alerts = {f["id"]: f["properties"] for f in _alerts(out)}
    kml = pyogrio.read_dataframe(out / "alerts.kml")  # GDAL's LIBKML, as QGIS reads it
    assert set(kml["Name"]) == set(alerts)
    for name, begin, end in zip(kml["Name"], kml["begin"], kml["end"], strict=True):
        assert str(begin)[:10] == alerts[name]["first_detected"]
        assert str(end)[:10] == alerts[name]["last_detected"]
    raw = (out / "summary.csv").read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    # As Excel / LibreOffice Calc do: UTF-8 when the BOM says so, else the ANSI code page.
    text = raw.decode("utf-8-sig" if raw.startswith(codecs.BOM_UTF8) else "cp1252")
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert next(iter(rows[0])) == "site_id"
    assert {r["aoi_name"] for r in rows if r["aoi_relation"] == "inside"} == {RESERVE["name"]}


def test_readme_lists_every_output_and_the_lock_is_gone(scan: tuple[Path, dict, str]) -> None:
    out, _, _ = scan
    assert not (out / LOCK_NAME).exists()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+?)/?` ", section, flags=re.M))
    written = {p.name for p in out.iterdir()}
    assert written <= listed, f"not in the README's outputs table: {written - listed}"
    assert LOCK_NAME in listed


def test_verbosity_after_the_subcommand_and_text_summary(
    scan: tuple[Path, dict, str],
) -> None:
    """A rerun (no model work) with -v after the subcommand logs INFO; the text summary names
    the share of the AOI, and the lock file is gone again."""
    out, _, _ = scan
    cfg = out.parent / "scan.yaml"
    proc = minewatch("scan", str(cfg), "--out", "out", "-v", cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert " INFO " in proc.stderr
    assert "observed (cloud-free) share of the AOI: 2024Q2 " in proc.stdout
    assert "of the chips with imagery: 2024Q2 " in proc.stdout
    assert not (out / LOCK_NAME).exists()
    quiet = minewatch("aoi", "info", "aoi.geojson", cwd=out.parent)
    assert "WARNING" in quiet.stderr  # no kind given
    quieter = minewatch("aoi", "info", "aoi.geojson", "-q", cwd=out.parent)
    assert quieter.returncode == 0 and quieter.stderr == ""
    assert quieter.stdout.startswith(f"{RESERVE['id']}\t{RESERVE['name']}\tother\t")
    debug = minewatch("aoi", "info", "aoi.geojson", "-vv", cwd=out.parent)
    assert debug.returncode == 0 and " DEBUG " in debug.stderr
    traced = minewatch("aoi", "info", "missing.geojson", "-vv", cwd=out.parent)
    assert traced.returncode == 1 and "Traceback" in traced.stderr
    plain = minewatch("aoi", "info", "missing.geojson", cwd=out.parent)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr


def test_a_failed_scan_removes_its_lock_and_a_refused_one_keeps_the_holders(
    tmp_path: Path, small_world: Path
) -> None:
    _write_reserve(tmp_path)
    (tmp_path / "empty").mkdir()
    cfg = small_config(tmp_path, world=small_world, source={"kind": "local", "path": "empty"})
    failed = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert (tmp_path / "out").is_dir() and not (tmp_path / "out" / LOCK_NAME).exists()
    with output_lock(tmp_path / "out") as lock:
        refused = minewatch("scan", str(cfg), "--out", "out", cwd=tmp_path)
        assert refused.returncode == 1 and f"pid {os.getpid()}" in refused.stderr
        assert lock.exists() and json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()


def test_every_command_takes_json_and_verbosity() -> None:
    from minewatch.cli import cli

    def leaves(group: click.Group, path: tuple[str, ...]) -> list[tuple[str, click.Command]]:
        found = []
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                found += leaves(command, (*path, name))
            else:
                found.append((" ".join((*path, name)), command))
        return found

    commands = leaves(cli, ())
    assert len(commands) > 15
    for name, command in commands:
        options = {opt for param in command.params for opt in param.opts}
        assert {"--json", "-v", "-q"} <= options, name


def test_keygen_json(tmp_path: Path) -> None:
    proc = minewatch("alerts", "keygen", "key.pem", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"private_key": "key.pem", "public_key": "key.pem.pub"}
    assert (tmp_path / "key.pem.pub").is_file()
