// Wall display (态势大屏): every unit of the user's courts live on the map, alarms, counters, link state.
// Speaks docs/protocols.md "Screens" over /api/screen/ws. Markers and trails are updated in place on a canvas
// renderer, so thousands of units stay smooth. Test hook: window.wallState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 态势大屏", connecting: "连接中…", live: "实时", lost: "连接中断，重连中",
        online: "在线", onSite: "现场", sos: "求救", offline: "离线", alarms: "告警", available: "待命",
        en_route: "出警途中", on_site: "到达现场", soundOn: "开启声音", soundReady: "声音已开启",
        lang: "English", sosRaised: "紧急求救", sosCleared: "求救已解除", offlineRaised: "离线",
        offlineCleared: "恢复在线", speed: "速度", battery: "电量", fix: "定位时间", court: "法院", status: "状态",
        ago: "秒前" },
  en: { title: "Enforcement Command Centre · Wall", connecting: "connecting…", live: "live",
        lost: "link lost, reconnecting", online: "online", onSite: "on site", sos: "SOS", offline: "offline",
        alarms: "Alarms", available: "available", en_route: "en route", on_site: "on site", soundOn: "Enable sound",
        soundReady: "sound on", lang: "中文", sosRaised: "SOS raised", sosCleared: "SOS cleared",
        offlineRaised: "went offline", offlineCleared: "back online", speed: "speed", battery: "battery",
        fix: "fix time", court: "court", status: "status", ago: "s ago" },
};
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const COLORS = { available: "#2fbf71", en_route: "#3d8bfd", on_site: "#f5a524", sos: "#ff3b46", offline: "#7b8597" };
const TRAIL_POINTS = 20;

const token = sessionStorage.getItem("token");
if (!token) location.replace("/");

const state = { units: new Map(), connected: false, frames: 0, lastMessageAt: 0, seqs: {}, alarms: [] };
window.wallState = state;

const renderer = L.canvas({ padding: 0.3 });
const map = L.map("map", { preferCanvas: true, zoomControl: true, attributionControl: true });
const markers = new Map();  // unit_id -> {marker, trail}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
  renderLink();
  renderAlarms();
}

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) { sessionStorage.removeItem("token"); location.replace("/"); }
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  return response.json();
}

async function setUpMap() {
  const config = await api("/api/map/config");
  map.setView(config.center, config.zoom);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { attribution: config.tile_attribution, maxZoom: 19 }).addTo(map);
  } else if (config.basemap_url) {
    const outlines = await (await fetch(config.basemap_url)).json();
    L.geoJSON(outlines, {
      renderer,
      style: { color: "#35507a", weight: 1.2, fillColor: "#10233f", fillOpacity: 0.6 },
      onEachFeature: (feature, layer) => {
        const at = feature.properties.label_at;
        if (at) {
          L.tooltip({ permanent: true, direction: "center", className: "district-label" })
            .setLatLng([at[1], at[0]]).setContent(feature.properties.name).addTo(map);
        }
      },
    }).addTo(map);
  }
}

// Units ---------------------------------------------------------------------------------------------
function popupText(unit) {
  const p = unit.position;
  const lines = [`<b>${escapeHtml(unit.name)}</b> (${escapeHtml(unit.unit_id)})`,
    `${t("status")}: ${t(unit.status)}`, `${t("court")}: ${escapeHtml(unit.court_id)}`];
  if (p) {
    if (p.speed_mps != null) lines.push(`${t("speed")}: ${(p.speed_mps * 3.6).toFixed(1)} km/h`);
    if (p.battery_pct != null) lines.push(`${t("battery")}: ${Math.round(p.battery_pct)}%`);
    lines.push(`${t("fix")}: ${new Date(p.fix_time_ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB")}`);
  }
  return lines.join("<br>");
}

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

function upsertUnit(view, trailPoints) {
  const previous = state.units.get(view.unit_id);
  const unit = { ...view, trail: previous ? previous.trail : [] };
  if (view.position) {
    const last = unit.trail[unit.trail.length - 1];
    if (!last || last[0] < view.position.fix_time_ms) {
      unit.trail.push([view.position.fix_time_ms, view.position.lat, view.position.lon]);
    }
  }
  if (trailPoints) {
    unit.trail.push(...trailPoints);
    unit.trail.sort((a, b) => a[0] - b[0]);
  }
  if (unit.trail.length > TRAIL_POINTS) unit.trail.splice(0, unit.trail.length - TRAIL_POINTS);
  unit.lat = view.position ? view.position.lat : previous?.lat;
  unit.lon = view.position ? view.position.lon : previous?.lon;
  state.units.set(view.unit_id, unit);
  drawUnit(unit);
}

function drawUnit(unit) {
  let drawn = markers.get(unit.unit_id);
  if (unit.lat == null) return;
  const color = COLORS[unit.status] || COLORS.offline;
  if (!drawn) {
    const marker = L.circleMarker([unit.lat, unit.lon], { renderer, radius: 7, weight: 2, color: "#ffffff",
                                                          fillColor: color, fillOpacity: 0.95 }).addTo(map);
    const trail = L.polyline([], { renderer, color, weight: 2, opacity: 0.55 }).addTo(map);
    marker.bindPopup(() => popupText(state.units.get(unit.unit_id)));
    drawn = { marker, trail };
    markers.set(unit.unit_id, drawn);
  }
  drawn.marker.setLatLng([unit.lat, unit.lon]);
  drawn.marker.setStyle({ fillColor: color });
  drawn.trail.setStyle({ color });
  drawn.trail.setLatLngs(unit.trail.map((p) => [p[1], p[2]]));
}

function renderCounters() {
  const counts = { online: 0, on_site: 0, sos: 0, offline: 0 };
  for (const unit of state.units.values()) {
    if (unit.status === "sos") counts.sos += 1;
    if (unit.status === "offline") counts.offline += 1; else counts.online += 1;
    if (unit.status === "on_site") counts.on_site += 1;
  }
  for (const [key, value] of Object.entries(counts)) document.getElementById(`count-${key}`).textContent = value;
}

// SOS markers pulse so they catch the eye from across the room.
setInterval(() => {
  const big = Math.floor(Date.now() / 400) % 2 === 0;
  for (const unit of state.units.values()) {
    const drawn = markers.get(unit.unit_id);
    if (drawn) drawn.marker.setRadius(unit.status === "sos" && big ? 12 : 7);
  }
}, 400);

// Alarms ----------------------------------------------------------------------------------------------
let audio = null;
document.getElementById("sound").addEventListener("click", async () => {
  audio = audio || new AudioContext();
  await audio.resume();
  document.getElementById("sound").textContent = t("soundReady");
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
  gain.gain.setValueAtTime(0.15, now);
  gain.gain.setValueAtTime(0, now + 0.75);
  osc.connect(gain).connect(audio.destination);
  osc.start(now);
  osc.stop(now + 0.8);
}

function addAlarm(alarm) {
  state.alarms.unshift(alarm);
  state.alarms.splice(50);
  if (alarm.kind === "sos" && alarm.state === "raised") siren();
  renderAlarms();
}

function renderAlarms() {
  const list = document.getElementById("alarms");
  list.replaceChildren(...state.alarms.map((alarm) => {
    const li = document.createElement("li");
    li.className = `${alarm.kind} ${alarm.state}`;
    const time = document.createElement("time");
    time.textContent = new Date(alarm.at_ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB");
    const key = `${alarm.kind === "sos" ? "sos" : "offline"}${alarm.state === "raised" ? "Raised" : "Cleared"}`;
    li.append(time, `${alarm.name || alarm.unit_id} · ${t(key)}`);
    li.addEventListener("click", () => {
      const unit = state.units.get(alarm.unit_id);
      if (unit && unit.lat != null) { map.setView([unit.lat, unit.lon], Math.max(map.getZoom(), 14)); markers.get(alarm.unit_id)?.marker.openPopup(); }
    });
    return li;
  }));
}

// The live link ------------------------------------------------------------------------------------
function renderLink() {
  const link = document.getElementById("link");
  link.className = `link ${state.connected ? "up" : "down"}`;
  if (!state.connected) { link.textContent = state.frames ? t("lost") : t("connecting"); return; }
  const age = state.lastMessageAt ? Math.round((Date.now() - state.lastMessageAt) / 1000) : 0;
  link.textContent = `${t("live")} · ${age}${t("ago")}`;
}
setInterval(renderLink, 1000);

let backoff = 500;
function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/api/screen/ws?token=${encodeURIComponent(token)}`);
  socket.onopen = () => {
    backoff = 500;
    socket.send(JSON.stringify({ type: "subscribe", topics: ["units", "alarms"], resume: state.seqs }));
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    state.lastMessageAt = Date.now();
    state.connected = true;
    if (message.topic && message.seq !== undefined) state.seqs[message.topic] = message.seq;
    if (message.type === "snapshot") {
      message.units.forEach((view) => upsertUnit(view, null));
      // SOS raised before this screen connected: list it like a fresh alarm (it is still open).
      for (const view of message.units) {
        const listed = state.alarms.some((a) => a.unit_id === view.unit_id && a.kind === "sos" && a.state === "raised");
        if (view.status === "sos" && !listed) {
          addAlarm({ kind: "sos", state: "raised", unit_id: view.unit_id, name: view.name, court_id: view.court_id,
                     at_ms: view.last_seen_ms || Date.now() });
        }
      }
      renderCounters();
    } else if (message.type === "frame") {
      const tracks = new Map(message.track.map((entry) => [entry.unit_id, entry.points]));
      message.units.forEach((view) => { upsertUnit(view, tracks.get(view.unit_id)); tracks.delete(view.unit_id); });
      for (const [unitId, points] of tracks) {
        const unit = state.units.get(unitId);
        if (unit) upsertUnit(unit, points);
      }
      state.frames += 1;
      renderCounters();
    } else if (message.type === "alarm") {
      addAlarm(message.alarm);
    } else if (message.type === "bye" && message.resume) {
      Object.assign(state.seqs, message.resume);
    }
    renderLink();
  };
  socket.onclose = () => {
    state.connected = false;
    renderLink();
    setTimeout(connect, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("lang", lang);
  applyLanguage();
});

applyLanguage();
setUpMap().catch((err) => console.error(err)).finally(connect);
