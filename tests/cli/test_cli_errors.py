"""Bad input on the command line: one clear line, a non-zero exit, a traceback only with -vv."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "minewatch", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    proc = _run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("demo", "scan", "tiles", "aoi"):
        assert command in proc.stdout


def test_unknown_config_key_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "aoi": {"path": "a.geojson"},
                "source": {"kind": "local", "path": "s"},
                "periods": {"kind": "quarter", "start": "2024-01-01", "end": "2024-06-30"},
                "detektor": {"kind": "indices"},
            }
        )
    )
    proc = _run("scan", str(cfg), cwd=tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines == [
        f"minewatch: error: {cfg}: unknown key 'detektor'; remove it or check its spelling"
    ]


def test_missing_config_file(tmp_path: Path) -> None:
    proc = _run("scan", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "missing.yaml' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_traceback_only_with_vv(tmp_path: Path) -> None:
    proc = _run("-vv", "scan", "missing.yaml", cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr


def test_missing_aoi_file_names_it(tmp_path: Path) -> None:
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "aoi": {"path": "nowhere.geojson"},
                "source": {"kind": "local", "path": "scenes"},
                "periods": {"kind": "quarter", "start": "2024-01-01", "end": "2024-06-30"},
            }
        )
    )
    proc = _run("scan", str(cfg), "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert "nowhere.geojson" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "o" / "alerts.geojson").exists()


def test_synth_bad_value_is_named(tmp_path: Path) -> None:
    proc = _run("tiles", "synth", "w", "--size-px", "3", cwd=tmp_path)
    assert proc.returncode == 2
    assert "size_px" in proc.stderr and "3" in proc.stderr


def _aoi_scan(tmp_path: Path, geometry: dict, *, crs: str | None = None) -> Path:
    import json

    fc: dict = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"id": "x", "name": "X"}, "geometry": geometry}]}
    if crs:
        fc["crs"] = {"type": "name", "properties": {"name": crs}}
    (tmp_path / "aoi.geojson").write_text(json.dumps(fc))
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(yaml.safe_dump({
        "aoi": {"path": "aoi.geojson", "id_field": "id", "name_field": "name"},
        "source": {"kind": "local", "path": "scenes"},
        "periods": {"kind": "quarter", "start": "2024-01-01", "end": "2024-06-30"},
    }))
    return cfg


def test_aoi_with_swapped_axes_is_refused(tmp_path: Path) -> None:
    ring = [[lat, lon] for lon, lat in [[-157.5, -6.6], [-157.5, -6.5], [-157.4, -6.5],
                                        [-157.5, -6.6]]]
    proc = _run("scan", str(_aoi_scan(tmp_path, {"type": "Polygon", "coordinates": [ring]})),
                "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert "(lat, lon)" in proc.stderr and "Traceback" not in proc.stderr


def test_empty_aoi_geometry_is_refused(tmp_path: Path) -> None:
    proc = _run("scan", str(_aoi_scan(tmp_path, {"type": "Polygon", "coordinates": []})),
                "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert "empty" in proc.stderr.lower() and "Traceback" not in proc.stderr


def test_projected_coordinates_in_geojson_are_refused(tmp_path: Path) -> None:
    ring = [[500000, 9260000], [510000, 9260000], [510000, 9270000], [500000, 9260000]]
    proc = _run("scan", str(_aoi_scan(tmp_path, {"type": "Polygon", "coordinates": [ring]})),
                "--out", "o", cwd=tmp_path)
    assert proc.returncode == 1
    assert "look like projected coordinates" in proc.stderr and "Traceback" not in proc.stderr


def test_impossible_date_names_the_key_and_value(tmp_path: Path) -> None:
    """Issue 18 item 9: ``end: 2024-02-30`` failed inside PyYAML with a traceback."""
    cfg = tmp_path / "scan.yaml"
    cfg.write_text(
        "aoi: {path: a.geojson}\n"
        "source: {kind: local, path: s}\n"
        "periods: {kind: quarter, start: 2024-01-01, end: 2024-02-30}\n"
    )
    proc = _run("scan", str(cfg), cwd=tmp_path)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "key 'periods.end'" in lines[0] and "'2024-02-30'" in lines[0]


def test_bad_alerts_files_are_one_line_with_exit_1(tmp_path: Path) -> None:
    """The library raises a class per cause (not found, unreadable, wrong content); the CLI
    still prints each as one line and exits 1, as it did when one class served all."""
    good = tmp_path / "good.geojson"
    good.write_text('{"type": "FeatureCollection", "features": []}')
    nameless = tmp_path / "nameless.geojson"
    nameless.write_text(
        '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": '
        '{"area_ha": 1.0}, "geometry": {"type": "Point", "coordinates": [-57.5, -6.6]}}]}'
    )
    garbage = tmp_path / "garbage.geojson"
    garbage.write_text("site_id;lon;lat\nmw-m-1;-57.5;-6.6\n")
    cases = {
        "missing.geojson": "alerts 'missing.geojson': no such file",
        str(nameless): "no 'site_id' column; is it a minewatch alerts file?",
        str(garbage): "garbage.geojson: cannot read",
    }
    for path, message in cases.items():
        proc = _run("alerts", "diff", path, str(good), cwd=tmp_path)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 1, (path, proc.stderr)
        assert len(lines) == 1 and lines[0].startswith("minewatch: error: "), proc.stderr
        assert message in lines[0]


def test_runs_of_a_folder_without_a_store_is_one_line(tmp_path: Path) -> None:
    proc = _run("runs", "list", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"minewatch: error: {str(tmp_path)!r} holds no run store (runs.sqlite); pass the "
        "output folder of a scan"
    ]
