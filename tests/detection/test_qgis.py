"""alerts.gpkg in real QGIS 3.22 and GDAL 3.6 (Debian's, headless): styles, legend, no warnings.

QGIS runs ``tests/detection/qgis_render.py`` under the system Python; it renders the styled layers
and a print layout and reads the legend back from the layout's legend model.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import geopandas as gpd
import pyogrio
import pytest

from detection.alerts import (
    CONFIDENCE_LEVELS,
    STATUSES,
    alert_rules,
    history_rules,
    write_geopackage,
)
from detection.sites import append_history
from models.detector import ALERT_CLASSES
from tests.detection.conftest import to_wgs84, utm_box
from tiles.periods import Period

SYSTEM_PYTHON = os.environ.get("MINEWATCH_QGIS_PYTHON", "/usr/bin/python3")
RENDER_SCRIPT = Path(__file__).with_name("qgis_render.py")
THRESHOLDS = dict(zip(CONFIDENCE_LEVELS, (0.5, 0.7, 0.9), strict=True))
QT_SOLID, QT_DASH, QT_NO_BRUSH = 1, 2, 0  # Qt.PenStyle / Qt.BrushStyle

#: Opens a GeoPackage with the system GDAL, reads every feature of every layer and prints the
#: warnings and errors GDAL raised.
GDAL_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from osgeo import gdal, ogr
    messages = []
    gdal.PushErrorHandler(lambda cls, no, msg: messages.append([cls, no, msg]))
    ds = ogr.Open(sys.argv[1])
    for i in range(ds.GetLayerCount()):
        layer = ds.GetLayer(i)
        for feature in layer:
            feature.items()
    print("RESULT " + json.dumps({"gdal": gdal.__version__, "messages": messages}))
    """
)


def _system_python_has(module: str) -> bool:
    if not shutil.which(SYSTEM_PYTHON):
        return False
    probe = subprocess.run(
        [SYSTEM_PYTHON, "-c", f"import {module}"], capture_output=True, timeout=60, check=False
    )
    return probe.returncode == 0


needs_qgis = pytest.mark.skipif(
    not _system_python_has("qgis.core"),
    reason=f"QGIS not found for {SYSTEM_PYTHON} (apt-get install python3-qgis qgis-providers)",
)
needs_gdal = pytest.mark.skipif(
    not _system_python_has("osgeo.ogr"),
    reason=f"GDAL's Python bindings not found for {SYSTEM_PYTHON} (apt-get install python3-gdal)",
)


def _run_system_python(args: list[str], tmp_path: Path) -> dict[str, Any]:
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700, exist_ok=True)
    # A clean environment: the venv's GDAL/PROJ settings (PROJ_DATA, GDAL_DATA...) would point
    # the system QGIS and GDAL at data of other versions.
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_RUNTIME_DIR": str(runtime),
    }
    run = subprocess.run(
        [SYSTEM_PYTHON, *args], capture_output=True, text=True, timeout=300, env=env, check=False
    )
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith("RESULT ")]
    assert run.returncode == 0 and lines, run.stderr[-2000:]
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("RESULT "))
    result["stderr"] = run.stderr
    return result


@pytest.fixture
def gpkg(alerts: gpd.GeoDataFrame, q3: Period, tmp_path: Path) -> Path:
    """A run's GeoPackage: three alerts (new, expanding, stable; one of low confidence)."""
    coverage = gpd.GeoDataFrame(
        {"tile_id": ["T1", "T2"], "status": ["observed", "not_observed"]},
        geometry=to_wgs84([utm_box(-500, -500, 3000, 3000), utm_box(2500, -500, 3000, 3000)]),
        crs="EPSG:4326",
    )
    aois = gpd.GeoDataFrame(
        {"aoi_id": ["TI-1"], "aoi_name": ["Munduruku"], "aoi_kind": ["indigenous_land"]},
        geometry=to_wgs84([utm_box(-1000, -1000, 10_000, 10_000)]),
        crs="EPSG:4326",
    )
    history = append_history(None, alerts.assign(split_from=None), q3)
    path = tmp_path / "alerts.gpkg"
    write_geopackage(
        path, alerts=alerts, coverage=coverage, aois=aois, history=history, thresholds=THRESHOLDS
    )
    return path


@needs_qgis
def test_qgis_renders_the_stored_styles_and_a_legend_that_explains_them(
    gpkg: Path, tmp_path: Path
) -> None:
    out = tmp_path / "render"
    out.mkdir()
    got = _run_system_python([str(RENDER_SCRIPT), str(gpkg), str(out)], tmp_path)
    layers = got["layers"]

    # Opening the file: nothing logged by QGIS or by GDAL through it, nothing on stderr.
    assert got["messages"] == [] and "ERROR" not in got["stderr"], got
    alerts = layers["alerts"]
    assert alerts["valid"] and alerts["features"] == 3
    # The default style from layer_styles: one rule per class and status, none data-defined.
    assert alerts["renderer"] == "RuleRenderer" and alerts["data_defined"] == 0
    low = f"{CONFIDENCE_LEVELS[0].capitalize()} confidence (dashed outline)"
    expected = [f"{c.capitalize()}: {s}" for c in ALERT_CLASSES for s in STATUSES]
    assert set(expected) < set(alerts["rules"]) and alerts["rules"][-1] == low
    assert alerts["strokes"][-1] == QT_DASH and alerts["brushes"][-1] == QT_NO_BRUSH
    assert set(alerts["strokes"][:-1]) == {QT_SOLID}
    assert alerts["labels"] is True and alerts["review_widget"] == "ValueMap"
    # Dates are dates, in QGIS too.
    assert alerts["field_types"]["first_detected"] == "Date"
    assert layers["sites_history"]["field_types"]["period_end"] == "Date"
    # AOIs: outline only (no fill to hide the alerts), labelled with the name.
    aois = layers["aois"]
    assert aois["brushes"] == [QT_NO_BRUSH] and "aoi_name" in aois["label_field"]
    history = layers["sites_history"]
    assert history["rules"] == [r.label for r in history_rules()]
    assert set(history["brushes"]) == {QT_NO_BRUSH}
    assert layers["coverage"]["filters"][:2] == [
        "\"status\" = 'observed'",
        "\"status\" = 'partly_observed'",
    ]

    # The print layout's legend, read back from its model, lists what the map draws.
    layout = got["layout"]
    assert layout["legend"]["alerts"] == [r.label for r in alert_rules()]
    assert layout["legend"]["sites_history"] == history["rules"]
    assert layout["legend"]["aois"] == aois["rules"]
    assert layout["legend"]["coverage"][0] == "Observed"
    # Both images drawn: ink on the page, and the mining fill among it.
    for name, image in (("map.png", got["map"]), ("layout.png", layout["pixels"])):
        assert (out / name).stat().st_size > 10_000
        assert image["inked"] > 0.05 * image["width"] * image["height"], (name, image)
        assert image["mining"] > 0, (name, image)


@needs_gdal
def test_gdal_3_6_opens_the_geopackage_without_warnings(gpkg: Path, tmp_path: Path) -> None:
    got = _run_system_python(["-c", GDAL_SCRIPT, str(gpkg)], tmp_path)
    assert got["messages"] == [], got

    # The check sees warnings: a GeoPackage 1.4 (this venv's GDAL default) makes GDAL < 3.7 warn.
    newer = tmp_path / "v14.gpkg"
    pyogrio.write_dataframe(pyogrio.read_dataframe(gpkg, layer="aois"), newer, layer="aois")
    control = _run_system_python(["-c", GDAL_SCRIPT, str(newer)], tmp_path)
    if tuple(int(p) for p in control["gdal"].split(".")[:2]) >= (3, 7):
        pytest.skip(f"system GDAL {control['gdal']} reads GeoPackage 1.4 without a warning")
    assert any("10400" in m[2] for m in control["messages"]), control
