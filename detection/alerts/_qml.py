"""The QGIS styles (QML) stored in a run's GeoPackage, the alerts renderer built from the contract.

Each layer's style is a file in ``detection/alerts/styles``. For ``alerts`` and
``sites_history`` the file holds the rest (labels, the review drop-down) and the rule-based
renderer is built here from the contract's words (:data:`models.detector.ALERT_CLASSES`,
:data:`detection.alerts.STATUSES`, :data:`detection.alerts.CONFIDENCE_LEVELS`): one rule per
class and status and one for the lowest confidence level, so QGIS's legend (and a print
layout's) lists every colour and line the map draws; nothing is a data-defined override hiding
its meaning from the legend.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from importlib import resources
from types import MappingProxyType
from typing import NamedTuple

from detection.alerts._alerts import CONFIDENCE_LEVELS, STATUSES
from detection.errors import ConfigError
from models.detector import ALERT_CLASSES

#: Layers of the GeoPackage and the QML file stored as each one's default style.
STYLE_FILES: Mapping[str, str] = MappingProxyType(
    {
        "alerts": "alerts.qml",
        "coverage": "coverage.qml",
        "aois": "aois.qml",
        "sites_history": "sites_history.qml",
    }
)

#: Fill and class outline (QGIS ``r,g,b,a``) of each alert class.
CLASS_COLOURS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "mining": ("240,101,36,210", "165,15,21,255"),
        "deforestation": ("217,239,139,200", "26,152,80,255"),
    }
)

#: Outline of each status, in legend order: colour (``None``: the class outline) and width (mm).
STATUS_OUTLINES: Mapping[str, tuple[str | None, float]] = MappingProxyType(
    {
        "new": ("227,26,28,255", 1.0),
        "expanding": ("206,18,86,255", 1.0),
        "reactivated": ("106,61,154,255", 1.0),
        "stable": (None, 0.4),
        "receding": ("99,99,99,255", 0.4),
    }
)

#: The outline drawn over a site of the lowest confidence level: colour, width (mm), line style.
LOW_CONFIDENCE_OUTLINE: tuple[str, float, str] = ("20,20,20,255", 0.6, "dash")

#: A rule's fill where it draws an outline only.
NO_FILL = ""


class Rule(NamedTuple):
    """One rule of a rule-based renderer: legend label, filter and the fill symbol's look."""

    label: str
    expression: str
    fill: str  # QGIS "r,g,b,a"; NO_FILL for an outline only
    outline: str
    width: float  # mm
    line: str = "solid"  # QGIS pen style: solid, dash, dot...


_DOCTYPE = "<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>\n"


def style_qml(layer: str) -> str:
    """The QML style stored for ``layer`` (one of :data:`STYLE_FILES`).

    Raises:
        DetectionError: no style is shipped for ``layer``.
    """
    if layer not in STYLE_FILES:
        raise ConfigError(f"no QGIS style for layer {layer!r}; styled: {list(STYLE_FILES)}")
    text = (
        resources.files("detection.alerts")
        .joinpath("styles")
        .joinpath(STYLE_FILES[layer])
        .read_text(encoding="utf-8")
    )
    rules = {"alerts": alert_rules, "sites_history": history_rules}.get(layer)
    if rules is None:
        return text
    root = ET.fromstring(text)
    root.insert(0, rule_renderer(layer, rules()))
    return _DOCTYPE + ET.tostring(root, encoding="unicode") + "\n"


def alert_rules() -> list[Rule]:
    """The rules of the alerts renderer, in legend order.

    One rule per class and status (``Mining: new`` ...): fill by class, outline colour and width
    by status; then ``Other`` for a class or status the style does not know; then the dashed
    outline of the lowest confidence level, drawn over the site's own symbol.
    """
    rules = [
        Rule(
            f"{cls.capitalize()}: {status}",
            f"\"alert_class\" = '{cls}' AND \"status\" = '{status}'",
            _colours(cls)[0],
            *_outline(cls, status),
        )
        for cls in ALERT_CLASSES
        for status in _statuses()
    ]
    known = f'"alert_class" IN ({_quoted(ALERT_CLASSES)}) AND "status" IN ({_quoted(_statuses())})'
    # Not ELSE: QGIS's ELSE would also skip a site that only the confidence rule matches.
    rules.append(Rule("Other class or status", f"NOT ({known})", *_colours(""), 0.4))
    low = CONFIDENCE_LEVELS[0]
    rules.append(
        Rule(
            f"{low.capitalize()} confidence (dashed outline)",
            f"\"confidence_level\" = '{low}'",
            NO_FILL,
            *LOW_CONFIDENCE_OUTLINE,
        )
    )
    return rules


def history_rules() -> list[Rule]:
    """The rules of the site history renderer: a thin outline in each class's outline colour."""
    rules = [
        Rule(
            f"{cls.capitalize()} footprint in a period",
            f"\"alert_class\" = '{cls}'",
            NO_FILL,
            _colours(cls)[1],
            0.26,
        )
        for cls in ALERT_CLASSES
    ]
    rules.append(Rule("Other footprint in a period", "ELSE", NO_FILL, _colours("")[1], 0.26))
    return rules


def rule_renderer(name: str, rules: list[Rule]) -> ET.Element:
    """A QGIS ``<renderer-v2>`` of type ``RuleRenderer``: one fill symbol per rule."""
    renderer = ET.Element(
        "renderer-v2",
        {"type": "RuleRenderer", "symbollevels": "0", "enableorderby": "0", "forceraster": "0"},
    )
    parent = ET.SubElement(renderer, "rules", key=f"{{minewatch-{name}}}")
    symbols = ET.SubElement(renderer, "symbols")
    for index, rule in enumerate(rules):
        ET.SubElement(
            parent,
            "rule",
            key=f"{{minewatch-{name}-{index}}}",
            filter=rule.expression,
            symbol=str(index),
            label=rule.label,
        )
        symbols.append(_fill_symbol(str(index), rule))
    return renderer


def _statuses() -> list[str]:
    """:data:`STATUSES` in legend order (those without an outline of their own last)."""
    return [s for s in STATUS_OUTLINES if s in STATUSES] + [
        s for s in STATUSES if s not in STATUS_OUTLINES
    ]


def _quoted(words: Iterable[str]) -> str:
    return ", ".join(f"'{w}'" for w in words)


def _colours(cls: str) -> tuple[str, str]:
    """Fill and outline of ``cls`` (grey for a class the style does not know)."""
    return CLASS_COLOURS.get(cls, ("200,200,200,200", "99,99,99,255"))


def _outline(cls: str, status: str) -> tuple[str, float]:
    colour, width = STATUS_OUTLINES.get(status, (None, 0.4))
    return colour or _colours(cls)[1], width


def _fill_symbol(name: str, rule: Rule) -> ET.Element:
    """A QGIS fill symbol with one SimpleFill layer drawing ``rule``'s look."""
    symbol = ET.Element(
        "symbol", type="fill", name=name, alpha="1", clip_to_extent="1", force_rhr="0"
    )
    layer = ET.SubElement(symbol, "layer", {"class": "SimpleFill", "enabled": "1", "pass": "0"})
    props = ET.SubElement(layer, "Option", type="Map")
    values = {
        "color": rule.fill or "0,0,0,0",
        "style": "solid" if rule.fill else "no",
        "outline_color": rule.outline,
        "outline_style": rule.line,
        "outline_width": str(rule.width),
        "outline_width_unit": "MM",
        "joinstyle": "miter",
    }
    for key, value in values.items():
        ET.SubElement(props, "Option", type="QString", name=key, value=value)
    return symbol
