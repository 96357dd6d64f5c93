// Wall display (态势大屏): every unit of the user's courts live on the map, alarms, counters, link state.
// Speaks docs/protocols.md "Screens" over /api/screen/ws. All units are painted on one canvas (UnitsCanvas, below),
// so 5,000 units stay smooth. Test hooks: window.wallState.
import { api, token } from "/static/lib/api.js";
import { applyTexts, errorText, formatDateTime, formatTime, onLanguage, translator } from "/static/lib/i18n.js";
import { createMap, drawFences } from "/static/lib/map.js";
import { courtNames as loadCourtNames, guard, renderNav } from "/static/lib/nav.js";
import { ScreenSocket } from "/static/lib/screen_socket.js";
import { watch } from "/static/lib/webrtc.js";

const t = translator("wall");
const COLORS = { available: "#2fbf71", en_route: "#3d8bfd", on_site: "#f5a524", sos: "#ff3b46", offline: "#7b8597" };
const TRAIL_POINTS = 20;
const RADIUS = 8;
const SOS_RADIUS = 14;
const STALE_MS = 7000;  // the server beats every 5 s: later than this, the link is shown as late
const SIREN_REPEAT_MS = 15000;  // while any SOS is open, the siren sounds again (if sound is on)
const LABEL_MIN_ZOOM = 13;  // from this zoom on, each unit's name is written beside its marker

// unit_id -> {unit_id, name, kind, court_id, status, online, position, last_seen_ms, lat, lon, trail: [[fix_ms, lat, lon]]}
// (lat, lon: where the marker is drawn, in the tiles' datum); alarms: alarm id -> the server's view of a live alarm
const state = { units: new Map(), connected: false, frames: 0, lastMessageAt: 0, seqs: {}, alarms: new Map(),
                operations: new Map(), entrustments: new Map(), sirens: 0 };
window.wallState = state;

let map = null;
let toMap = (lat, lon) => [lat, lon];
let geoJson = null;
const sosUnits = new Set();
let courtNames = new Map();

function renderTexts() {
  applyTexts(t);
  document.getElementById("sound").textContent = t(audio && audio.state === "running" ? "soundReady" : "soundOn");
  renderLink();
  renderAlarms();
  renderOperations();
}

// Geofences: no-go zones red, jurisdictions blue, targets amber; reloaded every minute and on a crossing.
let fenceLayer = null;

async function loadGeofences() {
  const { features } = await api("/api/geofences");
  drawFences(fenceLayer, features, geoJson);
  state.geofences = features.length;
}

// Units -----------------------------------------------------------------------------------------------------
function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function popupText(unit) {
  const p = unit.position;
  const court = courtNames.get(unit.court_id) || unit.court_id;
  const lines = [`<b>${escapeHtml(unit.name)}</b> (${escapeHtml(unit.unit_id)})`,
    `${t("status")}: <span class="status ${escapeHtml(unit.status)}">${escapeHtml(t(unit.status))}</span>`,
    `${t("court")}: ${escapeHtml(court)}`];
  if (p) {
    lines.push(`${t("speed")}: ${p.speed_mps != null ? `${(p.speed_mps * 3.6).toFixed(1)} km/h` : t("unknown")}`);
    lines.push(`${t("battery")}: ${p.battery_pct != null ? `${Math.round(p.battery_pct)}%` : t("unknown")}`);
    lines.push(`${t("fix")}: ${formatTime(p.fix_time_ms)}`);
  }
  return lines.join("<br>");
}

// Adds points to a trail kept sorted by fix time, one point per fix time, the newest TRAIL_POINTS only.
function mergeTrail(trail, points) {
  let changed = false;
  for (const point of points) {
    const last = trail[trail.length - 1];
    if (!last || last[0] < point[0]) { trail.push(point); changed = true; continue; }
    if (trail.some((p) => p[0] === point[0])) continue;
    trail.push(point);
    trail.sort((a, b) => a[0] - b[0]);
    changed = true;
  }
  if (trail.length > TRAIL_POINTS) trail.splice(0, trail.length - TRAIL_POINTS);
  return changed;
}

function applyView(view, trailPoints) {
  let unit = state.units.get(view.unit_id);
  if (!unit) { unit = { trail: [], proj: null }; state.units.set(view.unit_id, unit); }
  Object.assign(unit, view);
  const points = trailPoints ? trailPoints.map(([at, lat, lon]) => [at, ...toMap(lat, lon)]) : [];
  if (view.position) {
    [unit.lat, unit.lon] = toMap(view.position.lat, view.position.lon);
    points.push([view.position.fix_time_ms, unit.lat, unit.lon]);
  }
  mergeTrail(unit.trail, points);
  unit.proj = null;
  if (unit.status === "sos") sosUnits.add(unit.unit_id); else sosUnits.delete(unit.unit_id);
  unitChanged(unit);
}

function addTrailPoints(unitId, points) {
  const unit = state.units.get(unitId);
  points = points.map(([at, lat, lon]) => [at, ...toMap(lat, lon)]);
  if (unit && mergeTrail(unit.trail, points)) { unit.proj = null; unitChanged(unit); }
}

function removeUnit(unitId) {
  state.units.delete(unitId);
  sosUnits.delete(unitId);
  if (popupUnit === unitId) map.closePopup(popup);
  unitsCanvas.requestPaint();
}

// One canvas for every unit, painted at most PAINTS_PER_SECOND times a second (units report at about 1 Hz)
// and at once when the view changes. A paint strokes all trails of one status colour as one path and stamps
// each marker from a pre-rendered sprite at a whole pixel. Measured in headless Chromium with software
// rendering (2 cores, 5,000 units, 10 frames/s of 500 updates): a Leaflet circleMarker and polyline per unit
// ran at 18-24 frames/s with the main thread 80-90 % busy; batched antialiased arcs were no better (11);
// this runs at ~46 with it ~30 % busy (10,000 units: ~32). Projected points are cached per unit until the
// unit or the zoom changes; Leaflet's Renderer base keeps the canvas placed through pans and zoom animations.
const STATUS_ORDER = ["offline", "available", "en_route", "on_site", "sos"];  // painted bottom to top
const MARGIN = 200;  // px beyond the canvas within which a unit is still painted (its trail may reach in)
const PAINTS_PER_SECOND = 4;
const TRAIL_MIN_ZOOM = 10;  // below this, a trail is a few pixels long: not drawn
const PIXEL_RATIO = L.Browser.retina ? 2 : 1;

const UnitsCanvas = L.Renderer.extend({
  _initContainer() {
    this._container = document.createElement("canvas");
    this._ctx = this._container.getContext("2d");
  },
  _destroyContainer() {
    L.Util.cancelAnimFrame(this._frame);
    clearTimeout(this._timer);
    this._frame = this._timer = null;
    this._container.remove();
  },
  _updatePaths() {},
  _update() {
    if (this._map._animatingZoom && this._bounds) return;
    L.Renderer.prototype._update.call(this);
    const bounds = this._bounds;
    const size = bounds.getSize();
    L.DomUtil.setPosition(this._container, bounds.min);
    this._container.width = PIXEL_RATIO * size.x;
    this._container.height = PIXEL_RATIO * size.y;
    this._container.style.width = `${size.x}px`;
    this._container.style.height = `${size.y}px`;
    this._ctx.setTransform(PIXEL_RATIO, 0, 0, PIXEL_RATIO, -PIXEL_RATIO * bounds.min.x, -PIXEL_RATIO * bounds.min.y);
    this._paint();
  },
  requestPaint() {
    if (!this._map || this._frame || this._timer) return;
    const wait = (this._lastPaint || 0) + 1000 / PAINTS_PER_SECOND - performance.now();
    const paint = () => { this._frame = L.Util.requestAnimFrame(() => { this._frame = null; this._paint(); }); };
    if (wait <= 0) paint(); else this._timer = setTimeout(() => { this._timer = null; paint(); }, wait);
  },
  _paint() {
    this._lastPaint = performance.now();
    if (this._bounds) paintUnits(this._ctx, this._bounds, this._map);
  },
});

function projected(unit, zoom) {
  if (!unit.proj || unit.proj.zoom !== zoom) {
    const at = map.project([unit.lat, unit.lon], zoom);
    const trail = [];
    for (const [, lat, lon] of unit.trail) { const q = map.project([lat, lon], zoom); trail.push(q.x, q.y); }
    unit.proj = { zoom, x: at.x, y: at.y, trail };
  }
  return unit.proj;
}

function paintUnits(ctx, bounds, map) {
  const zoom = map.getZoom();
  const origin = map.getPixelOrigin();
  const size = bounds.getSize();
  ctx.clearRect(bounds.min.x, bounds.min.y, size.x, size.y);
  const [minX, minY] = [bounds.min.x + origin.x - MARGIN, bounds.min.y + origin.y - MARGIN];
  const [maxX, maxY] = [bounds.max.x + origin.x + MARGIN, bounds.max.y + origin.y + MARGIN];
  const groups = new Map(STATUS_ORDER.map((status) => [status, []]));
  for (const unit of state.units.values()) {
    unit.drawnRadius = null;
    if (unit.lat == null) continue;
    const p = projected(unit, zoom);
    if (p.x < minX || p.x > maxX || p.y < minY || p.y > maxY) continue;
    (groups.get(unit.status) || groups.get("offline")).push(unit);
  }
  ctx.lineJoin = "round";
  ctx.lineWidth = 3;
  ctx.globalAlpha = 0.75;
  for (const [status, units] of groups) {
    if (zoom < TRAIL_MIN_ZOOM) break;
    ctx.beginPath();
    for (const unit of units) {
      const trail = unit.proj.trail;
      if (trail.length < 4) continue;
      ctx.moveTo(trail[0] - origin.x, trail[1] - origin.y);
      for (let i = 2; i < trail.length; i += 2) ctx.lineTo(trail[i] - origin.x, trail[i + 1] - origin.y);
    }
    ctx.strokeStyle = COLORS[status];
    ctx.stroke();
  }
  ctx.globalAlpha = 1;
  const pulse = Math.floor(Date.now() / 400) % 2 === 0;
  for (const [status, units] of groups) {
    const radius = status === "sos" && pulse ? SOS_RADIUS : RADIUS;
    const sprite = markerSprite(status, radius);
    const half = sprite.size / 2;
    for (const unit of units) {
      // whole device pixels: a plain copy, no resampling
      const x = Math.round((unit.proj.x - origin.x - half) * PIXEL_RATIO) / PIXEL_RATIO;
      const y = Math.round((unit.proj.y - origin.y - half) * PIXEL_RATIO) / PIXEL_RATIO;
      ctx.drawImage(sprite.image, x, y, sprite.size, sprite.size);
      unit.drawnLat = unit.lat;
      unit.drawnLon = unit.lon;
      unit.drawnRadius = radius;
    }
  }
  paintLabels(ctx, groups, origin, zoom);
}

// Each unit's name beside its marker, in a halo so it reads on any base layer: from LABEL_MIN_ZOOM on, or at
// any zoom when few units are in view (a wall of 5,000 names at city zoom would hide the map).
const LABEL_MAX_UNITS = 150;
function paintLabels(ctx, groups, origin, zoom) {
  let count = 0;
  for (const units of groups.values()) count += units.length;
  state.labels = 0;
  if (zoom < LABEL_MIN_ZOOM && count > LABEL_MAX_UNITS) return;
  ctx.font = "13px 'Noto Sans CJK SC', 'Microsoft YaHei', sans-serif";
  ctx.textBaseline = "middle";
  ctx.lineWidth = 3;
  ctx.strokeStyle = "rgba(8, 16, 30, 0.85)";
  ctx.fillStyle = "#e8eef7";
  for (const units of groups.values()) {
    for (const unit of units) {
      const x = unit.proj.x - origin.x + (unit.drawnRadius || RADIUS) + 5;  // clear of a pulsing SOS marker
      const y = unit.proj.y - origin.y;
      ctx.strokeText(unit.name, x, y);
      ctx.fillText(unit.name, x, y);
      state.labels += 1;
    }
  }
}

// A marker drawn once per colour and size (antialiased, white rim), then stamped for every unit.
const sprites = new Map();
function markerSprite(status, radius) {
  const key = `${status}/${radius}`;
  let sprite = sprites.get(key);
  if (!sprite) {
    const size = 2 * radius + 4;
    const canvas = document.createElement("canvas");
    canvas.width = canvas.height = size * PIXEL_RATIO;
    const ctx = canvas.getContext("2d");
    ctx.scale(PIXEL_RATIO, PIXEL_RATIO);
    ctx.beginPath();
    ctx.arc(size / 2, size / 2, radius, 0, 2 * Math.PI);
    ctx.fillStyle = COLORS[status] || COLORS.offline;
    ctx.fill();
    ctx.lineWidth = 2;
    ctx.strokeStyle = "#ffffff";
    ctx.stroke();
    sprite = { image: canvas, size };
    sprites.set(key, sprite);
    createImageBitmap(canvas).then((bitmap) => { sprite.image = bitmap; }, () => {});
  }
  return sprite;
}

const unitsCanvas = new UnitsCanvas({ padding: 0.3 });

// Which unit is under a point of the map (the topmost: SOS before the others), for clicks and the cursor.
function unitAt(containerPoint) {
  const zoom = map.getZoom();
  const at = map.containerPointToLayerPoint(containerPoint).add(map.getPixelOrigin());
  let best = null;
  let bestRank = -1;
  let bestDistance = Infinity;
  for (const unit of state.units.values()) {
    const p = unit.proj;
    if (!p || p.zoom !== zoom || unit.drawnRadius == null) continue;
    const distance = (p.x - at.x) ** 2 + (p.y - at.y) ** 2;
    const reach = unit.drawnRadius + 3;
    if (distance > reach * reach) continue;
    const rank = STATUS_ORDER.indexOf(unit.status);
    if (rank > bestRank || (rank === bestRank && distance < bestDistance)) {
      [best, bestRank, bestDistance] = [unit, rank, distance];
    }
  }
  return best;
}

const popup = L.popup({ offset: [0, -2] });
let popupUnit = null;

function openUnitPopup(unitId) {
  const unit = state.units.get(unitId);
  if (!unit || unit.lat == null) return;
  popupUnit = unitId;
  popup.setLatLng([unit.lat, unit.lon]).setContent(() => popupText(state.units.get(popupUnit))).openOn(map);
}

function installUnitLayer() {
  unitsCanvas.addTo(map);
  map.on("click", (event) => {
    const unit = unitAt(event.containerPoint);
    if (unit) openUnitPopup(unit.unit_id);
  });
  map.on("mousemove", (event) => {
    map.getContainer().classList.toggle("over-unit", unitAt(event.containerPoint) !== null);
  });
  map.on("popupclose", (event) => { if (event.popup === popup) popupUnit = null; });
}

function unitChanged(unit) {
  unitsCanvas.requestPaint();
  if (popupUnit !== unit.unit_id || unit.lat == null) return;
  popup.options.autoPan = false;  // follow the unit without dragging the map along
  popup.setLatLng([unit.lat, unit.lon]).update();
  popup.options.autoPan = true;
}

function applySnapshot(message) {
  // A snapshot is the whole truth for its court: units no longer in it are gone.
  const court = message.topic.slice("units.".length);
  const present = new Set(message.units.map((view) => view.unit_id));
  for (const [unitId, unit] of state.units) {
    if (unit.court_id === court && !present.has(unitId)) removeUnit(unitId);
  }
  message.units.forEach((view) => applyView(view, null));
}

// Enforcement operations: listed, and their target and geofence drawn; one that starts is brought into view.
let operationLayer = null;

// An operation may come on several courts' topics (异地调度: an upper court's operation with units of lower
// courts): it stays listed while any topic of this screen still shows it.
const operationTopics = new Map(); // operation id → the topics showing it

function showOn(topic, op, shown) {
  const topics = operationTopics.get(op.id) || new Set();
  if (shown) topics.add(topic); else topics.delete(topic);
  // A topic that stops showing it may carry only the operation's id and status (a court taken off learns
  // nothing more): it never replaces the view another topic of this screen still shows.
  if (shown) state.operations.set(op.id, op);
  if (topics.size) operationTopics.set(op.id, topics);
  else { operationTopics.delete(op.id); state.operations.delete(op.id); }
}

function applyOperationSnapshot(message) {
  for (const op of [...state.operations.values()]) showOn(message.topic, op, false);
  message.operations.forEach((op) => showOn(message.topic, op, true));
  renderOperations();
}

function applyOperation(message) {
  const op = message.operation;
  const court = message.topic.slice("operations.".length);
  const live = op.status === "planned" || op.status === "under_way";
  showOn(message.topic, op, live && (message.courts || [op.court_id]).includes(court));
  renderOperations();
  if (message.event === "under_way") showOperation(op);
}

function showOperation(op) {
  map.flyTo(toMap(op.target.lat, op.target.lon), Math.max(map.getZoom(), 15), { duration: 1.0 });
}

function renderOperations() {
  const list = document.getElementById("operations");
  if (!list || !operationLayer) return;
  operationLayer.clearLayers();
  const ops = [...state.operations.values()].sort((a, b) => b.created_ms - a.created_ms);
  for (const op of ops) {
    const color = op.status === "under_way" ? "#f5a524" : "#8fa3bf";
    L.circle(toMap(op.target.lat, op.target.lon), { radius: op.target.radius_m, color, weight: 2, dashArray: "6 4",
                                               fillOpacity: 0.08, interactive: false }).addTo(operationLayer);
  }
  if (!ops.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "none", textContent: t("noOperations") }));
    return;
  }
  list.replaceChildren(...ops.map((op) => {
    const li = document.createElement("li");
    li.className = op.status;
    li.dataset.operationId = op.id;
    li.textContent = `${t(`op_${op.kind}`)} · ${op.title} · ${t(op.status)} · ${t("onsiteCommander")} ${op.onsite_commander}`
      + ` · ${t("unitsShort")} ${op.unit_ids.length}`;
    li.addEventListener("click", () => showOperation(op));
    return li;
  }));
}

// Entrustments between courts (执行委托) asked by or of this wall's courts, as each step is heard; one past its
// deadline is marked 执行委托超期 (its alarm is in the alarm list too).
function applyEntrustmentSnapshot(message) {
  const court = message.topic.slice("entrustments.".length);
  for (const [id, e] of state.entrustments) {
    if (e.from_court_id === court || e.to_court_id === court) state.entrustments.delete(id);
  }
  message.entrustments.forEach((e) => state.entrustments.set(e.id, e));
  renderEntrustments();
}

function applyEntrustment(message) {
  const e = message.entrustment;
  if (e.status === "requested" || e.status === "accepted") state.entrustments.set(e.id, e);
  else state.entrustments.delete(e.id);
  renderEntrustments();
}

function renderEntrustments() {
  const list = document.getElementById("entrustments");
  if (!list) return;
  const found = [...state.entrustments.values()].sort((a, b) => a.deadline_ms - b.deadline_ms);
  if (!found.length) {
    list.replaceChildren(Object.assign(document.createElement("li"), { className: "none", textContent: t("noEntrustments") }));
    return;
  }
  list.replaceChildren(...found.map((e) => {
    const li = document.createElement("li");
    li.className = e.overdue_ms ? "overdue" : e.status;
    li.dataset.entrustmentId = e.id;
    const due = formatDateTime(e.deadline_ms);
    const name = (id) => courtNames.get(id) || id;
    li.textContent = `${name(e.from_court_id)} → ${name(e.to_court_id)} · ${e.task} · ${t(`ent_${e.status}`)} · ${t("due")} ${due}`
      + (e.overdue_ms ? ` · ${t("entrustmentOverdue")}` : "");
    return li;
  }));
}

function applyAlarmSnapshot(message) {
  // The court's live alarms, from the server's store: the whole truth for that court.
  const court = message.topic.slice("alarms.".length);
  for (const [id, alarm] of state.alarms) if (alarm.court_id === court) state.alarms.delete(id);
  message.alarms.forEach((alarm) => state.alarms.set(alarm.id, alarm));
  renderAlarms();
}

function applyFrame(message) {
  const tracks = new Map(message.track.map((entry) => [entry.unit_id, entry.points]));
  for (const view of message.units) {
    applyView(view, tracks.get(view.unit_id));
    tracks.delete(view.unit_id);
  }
  for (const [unitId, points] of tracks) addTrailPoints(unitId, points);
  state.frames += 1;
}

function renderCounters() {
  const counts = { online: 0, on_site: 0, sos: 0, offline: 0 };
  for (const unit of state.units.values()) {
    if (unit.online) counts.online += 1; else counts.offline += 1;  // UnitView.online: the one meaning
    if (unit.status === "on_site") counts.on_site += 1;
    if (unit.status === "sos") counts.sos += 1;
  }
  for (const [key, value] of Object.entries(counts)) {
    const el = document.getElementById(`count-${key}`);
    if (el.textContent !== String(value)) el.textContent = value;
  }
  document.body.classList.toggle("has-sos", counts.sos > 0);
}

// SOS markers pulse so they catch the eye from across the room.
setInterval(() => { if (sosUnits.size) unitsCanvas.requestPaint(); }, 400);

// Alarms ----------------------------------------------------------------------------------------------------
// Browsers let a page make sound only after a click on it, hence the button; the siren is synthesised.
let audio = null;
document.getElementById("sound").addEventListener("click", async () => {
  audio = audio || new AudioContext();
  await audio.resume();
  document.getElementById("sound").textContent = t(audio.state === "running" ? "soundReady" : "soundOn");
});

function siren() {
  if (!audio || audio.state !== "running") return;
  const now = audio.currentTime;
  const osc = audio.createOscillator();
  const gain = audio.createGain();
  osc.type = "square";
  osc.frequency.setValueAtTime(880, now);
  osc.frequency.setValueAtTime(660, now + 0.25);
  osc.frequency.setValueAtTime(880, now + 0.5);
  osc.frequency.setValueAtTime(660, now + 0.75);
  gain.gain.setValueAtTime(0.15, now);
  gain.gain.setValueAtTime(0, now + 1.0);
  osc.connect(gain).connect(audio.destination);
  osc.start(now);
  osc.stop(now + 1.05);
  state.sirens += 1;
}
setInterval(() => { if (sosUnits.size) siren(); }, SIREN_REPEAT_MS);

function applyAlarm(message) {
  const alarm = message.alarm;
  if (alarm.state === "open" || alarm.state === "acknowledged") state.alarms.set(alarm.id, alarm);
  else state.alarms.delete(alarm.id);
  if (message.event === "raised" && alarm.kind === "sos") {
    siren();
    showSosVideo(alarm).catch((err) => console.warn("sos video:", err.message));
  }
  if (alarm.kind === "geofence") loadGeofences().catch((err) => console.warn("geofences:", err));
  renderAlarms();
}

// An SOS brings the unit's live stream onto the wall at once (when the unit is streaming: 409 otherwise).
let closeSosVideo = null;
async function showSosVideo(alarm) {
  if (!alarm.unit_id) return;
  if (closeSosVideo) { const close = closeSosVideo; closeSosVideo = null; await close(); }
  const panel = document.getElementById("sos-video");
  const { unit_ids: streaming } = await api("/api/media/streaming");
  if (!streaming.includes(alarm.unit_id)) return;  // not streaming: the alarm and the marker say enough
  try {
    closeSosVideo = await watch(alarm.unit_id, document.getElementById("sos-video-player"));
  } catch (exc) {
    if (exc.status === 409) return;  // not streaming: the alarm and the marker say enough
    throw exc;
  }
  state.sosVideo = alarm.unit_id;
  document.getElementById("sos-video-title").textContent =
    `${t("sosRaised")} · ${alarm.name || alarm.unit_id}`;
  panel.hidden = false;
}
document.getElementById("sos-video-close").addEventListener("click", async () => {
  document.getElementById("sos-video").hidden = true;
  state.sosVideo = null;
  if (closeSosVideo) { const close = closeSosVideo; closeSosVideo = null; await close(); }
});

function alarmLabel(alarm) {
  if (alarm.kind === "sos") return t(alarm.active ? "sosRaised" : "sosCleared");
  if (alarm.kind === "offline") return t(alarm.active ? "offlineRaised" : "offlineCleared");
  return t(`alarm_${alarm.kind}`);
}

async function alarmStep(alarm, action) {
  try {
    await api(`/api/alarms/${alarm.id}/${action.replace("_", "-")}`, { method: "POST", json: {} });
    say("");
  } catch (exc) {
    say(`${t("actionFailed")}：${errorText(exc)}`);
  }
}

const say = (text) => { document.getElementById("message").textContent = text; };
// Alarm actions are the commanders' (operator, supervisor, admin); a judge watches the wall without them.
let mayAct = false;

function renderAlarms() {
  const list = document.getElementById("alarms");
  const alarms = [...state.alarms.values()].sort((a, b) => b.raised_ms - a.raised_ms || b.id - a.id);
  if (!alarms.length) {
    const li = document.createElement("li");
    li.className = "none";
    li.textContent = t("noAlarms");
    list.replaceChildren(li);
    return;
  }
  list.replaceChildren(...alarms.slice(0, 100).map((alarm) => {
    const li = document.createElement("li");
    li.className = `${alarm.kind} ${alarm.state} ${alarm.active ? "raised" : "cleared"}`;
    li.dataset.alarmId = alarm.id;
    const time = document.createElement("time");
    time.textContent = formatTime(alarm.raised_ms);
    const judge = alarm.details?.judge_name && `${alarm.details.judge_name} · ${alarm.details.count}`;
    const name = alarm.name || judge || state.units.get(alarm.unit_id)?.name || alarm.unit_id || alarm.subject;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = t(alarm.state) + (alarm.active ? "" : ` · ${t("conditionCleared")}`);
    const actions = document.createElement("span");
    actions.className = "actions";
    const steps = !mayAct ? [] : alarm.state === "open" ? ["acknowledge", "resolve", "false_alarm"] : ["resolve", "false_alarm"];
    for (const action of steps) {
      const button = document.createElement("button");
      button.textContent = t(action);
      button.className = action;
      button.addEventListener("click", (event) => { event.stopPropagation(); alarmStep(alarm, action); });
      actions.append(button);
    }
    li.append(time, `${name} · ${alarmLabel(alarm)}`, badge, actions);
    li.addEventListener("click", () => {
      const unit = state.units.get(alarm.unit_id);
      if (unit && unit.lat != null) {
        map.setView([unit.lat, unit.lon], Math.max(map.getZoom(), 14));
        openUnitPopup(alarm.unit_id);
      }
    });
    return li;
  }));
}

// The live link ---------------------------------------------------------------------------------------------
function renderLink() {
  const link = document.getElementById("link");
  if (!state.connected) {
    link.className = "link down";
    link.textContent = state.frames ? t("lost") : t("connecting");
    return;
  }
  const ageMs = state.lastMessageAt ? Date.now() - state.lastMessageAt : 0;
  link.className = `link ${ageMs > STALE_MS ? "late" : "up"}`;
  link.textContent = `${t(ageMs > STALE_MS ? "stale" : "live")} · ${Math.round(ageMs / 1000)}${t("ago")}`;
}

function onScreenMessage(message) {
  state.lastMessageAt = socket.lastMessageAt;
  state.seqs = socket.seqs;
  if (message.type === "snapshot" && message.topic.startsWith("alarms.")) {
    applyAlarmSnapshot(message);
  } else if (message.type === "snapshot" && message.topic.startsWith("operations.")) {
    applyOperationSnapshot(message);
  } else if (message.type === "operation") {
    applyOperation(message);
  } else if (message.type === "snapshot" && message.topic.startsWith("entrustments.")) {
    applyEntrustmentSnapshot(message);
  } else if (message.type === "entrustment") {
    applyEntrustment(message);
  } else if (message.type === "snapshot") {
    applySnapshot(message);
    renderCounters();
  } else if (message.type === "frame") {
    applyFrame(message);
    renderCounters();
  } else if (message.type === "alarm") {
    applyAlarm(message);
  }
  renderLink();
}

const socket = new ScreenSocket({
  topics: ["units", "alarms", "operations", "entrustments"],
  onMessage: onScreenMessage,
  onLink: () => { state.connected = socket.connected; renderLink(); },
});
setInterval(renderLink, 1000);

// Test hooks: where a unit's marker is drawn, and a way to cut the link as a network fault would.
state.markerAt = (unitId) => {
  const unit = state.units.get(unitId);
  if (!unit || unit.drawnRadius == null) return null;
  const point = map.latLngToContainerPoint([unit.drawnLat, unit.drawnLon]);
  return { lat: unit.drawnLat, lon: unit.drawnLon, x: point.x, y: point.y, radius: unit.drawnRadius };
};
state.dropLink = () => socket.drop();
// What the units' canvas holds at a map point (WGS-84, as the unit reported it): [r, g, b, a], for tests that
// check a trail or a label is really drawn, not only kept in memory.
state.paintedAt = (lat, lon, dx = 0, dy = 0) => {
  const canvas = unitsCanvas._container;
  const point = map.latLngToContainerPoint(toMap(lat, lon));
  const mapBox = map.getContainer().getBoundingClientRect();
  const box = canvas.getBoundingClientRect();
  const x = Math.round((point.x + dx + mapBox.left - box.left) * PIXEL_RATIO);
  const y = Math.round((point.y + dy + mapBox.top - box.top) * PIXEL_RATIO);
  return [...canvas.getContext("2d").getImageData(x, y, 1, 1).data];
};

async function start() {
  if (!token()) { location.replace("/"); return; }  // the start page logs in and keeps the session token
  const me = await guard("wall", t);
  if (!me) return;
  renderNav(me, t);
  mayAct = ["operator", "supervisor", "admin"].includes(me.user.role);
  courtNames = await loadCourtNames().catch(() => new Map());
  ({ map, toMap, geoJson } = await createMap("map", { preferCanvas: true, names: true }));
  window.wallMap = map;  // test hook: where the map looks
  installUnitLayer();
  fenceLayer = L.layerGroup().addTo(map);
  operationLayer = L.layerGroup().addTo(map);
  onLanguage(renderTexts);
  if (mayAct) {
    loadGeofences().catch((err) => console.warn("geofences:", err));
    setInterval(() => loadGeofences().catch((err) => console.warn("geofences:", err)), 60000);
  }
  socket.start();
}
start().catch((err) => console.error(err));
