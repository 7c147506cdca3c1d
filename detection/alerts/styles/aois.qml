<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- minewatch aois (the watched reserves): outline only, no fill, so the alerts and the imagery
     under them stay visible; labelled with aoi_name (aoi_id where a name is missing). -->
<qgis version="3.22.0-Białowieża" styleCategories="Symbology|Labeling">
  <renderer-v2 type="RuleRenderer" symbollevels="0" enableorderby="0" forceraster="0">
    <rules key="{minewatch-aois}">
      <rule key="{minewatch-aois-0}" symbol="0" label="Watched area (AOI) boundary, with its name"/>
    </rules>
    <symbols>
      <symbol type="fill" name="0" alpha="1" clip_to_extent="1" force_rhr="0">
        <layer class="SimpleFill" enabled="1" pass="0">
          <Option type="Map">
            <Option type="QString" name="color" value="0,0,0,0"/>
            <Option type="QString" name="style" value="no"/>
            <Option type="QString" name="outline_color" value="31,90,180,255"/>
            <Option type="QString" name="outline_style" value="solid"/>
            <Option type="QString" name="outline_width" value="0.8"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="joinstyle" value="round"/>
          </Option>
        </layer>
      </symbol>
    </symbols>
  </renderer-v2>
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName="coalesce(&quot;aoi_name&quot;, &quot;aoi_id&quot;)" isExpression="1" fontFamily="Sans Serif" fontSize="10" fontSizeUnit="Point" fontWeight="75" textColor="31,90,180,255" textOpacity="1" namedStyle="Bold">
        <text-buffer bufferDraw="1" bufferSize="1" bufferSizeUnits="MM" bufferColor="255,255,255,230" bufferOpacity="1" bufferJoinStyle="128" bufferNoFill="1"/>
      </text-style>
      <placement placement="4" dist="0" distUnits="MM" priority="3" offsetType="0" fitInPolygonOnly="1" centroidWhole="0" centroidInside="1"/>
      <rendering scaleVisibility="0" obstacle="0" drawLabels="1" displayAll="1" limitNumLabels="0" upsidedownLabels="0" mergeLines="0" minFeatureSize="0" labelPerPart="0" fontMinPixelSize="3" fontMaxPixelSize="10000" fontLimitPixelSize="0" zIndex="1"/>
    </settings>
  </labeling>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>2</layerGeometryType>
</qgis>
