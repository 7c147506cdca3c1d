<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- minewatch alerts: labels site_id, status and confidence level; review_status edited from a
     drop-down (unreviewed / confirmed / rejected). The renderer (one rule per alert class and
     status, and a dashed outline over the lowest confidence level, all in the legend) is built
     from the alert contract by detection/qml.py and inserted before this is stored in the
     GeoPackage's layer_styles table. -->
<qgis version="3.28.0-Firenze" styleCategories="Symbology|Labeling|Fields|Forms">
  <labeling type="simple">
    <settings calloutType="simple">
      <text-style fieldName="&quot;site_id&quot; || '\n' || &quot;status&quot; || ', ' || &quot;confidence_level&quot;" isExpression="1" fontFamily="Sans Serif" fontSize="8" fontSizeUnit="Point" textColor="20,20,20,255" textOpacity="1" multilineAlign="3" namedStyle="Regular">
        <text-buffer bufferDraw="1" bufferSize="0.8" bufferSizeUnits="MM" bufferColor="255,255,255,230" bufferOpacity="1" bufferJoinStyle="128" bufferNoFill="1"/>
      </text-style>
      <text-format wrapChar="" multilineAlign="3" autoWrapLength="0" plussign="0" formatNumbers="0" decimals="3" reverseDirectionSymbol="0" leftDirectionSymbol="&lt;" rightDirectionSymbol="&gt;" placeDirectionSymbol="0" addDirectionSymbol="0"/>
      <placement placement="1" dist="0" distUnits="MM" priority="5" offsetType="0" fitInPolygonOnly="0" centroidWhole="1" centroidInside="1"/>
      <rendering scaleVisibility="1" scaleMin="0" scaleMax="250000" obstacle="1" drawLabels="1" displayAll="0" limitNumLabels="0" maxNumLabels="2000" upsidedownLabels="0" mergeLines="0" minFeatureSize="0" labelPerPart="0" fontMinPixelSize="3" fontMaxPixelSize="10000" fontLimitPixelSize="0" zIndex="0"/>
    </settings>
  </labeling>
  <fieldConfiguration>
    <field name="review_status" configurationFlags="None">
      <editWidget type="ValueMap">
        <config>
          <Option type="Map">
            <Option type="List" name="map">
              <Option type="Map"><Option type="QString" name="unreviewed" value="unreviewed"/></Option>
              <Option type="Map"><Option type="QString" name="confirmed" value="confirmed"/></Option>
              <Option type="Map"><Option type="QString" name="rejected" value="rejected"/></Option>
            </Option>
          </Option>
        </config>
      </editWidget>
    </field>
  </fieldConfiguration>
  <defaults>
    <default field="review_status" expression="'unreviewed'" applyOnUpdate="0"/>
  </defaults>
  <blendMode>0</blendMode>
  <featureBlendMode>0</featureBlendMode>
  <layerGeometryType>2</layerGeometryType>
</qgis>
