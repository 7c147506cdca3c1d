/* minewatch review page: map, sortable table, evidence, confirm/reject, export.
 * Inlined into review.html by detection/review.py, with Leaflet; loads nothing from anywhere.
 * Text from the data is only ever set through textContent, never parsed as HTML. */
(function () {
  "use strict";

  var data = JSON.parse(document.getElementById("mw-data").textContent);
  var meta = data.meta || {};
  var features = data.features || [];
  var byId = {};
  features.forEach(function (f) { byId[String(f.id)] = f; });
  var storeKey = "minewatch-review:" + (meta.run_id || "") + ":" + features.length;
  var CLASS_FILL = {mining: "#f06524", deforestation: "#d9ef8b"};
  var CLASS_STROKE = {mining: "#a50f15", deforestation: "#1a9850"};
  var STATUS_STROKE = {new: "#e31a1c", expanding: "#ce1256", reactivated: "#6a3d9a"};
  var COVERAGE_FILL = {observed: "#e6e6e6", partly_observed: "#b3b3b3"};

  // ------------------------------------------------------------------ decisions
  var decisions = {};
  var notes = {};
  features.forEach(function (f) {
    var st = f.properties.review_status;
    if (st === "confirmed" || st === "rejected") { decisions[f.id] = st; }
  });
  function storage() {
    try { return window.localStorage; } catch (e) { return null; }
  }
  (function restore() {
    var s = storage();
    if (!s) { return; }
    try {
      var saved = JSON.parse(s.getItem(storeKey) || "null");
      if (saved && saved.decisions) {
        Object.keys(saved.decisions).forEach(function (k) {
          if (byId[k]) { decisions[k] = saved.decisions[k]; }
        });
        Object.keys(saved.notes || {}).forEach(function (k) {
          if (byId[k]) { notes[k] = saved.notes[k]; }
        });
      }
    } catch (e) { /* a corrupt entry is ignored */ }
  }());
  function persist() {
    var s = storage();
    if (!s) { return; }
    try { s.setItem(storeKey, JSON.stringify({decisions: decisions, notes: notes})); } catch (e) {}
  }

  // ------------------------------------------------------------------ map
  var map = L.map("map", {attributionControl: false, zoomSnap: 0.25, maxZoom: 19});
  var overlays = {};
  (data.overlays || []).forEach(function (o, i) {
    var b = o.bbox;
    var layer = L.imageOverlay(o.uri, [[b[1], b[0]], [b[3], b[2]]], {opacity: 1});
    overlays[o.name] = layer;
    if (i === 0) { layer.addTo(map); }
  });
  var coverage = L.geoJSON({type: "FeatureCollection", features: data.coverage || []}, {
    style: function (f) {
      var st = f.properties.status;
      var seen = st === "observed" || st === "partly_observed";
      return {
        color: "#777", weight: 0.5, fill: true, interactive: false,
        fillColor: COVERAGE_FILL[st] || "#555", fillOpacity: seen ? 0.0 : 0.45,
        dashArray: seen ? null : "2 3"
      };
    }
  });
  if ((data.coverage || []).length) {
    coverage.addTo(map);
    overlays["Coverage (grey: not observed)"] = coverage;
  }
  function style(f) {
    var p = f.properties;
    return {
      color: STATUS_STROKE[p.status] || CLASS_STROKE[p.alert_class] || "#333",
      weight: STATUS_STROKE[p.status] ? 2.5 : 1.5,
      dashArray: p.confidence_level === (data.confidence_levels || [])[0] ? "4 3" : null,
      fillColor: CLASS_FILL[p.alert_class] || "#999",
      fillOpacity: 0.45
    };
  }
  var shapes = {};
  var alertsLayer = L.geoJSON({type: "FeatureCollection", features: features}, {
    style: style,
    onEachFeature: function (f, layer) {
      shapes[f.id] = layer;
      layer.on("click", function () { select(f.id, false); });
    }
  }).addTo(map);
  var markers = {};
  var markerLayer = L.layerGroup().addTo(map);
  features.forEach(function (f) {
    var c = shapes[f.id].getBounds().getCenter();
    var m = L.circleMarker(c, {
      radius: 7, weight: 2, fill: false, color: style(f).color, className: "mw-marker"
    });
    m.on("click", function () { select(f.id, false); });
    m.bindTooltip(f.id + " " + f.properties.alert_class + " " + f.properties.status);
    m.addTo(markerLayer);
    markers[f.id] = m;
  });
  overlays["Alerts"] = alertsLayer;
  overlays["Alert markers"] = markerLayer;
  L.control.layers(null, overlays, {collapsed: false}).addTo(map);
  L.control.scale({imperial: false}).addTo(map);
  var all = L.featureGroup([alertsLayer]);
  if (features.length) {
    map.fitBounds(all.getBounds().pad(0.15));
  } else if ((data.coverage || []).length) {
    map.fitBounds(coverage.getBounds());
  } else if ((data.overlays || []).length) {
    var b0 = data.overlays[0].bbox;
    map.fitBounds([[b0[1], b0[0]], [b0[3], b0[2]]]);
  } else {
    map.setView([0, 0], 2);
  }

  // ------------------------------------------------------------------ table
  var table = document.getElementById("alerts");
  var tbody = table ? table.tBodies[0] : null;
  var rows = {};
  if (tbody) {
    Array.prototype.forEach.call(tbody.rows, function (tr) { rows[tr.dataset.siteId] = tr; });
  }
  function sortBy(key, direction) {
    if (!tbody) { return; }
    var th = table.querySelector('th[data-key="' + key + '"]');
    var numeric = th && th.dataset.type === "number";
    var first = numeric ? "descending" : "ascending";
    var other = numeric ? "ascending" : "descending";
    var dir = direction || (th && th.getAttribute("aria-sort") === first ? other : first);
    var list = Array.prototype.slice.call(tbody.rows);
    list.sort(function (a, b) {
      var va = a.querySelector('td[data-key="' + key + '"]').dataset.sort;
      var vb = b.querySelector('td[data-key="' + key + '"]').dataset.sort;
      var r = numeric ? parseFloat(va) - parseFloat(vb) : (va < vb ? -1 : va > vb ? 1 : 0);
      if (r === 0) { r = a.dataset.siteId < b.dataset.siteId ? -1 : 1; }
      return dir === "ascending" ? r : -r;
    });
    list.forEach(function (tr) { tbody.appendChild(tr); });
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key]"), function (h) {
      h.removeAttribute("aria-sort");
    });
    if (th) { th.setAttribute("aria-sort", dir); }
  }
  if (table) {
    Array.prototype.forEach.call(table.querySelectorAll("th[data-key] button"), function (b) {
      b.addEventListener("click", function () { sortBy(b.parentNode.dataset.key); });
    });
    tbody.addEventListener("click", function (ev) {
      var target = ev.target;
      var tr = target.closest("tr");
      if (!tr) { return; }
      var decision = target.dataset ? target.dataset.decision : null;
      if (decision) {
        setDecision(tr.dataset.siteId, decision);
        ev.stopPropagation();
        return;
      }
      select(tr.dataset.siteId, true);
    });
  }

  // ------------------------------------------------------------------ detail
  var current = null;
  function text(id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = value === null || value === undefined ? "" : String(value); }
  }
  function select(id, zoom) {
    var f = byId[id];
    if (!f) { return; }
    if (current && rows[current]) { rows[current].classList.remove("selected"); }
    current = id;
    if (rows[id]) {
      rows[id].classList.add("selected");
      if (!zoom) { rows[id].scrollIntoView({block: "nearest"}); }
    }
    if (zoom && shapes[id]) { map.fitBounds(shapes[id].getBounds().pad(1.5), {maxZoom: 16}); }
    var p = f.properties;
    document.getElementById("detail").hidden = false;
    document.getElementById("detail-empty").hidden = true;
    text("d-site", id);
    text("d-what", p.alert_class + ", " + p.status + " (" + p.area_ha + " ha, change " +
      p.area_change_ha + " ha)");
    var inside = (p.aoi_areas || []).map(function (a) {
      return a.area_ha + " ha in " + a.aoi_name;
    }).join(", ");
    text("d-where", p.aoi_relation + " " + p.aoi_name + " (" + p.aoi_kind + ", " + p.aoi_id +
      "), " + p.distance_to_boundary_m + " m from the boundary" +
      (inside ? "; " + inside : ""));
    text("d-place", p.lat + ", " + p.lon + (p.municipality ? "; " + p.municipality + " (" +
      p.state + ")" : ""));
    text("d-confidence", p.confidence + " (" + p.confidence_level + ")");
    text("d-observed", Math.round(p.observed_fraction * 100) + " % of the site observed");
    text("d-dates", "first image " + (p.first_image_date || "none") + ", last image " +
      (p.last_image_date || "none") + " (periods ending " + p.first_detected + " to " +
      p.last_detected + "); " + p.satellite + " " + (p.platforms || []).join("/") + " " +
      p.sensor + " " + (p.processing_level || ""));
    text("d-review", decisions[id] || "unreviewed");
    var ev = p.evidence || {};
    var chips = (data.chips || {})[id] || {};
    ["before_true_colour", "after_true_colour", "before_swir", "after_swir"].forEach(function (k) {
      var img = document.getElementById("d-" + k);
      var missing = document.getElementById("d-" + k + "-missing");
      if (chips[k]) {
        img.src = chips[k];
        img.hidden = false;
        missing.hidden = true;
      } else {
        img.removeAttribute("src");
        img.hidden = true;
        missing.hidden = false;
      }
    });
    ["before", "after"].forEach(function (side) {
      var span = ev[side + "_period_start"] ? ev[side + "_period_start"] + " to " +
        ev[side + "_period_end"] : "no imagery";
      var scenes = (ev.scenes || []).filter(function (s) { return s.role === side; });
      var dates = scenes.map(function (s) { return s.date || "?"; });
      dates = dates.filter(function (d, i) { return dates.indexOf(d) === i; }).join(", ");
      text("d-" + side + "-period", span + (dates ? "; scenes of " + dates : ""));
      text("d-" + side + "-scenes", scenes.map(function (s) {
        return (s.date || "?") + "  " + s.id;
      }).join("\n"));
    });
    var note = document.getElementById("d-note");
    note.value = notes[id] || "";
  }
  function setDecision(id, decision) {
    if (!byId[id]) { return; }
    if (decision === "confirmed" || decision === "rejected") {
      decisions[id] = decision;
    } else {
      delete decisions[id];
    }
    var tr = rows[id];
    if (tr) {
      var status = decisions[id] || "unreviewed";
      var cell = tr.querySelector('td[data-key="review_status"]');
      cell.textContent = status;
      cell.dataset.sort = status;
      tr.classList.remove("confirmed", "rejected");
      if (decisions[id]) { tr.classList.add(decisions[id]); }
    }
    if (markers[id]) {
      markers[id].setStyle({dashArray: decisions[id] === "rejected" ? "2 4" : null});
    }
    if (current === id) { text("d-review", decisions[id] || "unreviewed"); }
    persist();
    counts();
  }
  function counts() {
    var c = {confirmed: 0, rejected: 0};
    Object.keys(decisions).forEach(function (k) { c[decisions[k]] += 1; });
    text("review-counts", c.confirmed + " confirmed, " + c.rejected + " rejected, " +
      (features.length - c.confirmed - c.rejected) + " unreviewed");
  }
  Array.prototype.forEach.call(document.querySelectorAll("#detail [data-decision]"), function (b) {
    b.addEventListener("click", function () { if (current) { setDecision(current, b.dataset.decision); } });
  });
  document.getElementById("d-note").addEventListener("input", function (ev) {
    if (!current) { return; }
    if (ev.target.value) { notes[current] = ev.target.value; } else { delete notes[current]; }
    persist();
  });

  // ------------------------------------------------------------------ export
  function buildExport() {
    var now = new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
    var reviewer = document.getElementById("reviewer").value || "";
    var out = features.map(function (f) {
      var props = {};
      Object.keys(f.properties).forEach(function (k) { props[k] = f.properties[k]; });
      props.review_status = decisions[f.id] || "unreviewed";
      props.review_note = notes[f.id] || "";
      props.reviewed_at = decisions[f.id] ? now : null;
      props.reviewer = decisions[f.id] ? reviewer : null;
      return {type: "Feature", id: f.id, geometry: f.geometry, properties: props};
    });
    return JSON.stringify({
      type: "FeatureCollection",
      minewatch: meta,
      minewatch_review: {exported_at: now, reviewer: reviewer, run_id: meta.run_id || null,
                         tool: "minewatch review page"},
      features: out
    });
  }
  function exportReview() {
    var textOut = buildExport();
    api.lastExport = textOut;
    var blob = new Blob([textOut], {type: "application/geo+json"});
    var a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = "review-" + (meta.run_id || "alerts") + ".geojson";
    document.body.appendChild(a);
    a.click();
    setTimeout(function () { URL.revokeObjectURL(a.href); a.remove(); }, 1000);
    return textOut;
  }
  document.getElementById("export").addEventListener("click", exportReview);

  counts();
  Object.keys(decisions).forEach(function (k) { setDecision(k, decisions[k]); });
  var api = {
    map: map, markers: markers, shapes: shapes, decisions: decisions, notes: notes,
    select: select, setDecision: setDecision, sortBy: sortBy, buildExport: buildExport,
    exportReview: exportReview, lastExport: null, ready: true
  };
  window.minewatch = api;
}());
