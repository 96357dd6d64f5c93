// Track replay (轨迹回放): a unit's stored positions over a period, or every unit of an operation over the
// operation's time, played back together on one replay clock, with play/pause, a speed choice, a timeline
// and follow. Each track is drawn from its display-simplified points; playback steps through every stored
// point (?simplify_m=0). Test hooks: window.replayState.
import { api, token } from "/static/lib/api.js";
import { applyTexts, errorText, formatDateTime, fromDateTimeInput, onLanguage, toDateTimeInput, translator } from "/static/lib/i18n.js";
import { createMap } from "/static/lib/map.js";
import { guard, renderNav } from "/static/lib/nav.js";

const t = translator("replay");
const COLORS = ["#2fbf71", "#3d8bfd", "#f5a524", "#e377c2", "#17becf", "#ff7f0e", "#9467bd", "#ff3b46"];
const TICK_MS = 100;
const STEPS = 1000;  // the timeline's resolution

// tracks: [{unit_id, points (oldest first), index (shown), marker}]; at: the replay clock (fix time, ms)
const state = { tracks: [], start: 0, end: 0, at: 0, playing: false };
window.replayState = state;

let map = null;
let trackLayer = null;
let toMap = (lat, lon) => [lat, lon];
const names = new Map();  // unit_id -> name

async function setUpMap() {
  ({ map, toMap } = await createMap("map"));
  trackLayer = L.layerGroup().addTo(map);
  window.replayMap = map;
}

function applyLanguage() {
  applyTexts(t);
  document.getElementById("play").textContent = t(state.playing ? "pause" : "play");
  show();
}

async function load() {
  pause();
  const info = document.getElementById("info");
  const operationId = document.getElementById("operation").value;
  let unitIds = [document.getElementById("unit").value];
  let since = fromDateTimeInput(document.getElementById("from").value);
  let until = fromDateTimeInput(document.getElementById("to").value);
  try {
    if (operationId) {
      const { operation } = await api(`/api/operations/${operationId}`);
      unitIds = operation.unit_ids;
      since = operation.started_ms || operation.created_ms;
      until = Math.min(operation.ended_ms || Date.now(), since + 24 * 3_600_000);
      document.getElementById("from").value = toDateTimeInput(since);
      document.getElementById("to").value = toDateTimeInput(until);
    }
    const period = `since_ms=${since}&until_ms=${until}`;
    const loaded = await Promise.all(unitIds.map(async (unitId) => {
      const path = `/api/units/${encodeURIComponent(unitId)}/track?${period}`;
      const [raw, simple] = await Promise.all([api(path), api(`${path}&simplify_m=5`)]);
      return { unit_id: unitId, points: raw.points, simple: simple.points, stored: raw.raw_points,
               simplified: raw.simplified_m > 0 };
    }));
    trackLayer.clearLayers();
    state.tracks = loaded.filter((track) => track.points.length);
    document.getElementById("hint").hidden = state.tracks.length > 0;
    if (!state.tracks.length) { info.textContent = t("empty"); return; }
    const bounds = L.latLngBounds([]);
    state.tracks.forEach((track, i) => {
      const color = COLORS[i % COLORS.length];
      const line = L.polyline(track.simple.map((p) => toMap(p.lat, p.lon)), { color, weight: 3 }).addTo(trackLayer);
      bounds.extend(line.getBounds());
      track.marker = L.circleMarker(toMap(track.points[0].lat, track.points[0].lon),
        { radius: 9, color: "#fff", weight: 2, fillColor: color, fillOpacity: 1 })
        .bindTooltip(names.get(track.unit_id) || track.unit_id, { permanent: true, direction: "right", offset: [10, 0] })
        .addTo(trackLayer);
      track.index = 0;
    });
    map.fitBounds(bounds, { padding: [40, 40], maxZoom: 17 });
    state.start = Math.min(...state.tracks.map((track) => track.points[0].fix_time_ms));
    state.end = Math.max(...state.tracks.map((track) => track.points[track.points.length - 1].fix_time_ms));
    state.at = state.start;
    const total = state.tracks.reduce((sum, track) => sum + track.points.length, 0);
    info.textContent = `${state.tracks.length > 1 ? `${state.tracks.length} × ` : ""}${total} ${t("points")}`;
    const stored = state.tracks.reduce((sum, track) => sum + track.stored, 0);
    if (state.tracks.some((track) => track.simplified)) info.textContent += ` (${t("simplified")} ${stored})`;
    show();
  } catch (exc) {
    info.textContent = errorText(exc);
  }
}

function show() {
  if (!state.tracks.length) return;
  const here = [];
  for (const track of state.tracks) {
    let index = 0;
    while (index + 1 < track.points.length && track.points[index + 1].fix_time_ms <= state.at) index += 1;
    track.index = index;
    const point = track.points[index];
    const at = toMap(point.lat, point.lon);
    track.marker.setLatLng(at);
    here.push(L.latLng(...at));
  }
  const span = Math.max(1, state.end - state.start);
  document.getElementById("timeline").value = String(Math.round(((state.at - state.start) / span) * STEPS));
  document.getElementById("clock").textContent = formatDateTime(state.at);
  if (document.getElementById("follow").checked) {
    const view = L.latLngBounds(here);
    if (state.playing || !map.getBounds().contains(view)) map.panTo(view.getCenter(), { animate: false });
  }
}

let timer = null;
function play() {
  if (!state.tracks.length) return;
  if (state.at >= state.end) state.at = state.start;
  state.playing = true;
  document.getElementById("play").textContent = t("pause");
  timer = setInterval(() => {
    state.at = Math.min(state.end, state.at + TICK_MS * Number(document.getElementById("speed").value));
    show();
    if (state.at >= state.end) pause();
  }, TICK_MS);
}

function pause() {
  state.playing = false;
  if (timer) clearInterval(timer);
  timer = null;
  document.getElementById("play").textContent = t("play");
}

async function start() {
  if (!token()) { location.replace("/"); return; }
  const me = await guard("replay", t);
  if (!me) return;
  renderNav(me, t);
  const now = Date.now();
  document.getElementById("from").value = toDateTimeInput(now - 3_600_000);
  document.getElementById("to").value = toDateTimeInput(now);
  document.getElementById("timeline").max = String(STEPS);
  document.getElementById("load").addEventListener("click", load);
  document.getElementById("play").addEventListener("click", () => (state.playing ? pause() : play()));
  document.getElementById("timeline").addEventListener("input", (event) => {
    state.at = state.start + (Number(event.target.value) / STEPS) * (state.end - state.start);
    show();
  });
  const [{ units }, operations] = await Promise.all([
    api("/api/units"), api("/api/operations?all=true").catch(() => ({ operations: [] })),
  ]);
  units.forEach((u) => names.set(u.id, u.name));
  const select = document.getElementById("unit");
  select.replaceChildren(...units.map((u) => Object.assign(document.createElement("option"), { value: u.id, textContent: `${u.name} (${u.id})` })));
  document.getElementById("operation").append(...operations.operations.map((op) =>
    Object.assign(document.createElement("option"), { value: op.id, textContent: op.title })));
  const params = new URLSearchParams(location.search);
  if (params.get("unit")) select.value = params.get("unit");
  if (params.get("operation")) document.getElementById("operation").value = params.get("operation");
  await setUpMap();
  onLanguage(applyLanguage);
  if (params.get("unit") || params.get("operation")) await load();
}
start().catch((exc) => { document.getElementById("info").textContent = errorText(exc); });
