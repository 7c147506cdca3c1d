"""load_aoi: readers, field conventions, and every kind of bad input (RELIABILITY rows 12-14)."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import pytest
import shapely
from pyproj import Transformer
from shapely.geometry import MultiPolygon, Polygon, box

from aoi import (
    AOI_COLUMNS,
    AOIConfig,
    AOIError,
    AOIFieldError,
    AOIGeometryError,
    AOINotFoundError,
    list_layers,
    load_aoi,
    load_aoi_file,
)
from tests.aoi.conftest import GeoJSONWriter, feature, square

# --------------------------------------------------------------------------------------------
# Readers
# --------------------------------------------------------------------------------------------


def _check_table(aois: gpd.GeoDataFrame) -> None:
    assert tuple(aois.columns) == AOI_COLUMNS
    assert aois.crs is not None and aois.crs.to_epsg() == 4326
    for column in ("aoi_id", "aoi_name", "aoi_kind"):
        assert all(isinstance(v, str) for v in aois[column])
    assert set(aois.geom_type) <= {"Polygon", "MultiPolygon"}
    assert aois.is_valid.all()
    assert list(aois.index) == list(range(len(aois)))


def test_geojson_amw_convention(amw_geojson: Path) -> None:
    aois = load_aoi(AOIConfig(path=amw_geojson))
    _check_table(aois)
    assert list(aois["aoi_id"]) == ["29801", "1001"]
    assert list(aois["aoi_name"]) == ["Munduruku", "Yanomami"]
    assert set(aois["aoi_kind"]) == {"indigenous_land"}
    assert aois.geometry.iloc[0].equals(box(-57.6, -6.7, -57.6 + 0.1, -6.7 + 0.1))


def test_exterior_rings_are_counter_clockwise(write_geojson: GeoJSONWriter) -> None:
    clockwise = {"type": "Polygon",
                 "coordinates": [[[0, 0], [0, 1], [1, 1], [1, 0], [0, 0]]]}
    path = write_geojson([feature(clockwise, id_field="1", name_field="a")])
    poly = load_aoi(AOIConfig(path=path)).geometry.iloc[0]
    assert shapely.is_ccw(poly.exterior)


def _gpkg_two_layers(tmp_path: Path) -> Path:
    path = tmp_path / "aois.gpkg"
    lands = gpd.GeoDataFrame(
        {"terrai_cod": [29801], "terrai_nom": ["Munduruku"], "fase_ti": ["Regularizada"]},
        geometry=[box(-57.6, -6.7, -57.5, -6.6)], crs="EPSG:4326",
    )
    parks = gpd.GeoDataFrame(
        {"WDPAID": [351814.0], "NAME": ["Jamanxim"], "DESIG_ENG": ["National Forest"]},
        geometry=[box(-55.8, -6.5, -55.6, -6.3)], crs="EPSG:4326",
    )
    lands.to_file(path, layer="funai_lands", driver="GPKG")
    parks.to_file(path, layer="wdpa_parks", driver="GPKG", mode="a")
    return path


def test_gpkg_layer_choice_and_conventions(tmp_path: Path) -> None:
    path = _gpkg_two_layers(tmp_path)
    assert list_layers(path) == ["funai_lands", "wdpa_parks"]
    lands = load_aoi(AOIConfig(path=path, layer="funai_lands"))
    _check_table(lands)
    assert lands.iloc[0][["aoi_id", "aoi_name", "aoi_kind"]].tolist() == [
        "29801", "Munduruku", "indigenous_land"]
    parks = load_aoi(AOIConfig(path=path, layer="wdpa_parks"))
    _check_table(parks)
    # WDPAID is a float in many WDPA releases; the id must not read "351814.0".
    assert parks.iloc[0][["aoi_id", "aoi_name", "aoi_kind"]].tolist() == [
        "351814", "Jamanxim", "protected_area"]


def test_gpkg_several_layers_and_none_given(tmp_path: Path) -> None:
    path = _gpkg_two_layers(tmp_path)
    with pytest.raises(AOIError, match=r"2 layers and no `layer` given; available layers: "
                                       r"funai_lands, wdpa_parks"):
        load_aoi(AOIConfig(path=path))


def test_gpkg_missing_layer(tmp_path: Path) -> None:
    path = _gpkg_two_layers(tmp_path)
    with pytest.raises(AOINotFoundError, match=r"no layer 'parks'; available layers: "
                                               r"funai_lands, wdpa_parks; set `layer`"):
        load_aoi(AOIConfig(path=path, layer="parks"))


def _utm_square(x: float, y: float, size_m: float) -> Polygon:
    return box(x, y, x + size_m, y + size_m)


def test_shapefile_projected_crs_is_reprojected(tmp_path: Path) -> None:
    path = tmp_path / "parks.shp"
    utm = _utm_square(560_000, 9_260_000, 10_000)  # SIRGAS 2000 / UTM 21S, near -56.46, -6.69
    gpd.GeoDataFrame({"WDPAID": [1], "NAME": ["Parque"]}, geometry=[utm],
                     crs="EPSG:31981").to_file(path)
    aois = load_aoi(AOIConfig(path=path))
    _check_table(aois)
    to_lonlat = Transformer.from_crs("EPSG:31981", "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(565_000, 9_265_000)
    centre = aois.geometry.iloc[0].centroid
    assert centre.x == pytest.approx(lon, abs=1e-4)
    assert centre.y == pytest.approx(lat, abs=1e-4)
    assert aois.iloc[0]["aoi_kind"] == "protected_area"


def test_shapefile_without_crs_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "nocrs.shp"
    gpd.GeoDataFrame({"WDPAID": [1], "NAME": ["P"]}, geometry=[box(0, 0, 1, 1)],
                     crs="EPSG:4326").to_file(path)
    path.with_suffix(".prj").unlink()
    with pytest.raises(AOIGeometryError, match=r"nocrs.shp: layer 'nocrs' \(ESRI Shapefile\) "
                                               r"has no CRS; expected one"):
        load_aoi(AOIConfig(path=path))


def test_geographic_crs_other_than_wgs84(tmp_path: Path) -> None:
    path = tmp_path / "sirgas.gpkg"
    gpd.GeoDataFrame({"terrai_cod": ["1"], "terrai_nom": ["A"]},
                     geometry=[box(-57.6, -6.7, -57.5, -6.6)], crs="EPSG:4674").to_file(path)
    aois = load_aoi(AOIConfig(path=path))
    assert aois.crs.to_epsg() == 4326
    assert aois.geometry.iloc[0].bounds == pytest.approx((-57.6, -6.7, -57.5, -6.6), abs=1e-6)


# --------------------------------------------------------------------------------------------
# Fields and conventions
# --------------------------------------------------------------------------------------------


def test_raisg_convention(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(-66, -14), codigo_tis="BO01", nombre="Tacana",
                                  categoria="Territorio Indigena Originario Campesino")])
    aois = load_aoi(AOIConfig(path=path))
    assert aois.iloc[0][["aoi_id", "aoi_name", "aoi_kind"]].tolist() == [
        "BO01", "Tacana", "indigenous_land"]


def test_explicit_fields_override_convention(amw_geojson: Path) -> None:
    aois = load_aoi(AOIConfig(path=amw_geojson, id_field="id", kind="territory"))
    assert list(aois["aoi_id"]) == ["BR29801_0", "BR1001_0"]
    assert list(aois["aoi_name"]) == ["Munduruku", "Yanomami"]
    assert set(aois["aoi_kind"]) == {"territory"}


def test_kind_map_on_convention_type_field(amw_geojson: Path) -> None:
    aois = load_aoi(AOIConfig(path=amw_geojson, kind_map={"Parque": "protected_area"}))
    assert list(aois["aoi_kind"]) == ["indigenous_land", "protected_area"]


def test_kind_field_values_used_as_kinds(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(0, 0), code="a", label="A", kind="protected_area"),
                          feature(square(1, 0), code="b", label="B", kind="indigenous_land")])
    aois = load_aoi(AOIConfig(path=path, id_field="code", name_field="label",
                              kind_field="kind", convention="custom"))
    assert list(aois["aoi_kind"]) == ["protected_area", "indigenous_land"]


def test_where_filter(amw_geojson: Path) -> None:
    aois = load_aoi(AOIConfig(path=amw_geojson, where="name_field = 'Yanomami'"))
    assert list(aois["aoi_id"]) == ["1001"]


def test_where_matching_nothing(amw_geojson: Path) -> None:
    with pytest.raises(AOIError, match=r"no features matching where \"name_field = 'Kayapo'\""):
        load_aoi(AOIConfig(path=amw_geojson, where="name_field = 'Kayapo'"))


def test_where_on_a_missing_field(amw_geojson: Path) -> None:
    with pytest.raises(AOIError, match=r"check the `where` filter .*fields: .*name_field"):
        load_aoi(AOIConfig(path=amw_geojson, where="nome = 'Kayapo'"))


def test_missing_field_lists_available_fields(amw_geojson: Path) -> None:
    with pytest.raises(AOIFieldError, match=(
        r"aois.geojson: layer 'aois' has no field 'nome'; available fields: id_field, "
        r"name_field, type_field, country, id; set `name_field` to one of them"
    )) as info:
        load_aoi(AOIConfig(path=amw_geojson, name_field="nome"))
    assert isinstance(info.value, KeyError)


def test_explicit_convention_field_missing(amw_geojson: Path) -> None:
    with pytest.raises(AOIFieldError, match=r"no field 'WDPAID' \(expected by the 'wdpa' "
                                            r"convention\); available fields: id_field"):
        load_aoi(AOIConfig(path=amw_geojson, convention="wdpa"))


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.gpkg"
    with pytest.raises(AOINotFoundError, match=rf"AOI file {missing} does not exist"):
        load_aoi(AOIConfig(path=missing))


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.geojson"
    path.write_text("<html>503</html>")
    with pytest.raises(AOIError, match=r"bad.geojson: cannot be read as a vector layer"):
        load_aoi(AOIConfig(path=path))


def test_case_insensitive_field_match(tmp_path: Path) -> None:
    path = tmp_path / "wdpa.shp"
    gpd.GeoDataFrame({"wdpaid": [7], "name": ["Lower"]}, geometry=[box(0, 0, 1, 1)],
                     crs="EPSG:4326").to_file(path)
    aois = load_aoi(AOIConfig(path=path))
    assert aois.iloc[0][["aoi_id", "aoi_name", "aoi_kind"]].tolist() == [
        "7", "Lower", "protected_area"]


def test_custom_layer_without_fields_is_logged(
    write_geojson: GeoJSONWriter, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_geojson([feature(square(0, 0), note="x"), feature(square(1, 0), note="y")],
                         name="hand.geojson")
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path))
    assert list(aois["aoi_id"]) == ["hand-0", "hand-1"]
    assert list(aois["aoi_name"]) == ["hand-0", "hand-1"]
    assert set(aois["aoi_kind"]) == {"other"}
    assert "set `id_field`" in caplog.text and "set `kind`" in caplog.text


def test_plain_id_and_name_fields_are_recognised(
    write_geojson: GeoJSONWriter, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_geojson([feature(square(0, 0), id="TI-0001", name="Sawré Muybu"),
                          feature(square(1, 0), id="TI-0002", name="Kayabi")], name="hand.geojson")
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path, kind="indigenous_land"))
    assert list(aois["aoi_id"]) == ["TI-0001", "TI-0002"]
    assert list(aois["aoi_name"]) == ["Sawré Muybu", "Kayabi"]
    assert caplog.text == ""  # no "no id_field", no "no name" warning
    nome = write_geojson([feature(square(0, 0), ID=7, Nome="Baú")], name="pt.geojson")
    assert load_aoi(AOIConfig(path=nome, kind="indigenous_land")).iloc[0][
        ["aoi_id", "aoi_name"]].tolist() == ["7", "Baú"]


@pytest.mark.parametrize(
    "ids_names",
    [[("1", "A"), (None, "B")], [("1", "A"), ("1", "B")]],
    ids=["an id missing", "one id for two names"],
)
def test_a_plain_id_that_is_not_an_id_numbers_the_aois(
    write_geojson: GeoJSONWriter, caplog: pytest.LogCaptureFixture, ids_names: list
) -> None:
    path = write_geojson([feature(square(2 * i, 0), id=i_, name=n)
                          for i, (i_, n) in enumerate(ids_names)], name="hand.geojson")
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path, kind="other"))
    assert list(aois["aoi_id"]) == ["hand-0", "hand-1"]
    assert list(aois["aoi_name"]) == ["A", "B"]
    assert "field 'id' is not a complete id" in caplog.text


def test_plain_id_shared_by_the_parts_of_one_area_merges_them(
    write_geojson: GeoJSONWriter,
) -> None:
    path = write_geojson([feature(square(0, 0), id="1", name="A"),
                          feature(square(0.5, 0), id="1", name="A")])
    aois = load_aoi(AOIConfig(path=path, kind="other"))
    assert list(aois["aoi_id"]) == ["1"] and aois.geometry.iloc[0].geom_type == "MultiPolygon"


def test_missing_name_falls_back_to_id(
    write_geojson: GeoJSONWriter, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_geojson([feature(square(0, 0), id_field="10149", name_field=None)])
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path))
    assert aois.iloc[0]["aoi_name"] == "10149"
    assert "1 AOI(s) have no name in field 'name_field'" in caplog.text


def test_missing_id_value(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(0, 0), id_field=None, name_field="A")])
    with pytest.raises(AOIError, match=r"1 feature\(s\) \(fid 0\) have no value in id field "
                                       r"'id_field'"):
        load_aoi(AOIConfig(path=path))


def test_multipart_features_of_one_aoi_are_merged(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(0, 0), id_field="1", name_field="A"),
                          feature(square(0.5, 0), id_field="1", name_field="A"),
                          feature(square(2, 0), id_field="2", name_field="B")])
    aois = load_aoi(AOIConfig(path=path))
    assert list(aois["aoi_id"]) == ["1", "2"]
    assert aois.geometry.iloc[0].geom_type == "MultiPolygon"


def test_one_id_for_two_aois_is_an_error(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(0, 0), id_field="1", name_field="A"),
                          feature(square(2, 0), id_field="1", name_field="B")])
    with pytest.raises(AOIError, match=r"aoi_id '1' is shared by 2 features with different "
                                       r"names/kinds .*set `id_field` to a unique field"):
        load_aoi(AOIConfig(path=path))


def test_load_aoi_file_convenience(amw_geojson: Path) -> None:
    aois = load_aoi_file(amw_geojson, kind="indigenous_land", where="id_field = '29801'")
    assert list(aois["aoi_id"]) == ["29801"]
    with pytest.raises(AOIError, match="set only one of them"):
        load_aoi_file(amw_geojson, kind="x", kind_field="type_field")


# --------------------------------------------------------------------------------------------
# Bad geometry (RELIABILITY rows 12-14)
# --------------------------------------------------------------------------------------------


def test_bow_tie_is_repaired_with_a_warning(
    write_geojson: GeoJSONWriter, caplog: pytest.LogCaptureFixture
) -> None:
    bow_tie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    path = write_geojson([feature(bow_tie, id_field="7", name_field="Bow")])
    with caplog.at_level(logging.WARNING, logger="aoi.layers"):
        aois = load_aoi(AOIConfig(path=path))
    geom = aois.geometry.iloc[0]
    assert geom.is_valid and isinstance(geom, MultiPolygon) and len(geom.geoms) == 2
    assert geom.area == pytest.approx(0.5)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "AOI '7' (Bow): invalid geometry (Self-intersection[0.5 0.5])" in warnings[0].message


@pytest.mark.parametrize("geometry", [None, {"type": "Polygon", "coordinates": []}],
                         ids=["null", "empty"])
def test_empty_geometry_is_an_error(write_geojson: GeoJSONWriter,
                                    geometry: dict[str, object] | None) -> None:
    path = write_geojson([feature(geometry, id_field="9", name_field="Nothing")])
    with pytest.raises(AOIGeometryError, match=r"AOI '9' \(Nothing\): empty geometry; expected "
                                               r"a Polygon or MultiPolygon"):
        load_aoi(AOIConfig(path=path))


def test_point_is_not_an_aoi(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature({"type": "Point", "coordinates": [0, 0]},
                                  id_field="1", name_field="P")])
    with pytest.raises(AOIGeometryError, match=r"AOI '1' \(P\): got a Point; expected a Polygon "
                                               r"or MultiPolygon; buffer points"):
        load_aoi(AOIConfig(path=path))


def test_swapped_lat_lon_is_detected(write_geojson: GeoJSONWriter) -> None:
    # Porgera, Papua New Guinea (143.1 E, 5.5 S) written as (lat, lon).
    swapped = {"type": "Polygon", "coordinates": [
        [[-5.5, 143.1], [-5.4, 143.1], [-5.4, 143.2], [-5.5, 143.2], [-5.5, 143.1]]]}
    path = write_geojson([feature(swapped, id_field="1", name_field="Porgera")])
    with pytest.raises(AOIGeometryError, match=r"latitude 143\.2 is outside -90\.\.90 .*"
                                               r"looks like \(lat, lon\) order; swap axes"):
        load_aoi(AOIConfig(path=path))


def test_longitude_out_of_range(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(200, 10, 1), id_field="1", name_field="Far")])
    with pytest.raises(AOIGeometryError, match=r"AOI '1' \(Far\): longitude 201 is outside "
                                               r"-180\.\.180; .*subtract 360"):
        load_aoi(AOIConfig(path=path))


def test_latitude_out_of_range(write_geojson: GeoJSONWriter) -> None:
    path = write_geojson([feature(square(120, 89.5, 1), id_field="1", name_field="Pole")])
    with pytest.raises(AOIGeometryError, match=r"latitude 90\.5 is outside -90\.\.90; expected "
                                               r"lon/lat degrees \(EPSG:4326\)"):
        load_aoi(AOIConfig(path=path))


def test_projected_coordinates_in_geojson(write_geojson: GeoJSONWriter) -> None:
    utm = dict(shapely.geometry.mapping(_utm_square(560_000, 9_260_000, 10_000)))
    path = write_geojson([feature(utm, id_field="1", name_field="Metres")])
    with pytest.raises(AOIGeometryError, match=r"look like projected coordinates \(metres\) "
                                               r"read as lon/lat"):
        load_aoi(AOIConfig(path=path))


def _expected_split() -> MultiPolygon:
    return MultiPolygon([box(179.0, -17.0, 180.0, -16.0), box(-180.0, -17.0, -179.0, -16.0)])


@pytest.mark.parametrize("ring", [
    [[179, -17], [181, -17], [181, -16], [179, -16], [179, -17]],
    [[179, -17], [-179, -17], [-179, -16], [179, -16], [179, -17]],
], ids=["longitudes-past-180", "jump-179-to-minus-179"])
def test_antimeridian_polygon_is_split(write_geojson: GeoJSONWriter,
                                       ring: list[list[float]]) -> None:
    path = write_geojson([feature({"type": "Polygon", "coordinates": [ring]},
                                  id_field="fj", name_field="Fiji")])
    geom = load_aoi(AOIConfig(path=path)).geometry.iloc[0]
    assert isinstance(geom, MultiPolygon) and len(geom.geoms) == 2
    assert geom.bounds == (-180.0, -17.0, 180.0, -16.0)
    assert geom.equals(_expected_split())
    assert all(shapely.is_ccw(p.exterior) for p in geom.geoms)


def test_empty_layer_with_id_field_says_empty(write_geojson: GeoJSONWriter) -> None:
    """Issue 18 item 9: an empty layer has no fields, so `id_field` was reported missing."""
    path = write_geojson([])
    with pytest.raises(AOIError, match=r"has no features; expected at least one AOI polygon"):
        load_aoi(AOIConfig(path=path, id_field="code", kind="indigenous_land"))
