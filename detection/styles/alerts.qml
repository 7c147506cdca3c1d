<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<!-- minewatch alerts: fill by alert_class (mining orange/red, deforestation yellow/green),
     outline by status (new red, expanding magenta, reactivated purple, stable/receding grey),
     outline dashed for confidence_level probable (detection.alerts.CONFIDENCE_LEVELS[0]), label site_id, status and confidence level;
     review_status edited from a drop-down (unreviewed / confirmed / rejected). Stored in the GeoPackage layer_styles table. -->
<qgis version="3.28.0-Firenze" styleCategories="Symbology|Labeling|Fields|Forms">
  <renderer-v2 type="categorizedSymbol" attr="alert_class" symbollevels="0" enableorderby="0" forceraster="0" referencescale="-1">
    <categories>
      <category value="mining" symbol="0" label="Mining" render="true"/>
      <category value="deforestation" symbol="1" label="Deforestation" render="true"/>
    </categories>
    <symbols>
      <symbol type="fill" name="0" alpha="0.85" clip_to_extent="1" force_rhr="0" frame_rate="10" is_animated="0">
        <data_defined_properties>
          <Option type="Map">
            <Option type="QString" name="name" value=""/>
            <Option name="properties"/>
            <Option type="QString" name="type" value="collection"/>
          </Option>
        </data_defined_properties>
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option type="QString" name="border_width_map_unit_scale" value="3x:0,0,0,0,0,0"/>
            <Option type="QString" name="color" value="240,101,36,210"/>
            <Option type="QString" name="joinstyle" value="miter"/>
            <Option type="QString" name="offset" value="0,0"/>
            <Option type="QString" name="offset_unit" value="MM"/>
            <Option type="QString" name="outline_color" value="165,15,21,255"/>
            <Option type="QString" name="outline_style" value="solid"/>
            <Option type="QString" name="outline_width" value="0.5"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="style" value="solid"/>
          </Option>
          <data_defined_properties>
            <Option type="Map">
              <Option type="QString" name="name" value=""/>
              <Option type="Map" name="properties">
                <Option type="Map" name="outlineColor">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;status&quot; = 'new' THEN '227,26,28,255' WHEN &quot;status&quot; = 'expanding' THEN '206,18,86,255' WHEN &quot;status&quot; = 'reactivated' THEN '106,61,154,255' ELSE '99,99,99,255' END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
                <Option type="Map" name="outlineStyle">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;confidence_level&quot; = 'probable' THEN 'dash' ELSE 'solid' END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
                <Option type="Map" name="outlineWidth">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;status&quot; IN ('new', 'expanding', 'reactivated') THEN 1.0 ELSE 0.4 END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
              </Option>
              <Option type="QString" name="type" value="collection"/>
            </Option>
          </data_defined_properties>
        </layer>
      </symbol>
      <symbol type="fill" name="1" alpha="0.85" clip_to_extent="1" force_rhr="0" frame_rate="10" is_animated="0">
        <data_defined_properties>
          <Option type="Map">
            <Option type="QString" name="name" value=""/>
            <Option name="properties"/>
            <Option type="QString" name="type" value="collection"/>
          </Option>
        </data_defined_properties>
        <layer class="SimpleFill" enabled="1" locked="0" pass="0">
          <Option type="Map">
            <Option type="QString" name="border_width_map_unit_scale" value="3x:0,0,0,0,0,0"/>
            <Option type="QString" name="color" value="217,239,139,200"/>
            <Option type="QString" name="joinstyle" value="miter"/>
            <Option type="QString" name="offset" value="0,0"/>
            <Option type="QString" name="offset_unit" value="MM"/>
            <Option type="QString" name="outline_color" value="26,152,80,255"/>
            <Option type="QString" name="outline_style" value="solid"/>
            <Option type="QString" name="outline_width" value="0.5"/>
            <Option type="QString" name="outline_width_unit" value="MM"/>
            <Option type="QString" name="style" value="solid"/>
          </Option>
          <data_defined_properties>
            <Option type="Map">
              <Option type="QString" name="name" value=""/>
              <Option type="Map" name="properties">
                <Option type="Map" name="outlineColor">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;status&quot; = 'new' THEN '227,26,28,255' WHEN &quot;status&quot; = 'expanding' THEN '206,18,86,255' WHEN &quot;status&quot; = 'reactivated' THEN '106,61,154,255' ELSE '26,152,80,255' END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
                <Option type="Map" name="outlineStyle">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;confidence_level&quot; = 'probable' THEN 'dash' ELSE 'solid' END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
                <Option type="Map" name="outlineWidth">
                  <Option type="bool" name="active" value="true"/>
                  <Option type="QString" name="expression" value="CASE WHEN &quot;status&quot; IN ('new', 'expanding', 'reactivated') THEN 1.0 ELSE 0.4 END"/>
                  <Option type="int" name="type" value="3"/>
                </Option>
              </Option>
              <Option type="QString" name="type" value="collection"/>
            </Option>
          </data_defined_properties>
        </layer>
      </symbol>
    </symbols>
    <rotation/>
    <sizescale/>
  </renderer-v2>
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
