"""Configuration of an AOI layer: where it is, which fields name the areas, how far to buffer.

An ``aoi:`` section of a scan config validates into :class:`AOIConfig`. Field conventions of the
common boundary sources are built in (:data:`CONVENTIONS`), so a WDPA, Amazon Mining Watch, RAISG
or FUNAI layer needs only its path; explicit fields override the convention.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

log = logging.getLogger(__name__)

PROTECTED_AREA = "protected_area"
INDIGENOUS_LAND = "indigenous_land"
OTHER = "other"

PACKAGE_PREFIX = "package:"
"""A path starting with this prefix names a file shipped inside an installed package,
e.g. ``package:aoi/data/munduruku.geojson``."""

ConventionName = Literal["auto", "wdpa", "amw", "raisg", "funai", "custom"]


@dataclass(frozen=True)
class Convention:
    """The field names and default kind of one well-known boundary source.

    Attributes:
        name: short name, as in :attr:`AOIConfig.convention`.
        id_field: field holding a stable identifier of the area.
        name_field: field holding its name.
        kind_field: field holding a designation/category (read only through ``kind_map``).
        kind: the kind every area of such a layer has unless ``kind_map`` says otherwise.
        detect: fields whose joint presence identifies the convention (``auto``).
    """

    name: str
    id_field: str
    name_field: str
    kind_field: str | None
    kind: str
    detect: tuple[str, ...]


CONVENTIONS: tuple[Convention, ...] = (
    # UNEP-WCMC World Database on Protected Areas (WDPA user manual 1.6; also the OECM layer).
    Convention("wdpa", "WDPAID", "NAME", "DESIG_ENG", PROTECTED_AREA, ("WDPAID", "NAME")),
    # FUNAI "terras indígenas" polygons (as used by Amazon Mining Watch for Brazil).
    Convention("funai", "terrai_cod", "terrai_nom", None, INDIGENOUS_LAND,
               ("terrai_cod", "terrai_nom")),
    # Amazon Mining Watch harmonised layers (indigenous_territories_impacts.geojson).
    Convention("amw", "id_field", "name_field", "type_field", INDIGENOUS_LAND,
               ("id_field", "name_field")),
    # RAISG indigenous territories (Bolivia, Ecuador, French Guiana layers of AMW).
    Convention("raisg", "codigo_tis", "nombre", "categoria", INDIGENOUS_LAND,
               ("codigo_tis", "nombre")),
)
"""Built-in field conventions, in the order ``auto`` tries them."""

PLAIN_ID_FIELDS: tuple[str, ...] = ("id",)
"""Fields taken as the id of a layer that matches no convention (a hand-made layer), in order,
when ``id_field`` is not set; used only when every feature has a distinct value."""

PLAIN_NAME_FIELDS: tuple[str, ...] = ("name", "nome", "nombre")
"""Fields taken as the name of a layer that matches no convention, in order, when
``name_field`` is not set."""


def convention_named(name: str) -> Convention | None:
    """The built-in convention called ``name``; None for ``custom`` (and ``auto``).

    Args:
        name: a value of :attr:`AOIConfig.convention`.

    Returns:
        The convention, or None when the name is ``custom`` or ``auto``.

    Raises:
        ValueError: the name is none of the known conventions.
    """
    if name in ("custom", "auto"):
        return None
    for convention in CONVENTIONS:
        if convention.name == name:
            return convention
    known = ", ".join(c.name for c in CONVENTIONS)
    raise ValueError(f"unknown AOI convention {name!r}; expected one of auto, {known}, custom")


def resolve_path(path: Path | str) -> Path:
    """Turn a configured path into a file-system path.

    ``package:aoi/data/munduruku.geojson`` names a file shipped inside an installed package (the
    first path element is the package); any other path is returned unchanged (``~`` expanded).

    Args:
        path: the configured path.

    Returns:
        A path on the file system.

    Raises:
        ValueError: a ``package:`` path names no package.
    """
    text = str(path)
    if not text.startswith(PACKAGE_PREFIX):
        return Path(text).expanduser()
    package, _, inner = text[len(PACKAGE_PREFIX):].lstrip("/").partition("/")
    if not package or not inner:
        raise ValueError(
            f"AOI path {text!r}: expected 'package:<package>/<file inside it>', "
            "e.g. 'package:aoi/data/munduruku.geojson'"
        )
    try:
        root = resources.files(package)
    except ModuleNotFoundError as exc:
        raise ValueError(f"AOI path {text!r}: no installed package {package!r}") from exc
    return Path(str(root.joinpath(inner)))


class AOIConfig(BaseModel, extra="forbid"):
    """Where an AOI layer is and how to read it.

    Attributes:
        path: the vector file (GeoJSON, GeoPackage, Shapefile or anything GDAL reads); a path
            ``package:aoi/data/<file>`` names a file shipped with minewatch.
        layer: the layer of a multi-layer source (GeoPackage); required when there are several.
        id_field: field holding a stable AOI identifier (overrides the convention).
        name_field: field holding the AOI name (overrides the convention).
        kind_field: field holding the raw designation, mapped to a kind through ``kind_map``
            (values missing from ``kind_map`` keep the convention's kind, or are used as is).
        kind: one kind for every area of the layer (``protected_area``, ``indigenous_land`` or
            another word); excludes ``kind_field``.
        kind_map: raw ``kind_field`` value -> kind.
        where: attribute filter in OGR SQL, applied while reading
            (e.g. ``name_field = 'Munduruku'``).
        buffer_m: distance around each AOI also watched (``aoi_relation = buffer``), metres.
        convention: field convention; ``auto`` detects it from the fields present.
    """

    path: Path
    layer: str | None = None
    id_field: str | None = None
    name_field: str | None = None
    kind_field: str | None = None
    kind: str | None = None
    kind_map: dict[str, str] = Field(default_factory=dict)
    where: str | None = None
    buffer_m: float = Field(default=5000.0, ge=0.0)
    convention: ConventionName = "auto"

    @field_validator("layer", "id_field", "name_field", "kind_field", "kind", "where")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be blank; leave it out instead")
        return value

    @field_validator("kind_map")
    @classmethod
    def _kinds_not_blank(cls, value: dict[str, str]) -> dict[str, str]:
        blank = [raw for raw, kind in value.items() if not kind.strip()]
        if blank:
            raise ValueError(f"kinds must not be blank (raw values {blank})")
        return value

    @model_validator(mode="after")
    def _kind_xor_kind_field(self) -> AOIConfig:
        if self.kind is not None and (self.kind_field is not None or self.kind_map):
            raise ValueError(
                f"kind={self.kind!r} fixes the kind of every area, but kind_field/kind_map read "
                "it per area; set only one of them"
            )
        return self

    def resolved_path(self) -> Path:
        """The configured path on the file system (``package:`` paths resolved).

        Returns:
            The file-system path of the layer.

        Raises:
            ValueError: a ``package:`` path names no installed package.
        """
        return resolve_path(self.path)
