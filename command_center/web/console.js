// Operator console (指挥台): today's figures per court, tasks to units (with the nearest available units for a
// place), operations with their map reports, and the duty roster, sign-in and log. Polls the API every few
// seconds (the wall is the live view). Test hooks: window.consoleState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 指挥台", signIn: "值班签到", wall: "态势大屏", home: "首页", lang: "English",
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
        kind_alarm_false_alarm: "误报", kind_task_sent: "派警", noRoster: "今日未排班（由监督员排班）" },
  en: { title: "Command Centre · Console", signIn: "Sign in for duty", wall: "Wall", home: "Home", lang: "中文",
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
        kind_alarm_false_alarm: "false alarm", kind_task_sent: "task", noRoster: "no roster today (a supervisor sets it)" },
};
const TASK_KINDS = ["go_to", "search", "seize", "start_recording", "stop_recording", "call_back"];
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const token = sessionStorage.getItem("token");
const state = { stats: null, tasks: [], operations: [], roster: [], log: [], refreshes: 0 };
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
  render();
}

function render() {
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
    const report = el("button", { type: "button", textContent: t("report") });
    report.addEventListener("click", () => download(`/api/reports/operations/${op.id}`, `执行行动-${op.title}.html`));
    const row = el("tr");
    row.dataset.operation = op.id;
    row.append(el("td", {}, time(op.created_ms)), el("td", { textContent: `${t(op.kind)} · ${op.title}` }),
               el("td", {}, badge(op.status)), el("td", {}, report));
    return row;
  }));
}

function renderDuty() {
  const roster = state.roster.map((r) => el("li", {},
    `${r.court_id} · ${t(r.post)} · ${r.name || r.user_id} `, badge(r.signed_in_ms ? "signed" : "notSigned")));
  document.getElementById("roster").replaceChildren(...(roster.length ? roster : [el("li", { textContent: t("noRoster") })]));
  document.getElementById("log").replaceChildren(...state.log.map((e) => {
    const text = e.text || (e.alarm ? `${e.alarm.name || e.alarm.unit_id || ""} ${e.alarm.kind}` : "");
    return el("li", {}, time(e.at_ms), `${t(`kind_${e.kind}`)} · ${text}`);
  }));
}

async function refresh() {
  const [stats, tasks, operations, roster, log] = await Promise.all([
    api("/api/stats"), api("/api/tasks"), api("/api/operations?all=true"), api("/api/duty"), api("/api/duty/log"),
  ]);
  Object.assign(state, { stats, tasks: tasks.tasks, operations: operations.operations, roster: roster.roster,
                         log: log.entries });
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
  const [me, units] = await Promise.all([api("/api/me"), api("/api/units")]);
  document.getElementById("whoami").textContent = `${me.user.display_name} · ${me.court_id}`;
  document.querySelector("#task-form select[name=unit]").replaceChildren(
    ...units.units.map((u) => el("option", { value: u.id, textContent: `${u.name} (${u.id})` })));
  applyLanguage();
  await refresh();
  setInterval(() => refresh().catch((exc) => say(exc.message)), 5000);
}
start();
