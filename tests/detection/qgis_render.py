"""Open a run's alerts.gpkg in real QGIS (headless), render its styled layers and a print layout.

Runs under the system Python that has QGIS (``/usr/bin/python3 qgis_render.py GPKG OUT_DIR``,
``QT_QPA_PLATFORM=offscreen``), not the project's venv. Writes ``OUT_DIR/map.png`` (the styled
layers) and ``OUT_DIR/layout.png`` (a print layout: map, legend, title) and prints one line
``RESULT {json}``: what QGIS made of each layer, the legend entries read back from the layout's
legend model, the messages QGIS (and GDAL through it) logged while opening the file, and pixel
counts of the two images. ``tests/detection/test_qgis.py`` runs it; run it by hand on a demo's
``alerts.gpkg`` to refresh ``docs/img/qgis-alerts.png``.
"""

import json
import os
import sys

from qgis.core import (
    QgsApplication,
    QgsLayoutExporter,
    QgsLayoutItemLabel,
    QgsLayoutItemLegend,
    QgsLayoutItemMap,
    QgsLayoutPoint,
    QgsLayoutSize,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsPrintLayout,
    QgsProject,
    QgsUnitTypes,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QSize, Qt
from qgis.PyQt.QtGui import QColor, QFont, QImage

#: Layers drawn, top first.
LAYERS = ("alerts", "sites_history", "aois", "coverage")
#: The mining fill of the alerts style (r, g, b), to find it in the images.
MINING_FILL = (240, 101, 36)


def layer_info(layer):
    """What QGIS made of one layer: validity, renderer, labels, field types."""
    renderer = layer.renderer()
    info = {
        "valid": layer.isValid(),
        "features": layer.featureCount(),
        "renderer": renderer.type() if renderer else None,
        "labels": bool(layer.labelsEnabled()),
        "field_types": {f.name(): f.typeName() for f in layer.fields()},
    }
    if info["renderer"] == "RuleRenderer":
        rules = renderer.rootRule().children()
        info["rules"] = [r.label() for r in rules]
        info["filters"] = [r.filterExpression() for r in rules]
        info["strokes"] = [int(r.symbol().symbolLayer(0).strokeStyle()) for r in rules]
        info["brushes"] = [int(r.symbol().symbolLayer(0).brushStyle()) for r in rules]
        # Data-defined overrides draw what no legend shows.
        info["data_defined"] = sum(
            r.symbol().symbolLayer(0).dataDefinedProperties().hasActiveProperties() for r in rules
        )
    if info["renderer"] == "singleSymbol":
        symbol_layer = renderer.symbol().symbolLayer(0)
        info["brushes"] = [int(symbol_layer.brushStyle())]
    if info["labels"]:
        info["label_field"] = layer.labeling().settings().fieldName
    idx = layer.fields().indexOf("review_status")
    if idx >= 0:
        info["review_widget"] = layer.editorWidgetSetup(idx).type()
    return info


def pixels(image):
    """Counts of non-white pixels and of pixels near the mining fill."""
    image = image.convertToFormat(QImage.Format_RGB32)
    inked = mining = 0
    for y in range(image.height()):
        for x in range(0, image.width()):
            c = QColor(image.pixel(x, y))
            rgb = (c.red(), c.green(), c.blue())
            inked += rgb != (255, 255, 255)
            mining += all(abs(a - b) <= 30 for a, b in zip(rgb, MINING_FILL, strict=True))
    return {"width": image.width(), "height": image.height(), "inked": inked, "mining": mining}


def extent_of(layers):
    """The alerts' extent with a margin (the AOIs' where there is no alert)."""
    alerts = layers["alerts"]
    extent = alerts.extent() if alerts.featureCount() else layers["aois"].extent()
    extent.scale(1.4)
    return extent


def render_map(layers, extent, path):
    settings = QgsMapSettings()
    settings.setLayers([layers[n] for n in LAYERS if n in layers])
    settings.setDestinationCrs(layers["alerts"].crs())
    settings.setExtent(extent)
    settings.setOutputSize(QSize(800, 600))
    settings.setBackgroundColor(QColor(255, 255, 255))
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    image.save(path, "PNG")
    return pixels(image)


def render_layout(project, layers, extent, path):
    """A print layout (A4 landscape): title, map, legend. Returns legend entries and pixels."""
    layout = QgsPrintLayout(project)
    layout.initializeDefaults()
    layout.setName("minewatch alerts")
    title = QgsLayoutItemLabel(layout)
    title.setText("minewatch alerts")
    title.setFont(QFont("Sans Serif", 16))
    title.attemptMove(QgsLayoutPoint(10, 6, QgsUnitTypes.LayoutMillimeters))
    title.attemptResize(QgsLayoutSize(180, 10, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(title)
    item_map = QgsLayoutItemMap(layout)
    item_map.attemptMove(QgsLayoutPoint(10, 20, QgsUnitTypes.LayoutMillimeters))
    item_map.attemptResize(QgsLayoutSize(175, 180, QgsUnitTypes.LayoutMillimeters))
    item_map.setLayers([layers[n] for n in LAYERS if n in layers])
    item_map.setExtent(extent)
    item_map.setFrameEnabled(True)
    layout.addLayoutItem(item_map)
    legend = QgsLayoutItemLegend(layout)
    legend.setTitle("Legend")
    legend.setLinkedMap(item_map)
    legend.attemptMove(QgsLayoutPoint(190, 20, QgsUnitTypes.LayoutMillimeters))
    layout.addLayoutItem(legend)
    legend.adjustBoxSize()
    model = legend.model()
    entries = {}
    for node in model.rootGroup().findLayers():
        entries[node.layer().name()] = [
            n.data(Qt.DisplayRole) for n in model.layerLegendNodes(node)
        ]
    # renderPageToImage, not exportToImage: that one asks GDAL to write metadata into the PNG,
    # which GDAL's PNG driver refuses with an error on stderr.
    image = QgsLayoutExporter(layout).renderPageToImage(0, QSize(), 80)
    saved = image.save(path, "PNG")
    return {"saved": saved, "legend": entries, "pixels": pixels(image)}


def main():
    gpkg, out_dir = sys.argv[1], sys.argv[2]
    app = QgsApplication([], False)
    app.initQgis()
    messages = []
    QgsApplication.messageLog().messageReceived.connect(
        lambda message, tag, level: messages.append([tag, int(level), message])
    )
    project = QgsProject.instance()
    layers = {}
    for name in reversed(LAYERS):  # each added layer goes on top of the layer tree
        layer = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
        if layer.isValid():
            project.addMapLayer(layer)
            layers[name] = layer
    app.processEvents()
    out = {"layers": {n: layer_info(layer) for n, layer in layers.items()}}
    out["messages"] = list(messages)
    extent = extent_of(layers)
    out["map"] = render_map(layers, extent, os.path.join(out_dir, "map.png"))
    out["layout"] = render_layout(project, layers, extent, os.path.join(out_dir, "layout.png"))
    print("RESULT " + json.dumps(out), flush=True)
    # QGIS 3.22 may crash while tearing down offscreen; the result is out, leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
