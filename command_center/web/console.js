// Operator console (指挥台): today's figures per court, tasks to units (with the nearest available units for a
// place), operations with their map reports, and the duty roster, sign-in and log. Polls the API every few
// seconds (the wall is the live view). Test hooks: window.consoleState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 指挥台", signIn: "值班签到", wall: "态势大屏", entrust: "执行委托", home: "首页", lang: "English",
        stats: "今日统计", court: "法院", units: "单兵", online: "在线", on_site: "现场", sos: "求救", offline: "离线",
        alarms: "未处理告警", tasks: "执行中任务", queries: "今日查控", onTime: "30秒反馈率", tasksTitle: "派警任务",
        taskTitle: "任务内容", lat: "纬度", lon: "经度", address: "地址", send: "下发", nearest: "就近单兵",
        operations: "执行行动", duty: "今日值守", note: "值班记录", write: "记录", report: "下载报告",
        cancel: "撤销", officer: "值班干警", technician: "值班技术员", signed: "已签到", notSigned: "未签到",
        go_to: "前往地点", search: "搜查", seize: "查封扣押", start_recording: "开始录像", stop_recording: "停止录像",
        call_back: "回电", queued: "待下发", delivered: "已下发", acknowledged: "已接收", in_progress: "执行中",
        done: "已完成", failed: "未完成", cancelled: "已撤销", planned: "准备中", under_way: "进行中",
        concluded: "已结束", seizure: "查封扣押", eviction: "强制迁出", detention: "拘传拘留", signedIn: "签到成功",
        sent: "任务已下发", metres: "米", eta: "预计", minutes: "分钟", noUnits: "附近没有待命单兵",
        kind_note: "记录", kind_alarm_raised: "告警", kind_alarm_acknowledged: "确认告警", kind_alarm_resolved: "处置告警",
        kind_alarm_false_alarm: "误报", kind_task_sent: "派警", noRoster: "今日未排班（由监督员排班）",
        query_burst: "查控频次异常", query_night: "夜间查控", query_same_person: "跨案查询同一人", times: "次",
        mapTitle: "地图 · 电子围栏与行动目标", draw: "绘制围栏", fenceName: "围栏名称", saveFence: "保存围栏",
        drawHint: "在地图上依次点击围栏的顶点（至少3个），然后保存", plan: "新建执行行动（在地图上点选目标）",
        opTitle: "行动名称", onsite: "现场指挥", create: "创建", target: "目标", pickTarget: "请在地图上点选行动目标",
        no_go: "禁入区", jurisdiction: "辖区", targetFence: "目标区域", start: "开始", conclude: "结束",
        remove: "删除", fenceSaved: "围栏已保存", created: "执行行动已创建", alarmOn: "告警",
        on_enter: "进入时", on_exit: "离开时", on_both: "进出时", on_none: "不告警",
        videoTitle: "实时音视频", watch: "观看", stopWatch: "停止观看", talk: "按住说话", talking: "正在讲话…",
        playing: "播放中" },
  en: { title: "Command Centre · Console", signIn: "Sign in for duty", wall: "Wall", entrust: "Entrustments", home: "Home", lang: "中文",
        stats: "Today", court: "Court", units: "Units", online: "Online", on_site: "On site", sos: "SOS",
        offline: "Offline", alarms: "Open alarms", tasks: "Tasks", queries: "Queries", onTime: "≤30 s",
        tasksTitle: "Tasks", taskTitle: "task", lat: "lat", lon: "lon", address: "address", send: "Send",
        nearest: "Nearest units", operations: "Operations", duty: "Duty today", note: "duty note", write: "Write",
        report: "Report", cancel: "Cancel", officer: "officer", technician: "technician", signed: "signed in",
        notSigned: "not signed in", go_to: "go to", search: "search", seize: "seize", start_recording: "record",
        stop_recording: "stop recording", call_back: "call back", queued: "queued", delivered: "delivered",
        acknowledged: "acknowledged", in_progress: "in progress", done: "done", failed: "failed",
        cancelled: "cancelled", planned: "planned", under_way: "under way", concluded: "concluded",
        seizure: "seizure", eviction: "eviction", detention: "detention", signedIn: "signed in", sent: "task sent",
        metres: "m", eta: "ETA", minutes: "min", noUnits: "no available unit nearby", kind_note: "note",
        kind_alarm_raised: "alarm", kind_alarm_acknowledged: "alarm acknowledged", kind_alarm_resolved: "alarm resolved",
        kind_alarm_false_alarm: "false alarm", kind_task_sent: "task", noRoster: "no roster today (a supervisor sets it)",
        query_burst: "query burst", query_night: "queries at night", query_same_person: "same person, several cases",
        times: "×",
        mapTitle: "Map · geofences and targets", draw: "Draw fence", fenceName: "fence name", saveFence: "Save fence",
        drawHint: "click the fence's corners on the map (3 at least), then save", plan: "New operation (click its target)",
        opTitle: "operation", onsite: "on-site commander", create: "Create", target: "target",
        pickTarget: "click the operation's target on the map", no_go: "no-go", jurisdiction: "jurisdiction",
        targetFence: "target area", start: "Start", conclude: "Conclude", remove: "Remove", fenceSaved: "fence saved",
        created: "operation created", alarmOn: "alarm",
        on_enter: "on entering", on_exit: "on leaving", on_both: "either way", on_none: "none",
        videoTitle: "Live video", watch: "Watch", stopWatch: "Stop", talk: "Hold to talk", talking: "talking…",
        playing: "playing" },
};
const TASK_KINDS = ["go_to", "search", "seize", "start_recording", "stop_recording", "call_back"];
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
// An alarm in the duty log: the unit it is about, or, for the asset-query watch, the judge and the count.
const alarmText = (alarm) => alarm.details?.judge_name
  ? `${t(alarm.kind)} · ${alarm.details.judge_name} · ${alarm.details.count} ${t("times")}`
  : `${alarm.name || alarm.unit_id || ""} ${t(alarm.kind)}`;
const token = sessionStorage.getItem("token");
const OPERATION_KINDS = ["search", "seizure", "eviction", "detention"];
const FENCE_KINDS = [["no_go", "no_go"], ["jurisdiction", "jurisdiction"], ["target", "targetFence"]];
const FENCE_COLORS = { no_go: "#ff3b46", jurisdiction: "#3d8bfd", target: "#f5a524" };
// drawing: corners clicked so far ([lat, lon]); target: the operation's target picked on the map
const state = { stats: null, tasks: [], operations: [], roster: [], log: [], fences: [], refreshes: 0,
                drawing: null, target: null };
window.consoleState = state;

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.body ? { "Content-Type": "application/json" } : {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { sessionStorage.removeItem("token"); location.replace("/"); }
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message || `${path}: ${response.status}`);
  return body;
}

function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}
const time = (ms) => el("time", { textContent: new Date(ms).toLocaleTimeString(lang === "zh" ? "zh-CN" : "en-GB") });
const badge = (status) => el("span", { className: `status ${status}`, textContent: t(status) });
const say = (text) => { document.getElementById("message").textContent = text; };

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((node) => { node.placeholder = t(node.dataset.i18nPlaceholder); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
  const kind = document.querySelector("#task-form select[name=kind]");
  const chosen = kind.value;
  kind.replaceChildren(...TASK_KINDS.map((k) => el("option", { value: k, textContent: t(k) })));
  if (chosen) kind.value = chosen;
  fill(document.querySelector("#plan-form select[name=kind]"), OPERATION_KINDS.map((k) => [k, k]));
  fill(document.getElementById("fence-kind"), FENCE_KINDS);
  render();
}

function fill(select, options) {
  const chosen = select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, textContent: t(label) })));
  if (chosen) select.value = chosen;
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
  const rows = [...state.stats.courts, { ...state.stats.total, court_id: "∑" }];
  body.replaceChildren(...rows.map((c) => {
    const online = c.available + c.en_route + c.on_site;
    const share = c.queries_on_time_share === null ? "—" : `${(c.queries_on_time_share * 100).toFixed(1)}%`;
    const cells = [c.court_id, c.units, online, c.on_site, c.sos, c.offline, c.alarms_open, c.tasks_under_way,
                   c.queries_today, share];
    const row = el("tr");
    row.dataset.court = c.court_id;
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
    row.append(el("td", {}, time(task.created_ms)), el("td", { textContent: task.unit_id }),
               el("td", { textContent: `${t(task.kind)} · ${task.title}` }), el("td", {}, badge(task.status)),
               el("td", {}, cancel));
    return row;
  }));
}

function renderOperations() {
  const body = document.querySelector("#operations tbody");
  body.replaceChildren(...state.operations.map((op) => {
    const report = el("button", { type: "button", textContent: t("report"), className: "report" });
    report.addEventListener("click", () => download(`/api/reports/operations/${op.id}`, `执行行动-${op.title}.html`));
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
    row.append(el("td", {}, time(op.created_ms)), el("td", { textContent: `${t(op.kind)} · ${op.title}` }),
               el("td", {}, badge(op.status)), actions);
    return row;
  }));
}

function renderDuty() {
  const roster = state.roster.map((r) => el("li", {},
    `${r.court_id} · ${t(r.post)} · ${r.name || r.user_id} `, badge(r.signed_in_ms ? "signed" : "notSigned")));
  document.getElementById("roster").replaceChildren(...(roster.length ? roster : [el("li", { textContent: t("noRoster") })]));
  document.getElementById("log").replaceChildren(...state.log.map((e) => {
    const text = e.text || (e.alarm ? alarmText(e.alarm) : "");
    return el("li", {}, time(e.at_ms), `${t(`kind_${e.kind}`)} · ${text}`);
  }));
}

async function refresh() {
  const [stats, tasks, operations, roster, log, fences] = await Promise.all([
    api("/api/stats"), api("/api/tasks"), api("/api/operations?all=true"), api("/api/duty"), api("/api/duty/log"),
    api("/api/geofences"),
  ]);
  Object.assign(state, { stats, tasks: tasks.tasks, operations: operations.operations, roster: roster.roster,
                         log: log.entries, fences: fences.features });
  state.refreshes += 1;
  render();
}

async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token}` } });
  if (!response.ok) { say((await response.json().catch(() => ({})))?.error?.message || response.status); return; }
  const link = el("a", { href: URL.createObjectURL(await response.blob()), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
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
      method: "POST", body: JSON.stringify({ kind: form.kind.value, title: form.title.value, details }),
    });
    say(t("sent"));
    form.title.value = "";
    await refresh();
  } catch (exc) { say(exc.message); }
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
  } catch (exc) { say(exc.message); }
}

async function cancelTask(task) {
  try { await api(`/api/tasks/${task.id}/cancel`, { method: "POST", body: "{}" }); await refresh(); } catch (exc) { say(exc.message); }
}

// The map: fences and operation targets drawn; click to draw a fence or to pick an operation's target ----
const map = L.map("map", { zoomControl: true, attributionControl: false, doubleClickZoom: false });
const fenceLayer = L.layerGroup().addTo(map);
const sketchLayer = L.layerGroup().addTo(map);
window.consoleMap = map;

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
  map.on("click", (event) => {
    const point = [event.latlng.lat, event.latlng.lng];
    if (state.drawing) state.drawing.push(point); else state.target = point;
    renderSketch();
  });
}

function renderMap() {
  fenceLayer.clearLayers();
  for (const feature of state.fences) {
    const style = { color: FENCE_COLORS[feature.properties.kind] || "#8fa3bf", weight: 2, fillOpacity: 0.08, interactive: false };
    if (feature.geometry.type === "Point") {
      const [lon, lat] = feature.geometry.coordinates;
      L.circle([lat, lon], { ...style, radius: feature.properties.radius_m }).addTo(fenceLayer);
    } else {
      L.geoJSON(feature, { style: () => style, interactive: false }).addTo(fenceLayer);
    }
  }
  for (const op of state.operations.filter((o) => o.status === "planned" || o.status === "under_way")) {
    L.circle([op.target.lat, op.target.lon], { radius: op.target.radius_m, color: "#f5a524", dashArray: "6 4", weight: 2,
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
  sketchLayer.clearLayers();
  if (state.drawing && state.drawing.length) {
    L.polygon(state.drawing, { color: "#ffffff", dashArray: "4 4", weight: 2, fillOpacity: 0.1 }).addTo(sketchLayer);
    state.drawing.forEach((p) => L.circleMarker(p, { radius: 4, color: "#fff" }).addTo(sketchLayer));
  }
  if (state.target) {
    const radius = Number(document.querySelector("#plan-form input[name=radius]").value) || 200;
    L.circle(state.target, { radius, color: "#f5a524", weight: 2 }).addTo(sketchLayer);
    document.getElementById("target-label").textContent =
      `${t("target")}: ${state.target[0].toFixed(5)}, ${state.target[1].toFixed(5)}`;
  }
}

async function act(path, method = "POST") {
  try {
    await api(path, method === "POST" ? { method, body: "{}" } : { method });
    await refresh();
  } catch (exc) { say(exc.message); }
}

async function saveFence() {
  const corners = state.drawing || [];
  const name = document.getElementById("fence-name").value.trim();
  const ring = [...corners.map(([lat, lon]) => [lon, lat]), corners.length ? [corners[0][1], corners[0][0]] : null]
    .filter(Boolean);
  const feature = { type: "Feature", geometry: { type: "Polygon", coordinates: [ring] },
                    properties: { name, kind: document.getElementById("fence-kind").value } };
  try {
    await api("/api/geofences", { method: "POST", body: JSON.stringify(feature) });
    state.drawing = null;
    document.getElementById("draw").classList.remove("active");
    document.getElementById("draw-hint").textContent = "";
    renderSketch();
    say(t("fenceSaved"));
    await refresh();
  } catch (exc) { say(exc.message); }
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
  // The operation belongs to its units' court; with units of several courts, to ours, which oversees them (异地调度).
  const courts = new Set(state.units.filter((u) => body.unit_ids.includes(u.id)).map((u) => u.court_id));
  if (courts.size === 1) body.court_id = [...courts][0];
  try {
    await api("/api/operations", { method: "POST", body: JSON.stringify(body) });
    say(t("created"));
    state.target = null;
    renderSketch();
    form.title.value = "";
    await refresh();
  } catch (exc) { say(exc.message); }
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
    media.stopWatching = await window.webrtc.watch(document.getElementById("video-unit").value,
                                                   document.getElementById("video"), token);
    button.textContent = t("stopWatch");
    document.getElementById("video-state").textContent = t("playing");
  } catch (exc) {
    say(exc.message);
  }
}

async function talkStart() {
  if (media.talkPc) return;
  const unit = document.getElementById("video-unit").value;
  const pc = new RTCPeerConnection({ iceServers: [] });
  media.talkPc = pc;
  try {
    media.mic = media.mic || await navigator.mediaDevices.getUserMedia({ audio: true });
    pc.addTransceiver(media.mic.getAudioTracks()[0], { direction: "sendonly" });
    media.talk = await window.webrtc.negotiate(pc, `/api/talk/${encodeURIComponent(unit)}`, token);
    document.getElementById("talk").classList.add("on");
    document.getElementById("video-state").textContent = t("talking");
  } catch (exc) {
    pc.close();
    media.talkPc = null;
    say(exc.message);
  }
}

async function talkStop() {
  if (!media.talkPc) return;
  const pc = media.talkPc;
  const location = media.talk;
  media.talkPc = media.talk = null;
  await window.webrtc.release(location, token);
  pc.close();
  document.getElementById("talk").classList.remove("on");
  document.getElementById("video-state").textContent = media.stopWatching ? t("playing") : "";
}

async function start() {
  if (!token) { location.replace("/"); return; }
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("lang", lang);
    applyLanguage();
  });
  document.getElementById("sign-in").addEventListener("click", async () => {
    try { await api("/api/duty/sign-in", { method: "POST" }); say(t("signedIn")); await refresh(); } catch (exc) { say(exc.message); }
  });
  document.getElementById("note-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("/api/duty/notes", { method: "POST", body: JSON.stringify({ text: event.target.text.value }) });
      event.target.text.value = "";
      await refresh();
    } catch (exc) { say(exc.message); }
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
  const [me, units] = await Promise.all([api("/api/me"), api("/api/units")]);
  state.units = units.units;
  document.getElementById("whoami").textContent = `${me.user.display_name} · ${me.court_id}`;
  for (const select of [document.querySelector("#task-form select[name=unit]"), document.querySelector("#plan-form select[name=units]"),
                        document.getElementById("video-unit")]) {
    select.replaceChildren(...units.units.map((u) => el("option", { value: u.id, textContent: `${u.name} (${u.id})` })));
  }
  await setUpMap();
  applyLanguage();
  await refresh();
  setInterval(() => refresh().catch((exc) => say(exc.message)), 5000);
}
start();
