// Track replay (轨迹回放): a unit's stored positions over a period, played back on the map with play/pause, a
// speed choice, a timeline and follow-the-unit. The whole track is drawn from the display-simplified points;
// playback steps through every stored point (?simplify_m=0). Test hooks: window.replayState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 轨迹回放", unit: "执行单兵", from: "开始", to: "结束", load: "载入轨迹", home: "首页",
        lang: "English", play: "播放", pause: "暂停", follow: "跟随", points: "个定位点", none: "该时段无轨迹" },
  en: { title: "Command Centre · Track replay", unit: "Unit", from: "From", to: "To", load: "Load", home: "Home",
        lang: "中文", play: "Play", pause: "Pause", follow: "Follow", points: "positions", none: "no track in this period" },
};
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const token = sessionStorage.getItem("token");
const TICK_MS = 100;

// points: every stored position (oldest first); index: the one shown; playing: the timer is running
const state = { points: [], index: 0, playing: false, at: 0 };
window.replayState = state;

async function api(path) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (response.status === 401) { sessionStorage.removeItem("token"); location.replace("/"); }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message || `${path}: ${response.status}`);
  return body;
}

const map = L.map("map", { zoomControl: true, attributionControl: false });
const trackLayer = L.layerGroup().addTo(map);
const marker = L.circleMarker([0, 0], { radius: 9, color: "#fff", weight: 2, fillColor: "#2fbf71", fillOpacity: 1 });
window.replayMap = map;

async function setUpMap() {
  const config = await api("/api/map/config");
  map.setView(config.center, config.zoom);
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom: 19 }).addTo(map);
  } else if (config.basemap_url) {
    const outlines = await (await fetch(config.basemap_url)).json();
    L.geoJSON(outlines, { interactive: false, style: { color: "#35507a", weight: 1, fillColor: "#10233f", fillOpacity: 0.7 } })
      .addTo(map);
  }
}

const toLocalInput = (ms) => new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19);
const fromLocalInput = (value) => new Date(value).getTime();

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  document.getElementById("lang").textContent = t("lang");
  document.getElementById("play").textContent = t(state.playing ? "pause" : "play");
  document.title = t("title");
  show(state.index);
}

async function load() {
  pause();
  const unit = document.getElementById("unit").value;
  const since = fromLocalInput(document.getElementById("from").value);
  const until = fromLocalInput(document.getElementById("to").value);
  const period = `since_ms=${since}&until_ms=${until}`;
  const info = document.getElementById("info");
  try {
    const [raw, simple] = await Promise.all([
      api(`/api/units/${encodeURIComponent(unit)}/track?${period}`),
      api(`/api/units/${encodeURIComponent(unit)}/track?${period}&simplify_m=5`),
    ]);
    state.points = raw.points;
    trackLayer.clearLayers();
    if (!raw.points.length) { info.textContent = t("none"); state.index = 0; return; }
    const line = L.polyline(simple.points.map((p) => [p.lat, p.lon]), { color: "#3d8bfd", weight: 3 }).addTo(trackLayer);
    marker.addTo(trackLayer);
    map.fitBounds(line.getBounds(), { padding: [40, 40], maxZoom: 17 });
    const timeline = document.getElementById("timeline");
    timeline.max = String(raw.points.length - 1);
    info.textContent = `${raw.raw_points} ${t("points")}`;
    state.at = raw.points[0].fix_time_ms;
    show(0);
  } catch (exc) {
    info.textContent = exc.message;
  }
}

function show(index) {
  if (!state.points.length) return;
  state.index = Math.max(0, Math.min(index, state.points.length - 1));
  const point = state.points[state.index];
  marker.setLatLng([point.lat, point.lon]);
  document.getElementById("timeline").value = String(state.index);
  document.getElementById("clock").textContent = new Date(point.fix_time_ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB");
  const here = L.latLng(point.lat, point.lon);
  const follow = document.getElementById("follow").checked;
  if (follow && (state.playing || !map.getBounds().contains(here))) map.panTo(here, { animate: false });
}

let timer = null;
function play() {
  if (!state.points.length) return;
  if (state.index >= state.points.length - 1) { state.index = 0; state.at = state.points[0].fix_time_ms; }
  state.playing = true;
  document.getElementById("play").textContent = t("pause");
  timer = setInterval(() => {
    // the replay clock advances speed × real time; show the newest point at or before it
    state.at += TICK_MS * Number(document.getElementById("speed").value);
    let next = state.index;
    while (next + 1 < state.points.length && state.points[next + 1].fix_time_ms <= state.at) next += 1;
    show(next);
    if (state.index >= state.points.length - 1) pause();
  }, TICK_MS);
}

function pause() {
  state.playing = false;
  if (timer) clearInterval(timer);
  timer = null;
  document.getElementById("play").textContent = t("play");
}

async function start() {
  if (!token) { location.replace("/"); return; }
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("lang", lang);
    applyLanguage();
  });
  const now = Date.now();
  document.getElementById("from").value = toLocalInput(now - 3_600_000);
  document.getElementById("to").value = toLocalInput(now);
  document.getElementById("load").addEventListener("click", load);
  document.getElementById("play").addEventListener("click", () => (state.playing ? pause() : play()));
  document.getElementById("timeline").addEventListener("input", (event) => {
    show(Number(event.target.value));
    state.at = state.points[state.index]?.fix_time_ms ?? state.at;
  });
  const { units } = await api("/api/units");
  const select = document.getElementById("unit");
  select.replaceChildren(...units.map((u) => Object.assign(document.createElement("option"), { value: u.id, textContent: `${u.name} (${u.id})` })));
  const wanted = new URLSearchParams(location.search).get("unit");
  if (wanted) select.value = wanted;
  applyLanguage();
  await setUpMap();
  if (wanted) await load();
}
start();
