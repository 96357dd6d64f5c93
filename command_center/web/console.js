// Operator console (指挥台): today's figures per court, tasks to units (with the nearest available units for a
// place), operations with their map reports, and the duty roster, sign-in and log. Polls the API every few
// seconds (the wall is the live view); a step of an entrustment of its courts (执行委托, heard on the screen socket)
// brings the duty log, where each step is written, up to date at once. Test hooks: window.consoleState.
import { api, download as fetchDownload, token } from "/static/lib/api.js";
import { el, fillSelect } from "/static/lib/dom.js";
import { applyTexts, errorText, formatTime, onLanguage, translator } from "/static/lib/i18n.js";
import { createMap, drawFences } from "/static/lib/map.js";
import { courtNames, guard, renderNav, showWho } from "/static/lib/nav.js";
import { ScreenSocket } from "/static/lib/screen_socket.js";
import { negotiate, release, watch } from "/static/lib/webrtc.js";

const t = translator("console");
const TASK_KINDS = ["go_to", "search", "seize", "start_recording", "stop_recording", "call_back"];
// An alarm in the duty log: the unit it is about, or, for the asset-query watch, the judge and the count.
const alarmText = (alarm) => alarm.details?.judge_name
  ? `${t(`alarm_${alarm.kind}`)} · ${alarm.details.judge_name} · ${alarm.details.count} ${t("times")}`
  : `${alarm.name || alarm.unit_id || ""} · ${t(`alarm_${alarm.kind}`)}`;
const OPERATION_KINDS = ["search", "seizure", "eviction", "detention"];
const FENCE_KINDS = [["no_go", "no_go"], ["jurisdiction", "jurisdiction"], ["target", "targetFence"]];
const UNIT_COLORS = { available: "#2fbf71", en_route: "#3d8bfd", on_site: "#f5a524", sos: "#ff3b46", offline: "#7b8597" };
// drawing: corners clicked so far ([lat, lon], WGS-84); target: the operation's target picked on the map;
// live: unit_id -> UnitView from the screen socket; streaming: units with live video now
const state = { stats: null, tasks: [], operations: [], roster: [], log: [], fences: [], refreshes: 0, entrustmentSteps: 0,
                drawing: null, target: null, live: new Map(), streaming: [], units: [], names: new Map() };
window.consoleState = state;

const time = (ms) => el("time", { textContent: formatTime(ms) });
const badge = (status) => el("span", { className: `status ${status}`, textContent: t(status) });
const say = (text) => { document.getElementById("message").textContent = text; };
const sayError = (exc) => say(errorText(exc));
const courtName = (id) => state.names.get(id) || id;

function applyLanguage() {
  applyTexts(t);
  fill(document.querySelector("#task-form select[name=kind]"), TASK_KINDS.map((k) => [k, k]));
  fill(document.querySelector("#plan-form select[name=kind]"), OPERATION_KINDS.map((k) => [k, `op_${k}`]));
  fill(document.getElementById("fence-kind"), FENCE_KINDS);
  renderUnitChoices();
  render();
}

function fill(select, options) {
  fillSelect(select, options.map(([value, label]) => [value, t(label)]));
}

// Units in the selects, those with live video first and marked, so an operator sees at once what can be watched.
function renderUnitChoices() {
  const live = new Set(state.streaming);
  const label = (u) => `${u.name} (${u.id})${live.has(u.id) ? ` · ${t("hasVideo")}` : ""}`;
  const all = state.units.map((u) => [u.id, label(u)]);
  fillSelect(document.querySelector("#task-form select[name=unit]"), all);
  fillSelect(document.querySelector("#plan-form select[name=units]"), all);
  const video = document.getElementById("video-unit");
  const before = video.value;
  const ordered = [...state.units].sort((a, b) => Number(live.has(b.id)) - Number(live.has(a.id)));
  fillSelect(video, ordered.map((u) => [u.id, label(u)]));
  if (!before || (!live.has(before) && state.streaming.length && !media.stopWatching)) video.value = ordered[0]?.id ?? "";
  document.getElementById("video-list").textContent = state.streaming.length
    ? `${t("hasVideo")}：${state.streaming.map((id) => state.units.find((u) => u.id === id)?.name || id).join("、")}`
    : t("noVideo");
}

function render() {
  renderMap();
  renderStats();
  renderTasks();
  renderOperations();
  renderDuty();
}

function renderStats() {
  if (!state.stats) return;
  const body = document.querySelector("#stats tbody");
  const rows = [...state.stats.courts, { ...state.stats.total, court_id: null }];
  body.replaceChildren(...rows.map((c) => {
    const share = c.queries_on_time_share === null ? "—" : `${(c.queries_on_time_share * 100).toFixed(1)}%`;
    const cells = [c.court_id ? courtName(c.court_id) : t("total"), c.units, c.online, c.on_site, c.sos, c.offline, c.alarms_open, c.tasks_under_way,
                   c.queries_today, share];
    const row = el("tr");
    row.dataset.court = c.court_id || "total";
    cells.forEach((value, i) => row.append(el("td", { className: i ? (i === 4 && value ? "num sos" : "num") : "", textContent: String(value) })));
    return row;
  }));
}

function renderTasks() {
  const body = document.querySelector("#tasks tbody");
  body.replaceChildren(...state.tasks.map((task) => {
    const cancel = el("button", { type: "button", textContent: t("cancel") });
    cancel.addEventListener("click", () => cancelTask(task));
    const row = el("tr");
    row.dataset.task = task.id;
    row.append(el("td", {}, time(task.created_ms)), el("td", { textContent: state.units.find((u) => u.id === task.unit_id)?.name || task.unit_id }),
               el("td", { textContent: `${t(task.kind)} · ${task.title}` }), el("td", {}, badge(task.status)),
               el("td", {}, cancel));
    return row;
  }));
}

function renderOperations() {
  const body = document.querySelector("#operations tbody");
  body.replaceChildren(...state.operations.map((op) => {
    const report = el("button", { type: "button", textContent: t("report"), className: "report" });
    report.addEventListener("click", () => download(`/api/reports/operations/${op.id}`, `${t("reportFile")}-${op.title}.html`));
    const actions = el("td");
    const step = { planned: "start", under_way: "conclude" }[op.status];
    if (step) {
      const button = el("button", { type: "button", textContent: t(step), className: step });
      button.addEventListener("click", () => act(`/api/operations/${op.id}/${step}`));
      actions.append(button);
    }
    actions.append(report);
    const row = el("tr");
    row.dataset.operation = op.id;
    row.append(el("td", {}, time(op.created_ms)), el("td", { textContent: `${t(`op_${op.kind}`)} · ${op.title}` }),
               el("td", {}, badge(op.status)), actions);
    return row;
  }));
}

function renderDuty() {
  const roster = state.roster.map((r) => el("li", {},
    `${courtName(r.court_id)} · ${t(r.post)} · ${r.name || r.user_id} `, badge(r.signed_in_ms ? "signed" : "notSigned")));
  document.getElementById("roster").replaceChildren(...(roster.length ? roster : [el("li", { textContent: t("noRoster") })]));
  document.getElementById("log").replaceChildren(...state.log.map((e) => {
    const text = e.text || (e.alarm ? alarmText(e.alarm) : "");
    const who = e.kind === "note" && e.user_id == null ? `（${t("systemNote")}）` : "";  // a step no person took
    return el("li", {}, time(e.at_ms), `${t(`kind_${e.kind}`)}${who} · ${text}`);
  }));
}

async function refresh() {
  const [stats, tasks, operations, roster, log, fences, streaming] = await Promise.all([
    api("/api/stats"), api("/api/tasks"), api("/api/operations?all=true"), api("/api/duty"), api("/api/duty/log"),
    api("/api/geofences"), api("/api/media/streaming"),
  ]);
  Object.assign(state, { stats, tasks: tasks.tasks, operations: operations.operations, roster: roster.roster,
                         log: log.entries, fences: fences.features, streaming: streaming.unit_ids });
  renderUnitChoices();
  state.refreshes += 1;
  render();
}

async function download(path, filename) {
  try { await fetchDownload(path, filename); } catch (exc) { sayError(exc); }
}

async function sendTask(event) {
  event.preventDefault();
  const form = event.target;
  const details = {};
  if (form.lat.value) details.lat = Number(form.lat.value);
  if (form.lon.value) details.lon = Number(form.lon.value);
  if (form.address.value) details.address = form.address.value;
  try {
    await api(`/api/units/${encodeURIComponent(form.unit.value)}/tasks`, {
      method: "POST", json: { kind: form.kind.value, title: form.title.value, details },
    });
    say(t("sent"));
    form.title.value = "";
    await refresh();
  } catch (exc) { sayError(exc); }
}

async function nearest() {
  const form = document.getElementById("task-form");
  try {
    const found = await api(`/api/dispatch/nearest?lat=${form.lat.value}&lon=${form.lon.value}&limit=5`);
    const list = document.getElementById("nearest-list");
    if (!found.units.length) { list.replaceChildren(el("li", { textContent: t("noUnits") })); return; }
    list.replaceChildren(...found.units.map((u) => {
      const li = el("li", { textContent: `${u.name} (${u.unit_id}) · ${Math.round(u.distance_m)} ${t("metres")} · ${t("eta")} ${(u.eta_s / 60).toFixed(1)} ${t("minutes")}` });
      li.addEventListener("click", () => { form.unit.value = u.unit_id; });
      return li;
    }));
  } catch (exc) { sayError(exc); }
}

async function cancelTask(task) {
  try { await api(`/api/tasks/${task.id}/cancel`, { method: "POST", json: {} }); await refresh(); } catch (exc) { sayError(exc); }
}

// The map: units (live, from the screen socket), fences and operation targets; click to draw a fence or to
// pick an operation's target (clicks are turned back into WGS-84 when the tiles are GCJ-02).
let map = null;
let toMap = (lat, lon) => [lat, lon];
let fromMap = (lat, lon) => [lat, lon];
let geoJson = null;
let fenceLayer = null;
let sketchLayer = null;
const unitMarkers = new Map();  // unit_id -> circleMarker
const LABEL_MAX_UNITS = 150;
let unitLayer = null;

async function setUpMap() {
  ({ map, toMap, fromMap, geoJson } = await createMap("map", { doubleClickZoom: false, preferCanvas: true }));
  window.consoleMap = map;
  fenceLayer = L.layerGroup().addTo(map);
  unitLayer = L.layerGroup().addTo(map);
  sketchLayer = L.layerGroup().addTo(map);
  map.on("click", (event) => {
    const point = fromMap(event.latlng.lat, event.latlng.lng);
    if (state.drawing) state.drawing.push(point); else state.target = point;
    renderSketch();
  });
}

function showUnit(view) {
  state.live.set(view.unit_id, view);
  let marker = unitMarkers.get(view.unit_id);
  if (!view.position) { if (marker) { marker.remove(); unitMarkers.delete(view.unit_id); } return; }
  const at = toMap(view.position.lat, view.position.lon);
  const color = UNIT_COLORS[view.status] || UNIT_COLORS.offline;
  if (!marker) {
    // Names written beside the markers while they are few enough to read; beyond, on hover.
    const permanent = unitMarkers.size < LABEL_MAX_UNITS;
    marker = L.circleMarker(at, { radius: 7, weight: 2, color: "#fff", fillOpacity: 1 })
      .bindTooltip("", { permanent, direction: "right", offset: [8, 0], className: "unit-label" }).addTo(unitLayer);
    marker.on("click", () => { document.querySelector("#task-form select[name=unit]").value = view.unit_id; });
    unitMarkers.set(view.unit_id, marker);
  }
  marker.setLatLng(at).setStyle({ fillColor: color });
  marker.setTooltipContent(`${view.name} · ${t(view.status)}`);
}

let refreshPending = null;
function onScreenMessage(message) {
  if (message.type === "snapshot" && message.topic.startsWith("units.")) message.units.forEach(showUnit);
  else if (message.type === "frame") message.units.forEach(showUnit);
  else if (message.type === "entrustment") {
    state.entrustmentSteps += 1;
    refreshPending ??= setTimeout(() => { refreshPending = null; refresh().catch(sayError); }, 100);
  }
  state.mapUnits = unitMarkers.size;
}

function renderMap() {
  if (!fenceLayer) return;
  drawFences(fenceLayer, state.fences, geoJson, 0.08);
  for (const op of state.operations.filter((o) => o.status === "planned" || o.status === "under_way")) {
    L.circle(toMap(op.target.lat, op.target.lon), { radius: op.target.radius_m, color: "#f5a524", dashArray: "6 4", weight: 2,
                                               fillOpacity: 0.05, interactive: false }).addTo(fenceLayer);
  }
  document.getElementById("fences").replaceChildren(...state.fences.map((f) => {
    const remove = el("button", { type: "button", textContent: t("remove") });
    remove.addEventListener("click", () => act(`/api/geofences/${f.id}`, "DELETE"));
    const li = el("li", {}, `${f.properties.name} · ${t(f.properties.kind === "target" ? "targetFence" : f.properties.kind)}`
      + ` · ${t("alarmOn")} ${t(`on_${f.properties.alarm_on}`)}`, remove);
    li.dataset.fence = f.id;
    return li;
  }));
}

function renderSketch() {
  if (!sketchLayer) return;
  sketchLayer.clearLayers();
  if (state.drawing && state.drawing.length) {
    L.polygon(state.drawing.map((p) => toMap(...p)), { color: "#ffffff", dashArray: "4 4", weight: 2, fillOpacity: 0.1 }).addTo(sketchLayer);
    state.drawing.forEach((p) => L.circleMarker(toMap(...p), { radius: 4, color: "#fff" }).addTo(sketchLayer));
  }
  if (state.target) {
    const radius = Number(document.querySelector("#plan-form input[name=radius]").value) || 200;
    L.circle(toMap(...state.target), { radius, color: "#f5a524", weight: 2 }).addTo(sketchLayer);
    document.getElementById("target-label").textContent =
      `${t("target")}: ${state.target[0].toFixed(5)}, ${state.target[1].toFixed(5)}`;
  }
}

async function act(path, method = "POST") {
  try {
    await api(path, method === "POST" ? { method, json: {} } : { method });
    await refresh();
  } catch (exc) { sayError(exc); }
}

async function saveFence() {
  const corners = state.drawing || [];
  const name = document.getElementById("fence-name").value.trim();
  const ring = [...corners.map(([lat, lon]) => [lon, lat]), corners.length ? [corners[0][1], corners[0][0]] : null]
    .filter(Boolean);
  const feature = { type: "Feature", geometry: { type: "Polygon", coordinates: [ring] },
                    properties: { name, kind: document.getElementById("fence-kind").value } };
  try {
    await api("/api/geofences", { method: "POST", json: feature });
    state.drawing = null;
    document.getElementById("draw").classList.remove("active");
    document.getElementById("draw-hint").textContent = "";
    renderSketch();
    say(t("fenceSaved"));
    await refresh();
  } catch (exc) { sayError(exc); }
}

async function planOperation(event) {
  event.preventDefault();
  const form = event.target;
  if (!state.target) { say(t("pickTarget")); return; }
  const body = {
    kind: form.kind.value, title: form.title.value, onsite_commander: form.onsite.value,
    target: { lat: state.target[0], lon: state.target[1], address: form.address.value, radius_m: Number(form.radius.value) },
    unit_ids: [...form.units.selectedOptions].map((o) => o.value),
  };
  // The operation belongs to its units' court when they are all of one court; units of several courts (a joint
  // operation) leave it to the caller's court, the one above them all.
  const courts = new Set(body.unit_ids.map((id) => state.units.find((u) => u.id === id)?.court_id));
  if (courts.size === 1 && !courts.has(undefined)) body.court_id = [...courts][0];
  try {
    await api("/api/operations", { method: "POST", json: body });
    say(t("created"));
    state.target = null;
    renderSketch();
    form.title.value = "";
    await refresh();
  } catch (exc) { sayError(exc); }
}

// Live video (WHEP) and push-to-talk (POST /api/talk/<unit>) ------------------------------------------------
const media = { stopWatching: null, talk: null, talkPc: null, mic: null };
window.consoleMedia = media;

async function toggleWatch() {
  const button = document.getElementById("watch");
  if (media.stopWatching) {
    const stop = media.stopWatching;
    media.stopWatching = null;
    await stop();
    button.textContent = t("watch");
    document.getElementById("video-state").textContent = "";
    return;
  }
  try {
    media.stopWatching = await watch(document.getElementById("video-unit").value, document.getElementById("video"));
    button.textContent = t("stopWatch");
    document.getElementById("video-state").textContent = playingText();
  } catch (exc) {
    sayError(exc);
  }
}

// "playing", and why there is no sound when the unit's audio cannot be carried live (a GB device's AAC).
function playingText() {
  const omitted = media.stopWatching?.notForwarded;
  return omitted ? `${t("playing")} · ${t(omitted.includes("audio/AAC") ? "aacNotForwarded" : omitted)}` : t("playing");
}

async function talkStart() {
  if (media.talkPc) return;
  const unit = document.getElementById("video-unit").value;
  const pc = new RTCPeerConnection({ iceServers: [] });
  media.talkPc = pc;
  try {
    media.mic = media.mic || await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTransceiver(media.mic.getAudioTracks()[0], { direction: "sendonly" });
    media.talk = await negotiate(pc, `/api/talk/${encodeURIComponent(unit)}`);
    document.getElementById("talk").classList.add("on");
    document.getElementById("video-state").textContent = t("talking");
  } catch (exc) {
    pc.close();
    media.talkPc = null;
    sayError(exc);
  }
}

async function talkStop() {
  if (!media.talkPc) return;
  const pc = media.talkPc;
  const location = media.talk;
  media.talkPc = media.talk = null;
  await release(location);
  pc.close();
  document.getElementById("talk").classList.remove("on");
  document.getElementById("video-state").textContent = media.stopWatching ? playingText() : "";
}

async function start() {
  if (!token()) { location.replace("/"); return; }
  const me = await guard("console", t);
  if (!me) return;
  renderNav(me, t);
  document.getElementById("sign-in").addEventListener("click", async () => {
    try { await api("/api/duty/sign-in", { method: "POST" }); say(t("signedIn")); await refresh(); } catch (exc) { sayError(exc); }
  });
  document.getElementById("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/duty/notes", { method: "POST", json: { text: event.target.text.value } });
      event.target.text.value = "";
      await refresh();
    } catch (exc) { sayError(exc); }
  });
  document.getElementById("task-form").addEventListener("submit", sendTask);
  document.getElementById("nearest").addEventListener("click", nearest);
  document.getElementById("draw").addEventListener("click", () => {
    state.drawing = state.drawing ? null : [];
    document.getElementById("draw").classList.toggle("active", Boolean(state.drawing));
    document.getElementById("draw-hint").textContent = state.drawing ? t("drawHint") : "";
    renderSketch();
  });
  document.getElementById("save-fence").addEventListener("click", saveFence);
  document.getElementById("watch").addEventListener("click", toggleWatch);
  const talk = document.getElementById("talk");
  talk.addEventListener("pointerdown", talkStart);
  for (const end of ["pointerup", "pointerleave"]) talk.addEventListener(end, talkStop);
  document.getElementById("plan-form").addEventListener("submit", planOperation);
  const [units, names] = await Promise.all([api("/api/units"), courtNames()]);
  state.units = units.units;
  state.names = names;
  showWho(me, t);
  await setUpMap();
  onLanguage(applyLanguage);
  new ScreenSocket({ topics: ["units", "entrustments"], onMessage: onScreenMessage }).start();
  await refresh();
  setInterval(() => refresh().catch(sayError), 5000);
}
start().catch(sayError);
