<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- minewatch sites_history (one footprint per site and period): outline only, thin, in the
     alert class's outline colour, so earlier footprints show under the current alerts without
     hiding them; filter on period_label to see one period. The renderer (one rule per alert
     class) is built by detection/qml.py and inserted before this is stored in the GeoPackage's
     layer_styles table. -->
<qgis version="3.22.0-Białowieża" styleCategories="Symbology">
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>2</layerGeometryType>
</qgis>
