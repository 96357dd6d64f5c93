// The one map set-up of the pages (Leaflet, served from this server): the base layer the server configures
// (GET /api/map/config) — the app's own tile archive, a court's tile server, or the district outlines shipped
// with the app — an attribution without Leaflet's prefix, and the tiles' datum: when tiles are GCJ-02 every
// WGS-84 position is shifted for display (toMap) and every click shifted back (fromMap) before it is used.
import { api, token } from "./api.js";
import { datumFor } from "./datum.js";

const CITY = { color: "#4a6c9e", weight: 2, fillColor: "#10233f", fillOpacity: 0.7 };
const DISTRICT = { color: "#35507a", weight: 1, fill: false };
const DISTRICT_ZOOM = 9;  // from this zoom on, district names replace city names
export const FENCE_COLORS = { no_go: "#ff3b46", jurisdiction: "#3d8bfd", target: "#f5a524" };

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

// Tiles of the app's own archive are an API route like any other (the session token, never in a URL): each
// tile is fetched with the bearer token and shown from a blob: URL (the CSP allows blob: images).
const AuthorisedTiles = L.TileLayer.extend({
  createTile(coords, done) {
    const img = document.createElement("img");
    img.alt = "";
    fetch(this.getTileUrl(coords), { headers: { Authorization: `Bearer ${token()}` } })
      .then((response) => (response.ok ? response.blob() : Promise.reject(new Error(`tile ${response.status}`))))
      .then((blob) => {
        img.onload = () => { URL.revokeObjectURL(img.src); done(null, img); };
        img.src = URL.createObjectURL(blob);
      })
      .catch((error) => done(error, img));
    return img;
  },
});

/**
 * Makes the map in element `id` and draws its base layer. options: Leaflet map options, plus `names` (draw
 * city and district names over the outlines, as the wall does). Resolves to {map, config, toMap, fromMap,
 * geoJson(feature, style)}.
 */
export async function createMap(id, options = {}) {
  const { names = false, ...leaflet } = options;
  const map = L.map(id, { zoomControl: true, attributionControl: true, ...leaflet });
  map.attributionControl.setPrefix(false);  // no link to Leaflet (and no flag) on a court's wall
  const config = await api("/api/map/config");
  const { toMap, fromMap } = datumFor(config.datum);
  map.setView(toMap(...config.center), config.zoom);
  const tileOptions = { attribution: escapeHtml(config.tile_attribution || ""), maxZoom: 19,
                        maxNativeZoom: config.max_native_zoom || undefined };
  if (config.tile_archive_url) {
    new AuthorisedTiles(config.tile_archive_url, tileOptions).addTo(map);
  } else if (config.tile_url) {
    L.tileLayer(config.tile_url, tileOptions).addTo(map);
  } else if (config.basemap_url) {
    map.createPane("basemap").style.zIndex = 250;
    map.createPane("names").style.zIndex = 300;
    const renderer = L.canvas({ pane: "basemap", padding: 0.3 });
    const outlines = await (await fetch(config.basemap_url)).json();
    L.geoJSON(outlines, {
      renderer, interactive: false,
      coordsToLatLng: (c) => L.latLng(...toMap(c[1], c[0])),
      style: (feature) => (feature.properties.level === "city" ? CITY : DISTRICT),
      onEachFeature: (feature) => {
        const at = feature.properties.label_at;
        if (!names || !at) return;
        L.tooltip({ pane: "names", permanent: true, direction: "center", className: `map-label ${feature.properties.level}` })
          .setLatLng(toMap(at[1], at[0])).setContent(escapeHtml(feature.properties.name)).addTo(map);
      },
    }).addTo(map);
    if (names) {
      const labelLevel = () => map.getContainer().classList.toggle("zoomed-out", map.getZoom() < DISTRICT_ZOOM);
      map.on("zoomend", labelLevel);
      labelLevel();
    }
  }
  /** A GeoJSON feature (WGS-84) as a Leaflet layer placed on these tiles; a Point with radius_m is a circle. */
  const geoJson = (feature, style) => {
    if (feature.geometry.type === "Point" && feature.properties?.radius_m) {
      const [lon, lat] = feature.geometry.coordinates;
      return L.circle(toMap(lat, lon), { ...style, radius: feature.properties.radius_m });
    }
    return L.geoJSON(feature, { style: () => style, interactive: false, coordsToLatLng: (c) => L.latLng(...toMap(c[1], c[0])) });
  };
  return { map, config, toMap, fromMap, geoJson, escapeHtml };
}

/** Draws the geofences (GeoJSON features) into a layer group, coloured by kind. */
export function drawFences(layer, features, geoJson, fillOpacity = 0.06) {
  layer.clearLayers();
  for (const feature of features) {
    const color = FENCE_COLORS[feature.properties.kind] || "#8fa3bf";
    geoJson(feature, { color, weight: 2, fillOpacity, interactive: false }).addTo(layer);
  }
}
