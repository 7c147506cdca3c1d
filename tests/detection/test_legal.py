"""Legal status of sites against hand-made mining titles in ANM SIGMINE's schema."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

from aoi.errors import AOIFieldError
from aoi.titles import TITLE_COLUMNS, TitlesConfig, load_titles
from detection.alerts import build_feature_collection
from detection.sites import LegalConfig, assign_legal_status, normalise_phase
from tests.detection.conftest import UTM, to_wgs84, utm_box

#: The attribute fields of a SIGMINE shapefile (ANM), in its order.
SIGMINE_FIELDS = (
    "PROCESSO", "NUMERO", "ANO", "AREA_HA", "ID", "FASE", "ULT_EVENTO", "NOME", "SUBS", "USO",
    "UF",
)


def sigmine_layer(path: Path, rows: list[dict]) -> Path:
    """Write a SIGMINE-like shapefile in SIRGAS 2000 (EPSG:4674), as ANM ships it."""
    frame = gpd.GeoDataFrame(
        [{k: r.get(k) for k in SIGMINE_FIELDS} for r in rows],
        geometry=gpd.GeoSeries([r["geometry"] for r in rows], crs=UTM).to_crs(4674).values,
        crs="EPSG:4674",
    )
    pyogrio.write_dataframe(frame, path, driver="ESRI Shapefile", encoding="UTF-8")
    return path


def title(processo: str, fase: str, geometry, *, nome: str = "Mineração Exemplo Ltda") -> dict:
    numero, ano = processo.split("/")
    return {
        "PROCESSO": processo, "NUMERO": int(numero.replace(".", "")), "ANO": int(ano),
        "AREA_HA": geometry.area / 10_000, "ID": f"{{{processo}}}", "FASE": fase,
        "ULT_EVENTO": "264 - AUT PESQ/PAGAMENTO TAH EFETUADO EM 2024", "NOME": nome,
        "SUBS": "MINÉRIO DE OURO", "USO": "Industrial", "UF": "PA", "geometry": geometry,
    }


@pytest.fixture
def sigmine(tmp_path: Path) -> Path:
    return sigmine_layer(
        tmp_path / "PA.shp",
        [
            # A concession covering the left half of site A (x 0..200 of 0..400).
            title("850.100/2010", "CONCESSÃO DE LAVRA", utm_box(-1000, -1000, 1200, 3000)),
            # A research authorisation over site B.
            title("850.200/2021", "AUTORIZAÇÃO DE PESQUISA", utm_box(2900, -100, 600, 600)),
            # A mining permit inside the indigenous land, over site C.
            title("850.300/2019", "LAVRA GARIMPEIRA", utm_box(9900, -100, 600, 600)),
        ],
    )


@pytest.fixture
def aois() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"aoi_id": ["TI-1"], "aoi_name": ["Munduruku"], "aoi_kind": ["indigenous_land"]},
        geometry=to_wgs84([utm_box(9000, -2000, 5000, 5000)]),
        crs="EPSG:4326",
    )


@pytest.fixture
def sites() -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame(
        {"site_id": ["A", "B", "C", "D"], "period_end": ["2024-09-30"] * 4},
        geometry=to_wgs84(
            [
                utm_box(0, 0, 400, 200),  # A: half inside the concession
                utm_box(3000, 0, 300, 300),  # B: inside a research authorisation
                utm_box(10000, 0, 300, 300),  # C: inside the indigenous land and a permit
                utm_box(6000, 0, 300, 300),  # D: no title, outside the indigenous land
            ]
        ),
        crs="EPSG:4326",
    )


def test_sigmine_layer_read_with_its_convention(sigmine: Path) -> None:
    titles = load_titles(TitlesConfig(path=sigmine))
    assert tuple(titles.columns) == TITLE_COLUMNS
    assert titles.crs.to_epsg() == 4326
    first = titles.iloc[0]
    assert first["title_id"] == "850.100/2010"
    assert first["phase"] == "CONCESSÃO DE LAVRA"
    assert first["holder"] == "Mineração Exemplo Ltda"
    assert first["substance"] == "MINÉRIO DE OURO"
    assert (first["use"], first["state"]) == ("Industrial", "PA")
    assert first["valid_from"] is None


def test_titles_read_over_a_bounding_box(sigmine: Path, sites) -> None:
    """Only the titles over the scan's area are read (a state's layer is large)."""
    west, south, _, north = sites.geometry.iloc[0].bounds
    titles = load_titles(TitlesConfig(path=sigmine), bbox=(west, south, west + 0.001, north))
    assert titles["title_id"].tolist() == ["850.100/2010"]


def test_legal_status_rules(sigmine: Path, aois: gpd.GeoDataFrame, sites) -> None:
    titles = load_titles(TitlesConfig(path=sigmine))
    out = assign_legal_status(sites, aois=aois, titles=titles, config=LegalConfig())
    by_id = dict(zip(out["site_id"], zip(out["legal_status"], out["legal"], strict=True),
                     strict=True))

    status, legal = by_id["A"]
    assert status == "titled"
    assert [t["title_id"] for t in legal["titles"]] == ["850.100/2010"]
    assert legal["titles"][0]["share"] == pytest.approx(0.5, abs=0.01)
    assert legal["title_share"] == pytest.approx(0.5, abs=0.01)
    assert legal["titles"][0]["holder"] == "Mineração Exemplo Ltda"
    assert legal["titles"][0]["substance"] == "MINÉRIO DE OURO"

    status, legal = by_id["B"]
    assert status == "title_phase_not_extraction"
    assert legal["titles"][0]["phase"] == "AUTORIZAÇÃO DE PESQUISA"
    assert legal["titles"][0]["extraction_allowed"] is False
    assert legal["title_share"] == pytest.approx(1.0)

    # A garimpo permit does not open an indigenous land.
    status, legal = by_id["C"]
    assert status == "prohibited_area"
    assert legal["closed_areas"][0]["aoi_id"] == "TI-1"
    assert legal["titles"][0]["title_id"] == "850.300/2019"

    assert by_id["D"][0] == "no_title"
    assert by_id["D"][1]["titles"] == []


def test_legal_status_configurable(sigmine: Path, aois, sites) -> None:
    titles = load_titles(TitlesConfig(path=sigmine))
    config = LegalConfig(closed_aoi_kinds=[], extraction_phases=["autorizacao de pesquisa"])
    out = assign_legal_status(sites, aois=aois, titles=titles, config=config)
    assert list(out["legal_status"]) == [
        "title_phase_not_extraction", "titled", "title_phase_not_extraction", "no_title"
    ]


def test_without_title_layer_status_is_unknown_outside_closed_areas(aois, sites) -> None:
    out = assign_legal_status(sites, aois=aois, titles=None, config=LegalConfig())
    assert list(out["legal_status"]) == ["unknown", "unknown", "prohibited_area", "unknown"]
    assert out["legal"].iloc[0]["title_share"] is None


def test_generic_titles_with_validity(tmp_path: Path, aois, sites) -> None:
    path = tmp_path / "titles.geojson"
    frame = gpd.GeoDataFrame(
        {
            "id": ["T-1", "T-2"],
            "phase": ["extraction", "extraction"],
            "holder": ["Co A", "Co B"],
            "substance": ["gold", "gold"],
            "valid_from": ["2020-01-01", "2020-01-01"],
            "valid_to": ["2023-12-31", None],
        },
        geometry=to_wgs84([utm_box(-100, -100, 600, 400), utm_box(2900, -100, 600, 600)]),
        crs="EPSG:4326",
    )
    frame.to_file(path, driver="GeoJSON")
    titles = load_titles(TitlesConfig(path=path))
    assert titles["valid_to"].tolist() == ["2023-12-31", None]
    out = assign_legal_status(sites, aois=aois, titles=titles, config=LegalConfig())
    # T-1 expired before the period ended: site A has no valid title.
    assert list(out["legal_status"]) == ["no_title", "titled", "prohibited_area", "no_title"]


def test_missing_field_names_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "t.geojson"
    gpd.GeoDataFrame(
        {"PROCESSO": ["1/2020"], "FASE": ["x"]}, geometry=to_wgs84([utm_box(0, 0, 10, 10)]),
        crs="EPSG:4326",
    ).to_file(path, driver="GeoJSON")
    with pytest.raises(AOIFieldError, match=r"no field 'HOLDER'.*legal.titles.holder_field"):
        load_titles(TitlesConfig(path=path, holder_field="HOLDER"))


def test_phase_normalised() -> None:
    assert normalise_phase("Concessão de  Lavra") == normalise_phase("CONCESSAO DE LAVRA")


def test_feature_collection_carries_legal_status(
    sigmine: Path, aois, alerts: gpd.GeoDataFrame, metadata
) -> None:
    titles = load_titles(TitlesConfig(path=sigmine))
    labelled = assign_legal_status(
        alerts, aois=aois, titles=titles, config=LegalConfig(), period_end=dt.date(2024, 9, 30)
    )
    fc = build_feature_collection(labelled, metadata=metadata)
    props = {f["id"]: f["properties"] for f in fc["features"]}
    # mw-m-00000002 is the 300 m square at the origin, inside the concession's 200 m strip.
    assert props["mw-m-00000002"]["legal_status"] == "titled"
    assert props["mw-d-00000001"]["legal_status"] == "no_title"
    json.dumps(fc, allow_nan=False)
    unlabelled = build_feature_collection(alerts, metadata=metadata)
    assert {f["properties"]["legal_status"] for f in unlabelled["features"]} == {"unknown"}
