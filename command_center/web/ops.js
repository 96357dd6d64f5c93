// 运维 page: what this server process is doing, for supervisors and administrators without Grafana. Reads
// GET /api/ops/overview every few seconds (the same readings as /metrics). Self-contained: its own texts.
// Test hooks: window.opsState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 运维", home: "首页", lang: "English", process: "服务进程", node: "节点",
        role: "角色", leaderNode: "主节点", unknown: "未知", startedAt: "启动时间", leader: "主节点（负责巡检任务）", follower: "从节点", single: "单进程",
        dependencies: "数据库与消息总线", store: "数据库", bus: "消息总线", pending: "待写入定位", up: "正常",
        down: "不可用", disk: "录像磁盘", free: "可用", of: "共", diskWarning: "录像磁盘可用空间低于 {p}%，请及时清理或扩容",
        diskUnknown: "无法读取磁盘信息", units: "执行单兵", available: "待命", en_route: "出警中", on_site: "现场",
        sos: "求救", offline: "离线", screens: "大屏与音视频", screensConnected: "已连接大屏",
        tooSlow: "因网络过慢断开的大屏", unit: "推流单兵", viewer: "观看会话", talkback: "对讲会话",
        framesDropped: "丢弃视频帧", agencies: "协查单位", agency: "单位", breaker: "熔断状态", closed: "正常",
        open: "已熔断", half_open: "试探恢复中", updated: "更新于", forbidden: "仅监督员和管理员可查看运维页面",
        failed: "读取失败：" },
  en: { title: "Command Centre · Operations", home: "Home", lang: "中文", process: "Server process", node: "Node",
        role: "Role", leaderNode: "Leader", unknown: "unknown", startedAt: "Started", leader: "leader (runs the sweepers)", follower: "follower",
        single: "single process", dependencies: "Database and bus", store: "Database", bus: "Event bus",
        pending: "Positions waiting to be written", up: "up", down: "DOWN", disk: "Recording disk", free: "free",
        of: "of", diskWarning: "Less than {p}% of the recording disk is free: clear or grow it",
        diskUnknown: "disk usage unknown", units: "Field units", available: "available", en_route: "en route",
        on_site: "on site", sos: "SOS", offline: "offline", screens: "Screens and media",
        screensConnected: "Screens connected", tooSlow: "Screens dropped as too slow", unit: "Units streaming",
        viewer: "Viewers", talkback: "Talkback", framesDropped: "Video frames dropped", agencies: "Partner agencies",
        agency: "Agency", breaker: "Breaker", closed: "closed", open: "OPEN", half_open: "half open",
        updated: "updated", forbidden: "the operations page is for supervisors and administrators",
        failed: "could not load: " },
};
const REFRESH_MS = 5000;
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const state = { overview: null, error: null };
window.opsState = state;

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
  if (state.overview) render(state.overview);
}

function gib(bytes) { return `${(bytes / 2 ** 30).toFixed(1)} GiB`; }

function set(id, text, cls = "") {
  const el = document.getElementById(id);
  el.textContent = text;
  el.className = cls;
}

function rows(tableId, entries) {
  const body = document.querySelector(`#${tableId} tbody`);
  body.replaceChildren(...entries.map(([label, value, cls]) => {
    const tr = document.createElement("tr");
    const th = document.createElement("th");
    th.textContent = label;
    const td = document.createElement("td");
    td.textContent = String(value);
    td.className = cls || "num";
    tr.append(th, td);
    return tr;
  }));
}

function render(o) {
  set("node", o.node.id);
  set("role", o.node.shared ? t(o.node.leader ? "leader" : "follower") : t("single"));
  set("leader-node", o.node.leader_node ?? t("unknown"));
  set("started", new Date(o.node.started * 1000).toLocaleString(lang === "zh" ? "zh-CN" : "en"));
  set("store", t(o.store_up ? "up" : "down"), o.store_up ? "ok" : "bad");
  set("bus", t(o.bus_up ? "up" : "down"), o.bus_up ? "ok" : "bad");
  set("pending", String(o.pending_positions), "num");
  const d = o.disk;
  set("disk", d.free_bytes == null ? t("diskUnknown")
    : `${t("free")} ${gib(d.free_bytes)} (${d.free_percent}%) ${t("of")} ${gib(d.size_bytes)}`, d.warning ? "bad" : "");
  const warning = document.getElementById("disk-warning");
  warning.hidden = !d.warning;
  warning.textContent = t("diskWarning").replace("{p}", d.warn_below_percent);
  rows("units", Object.entries(o.units).map(([status, n]) => [t(status), n, status === "sos" && n ? "num bad" : "num"]));
  rows("live", [
    [t("screensConnected"), o.screens.connected],
    [t("tooSlow"), o.screens.too_slow],
    ...Object.entries(o.media.sessions).map(([role, n]) => [t(role), n]),
    [t("framesDropped"), o.media.frames_dropped.viewer + o.media.frames_dropped.recorder],
  ]);
  const body = document.querySelector("#agencies tbody");
  body.replaceChildren(...o.agencies.map((a) => {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    name.textContent = a.name;
    const breaker = document.createElement("td");
    breaker.textContent = t(a.breaker);
    breaker.className = a.breaker === "closed" ? "ok" : a.breaker === "open" ? "bad" : "warn";
    breaker.dataset.agency = a.id;
    tr.append(name, breaker);
    return tr;
  }));
  set("updated", `${t("updated")} ${new Date().toLocaleTimeString(lang === "zh" ? "zh-CN" : "en")}`);
}

async function refresh() {
  const token = sessionStorage.getItem("token");
  if (!token) { location.replace("/"); return; }
  try {
    const response = await fetch("/api/ops/overview", { headers: { Authorization: `Bearer ${token}` } });
    if (response.status === 401) { sessionStorage.removeItem("token"); location.replace("/"); return; }
    const body = await response.json();
    if (response.status === 403) throw new Error(t("forbidden"));
    if (!response.ok && !body.node) throw new Error(body?.error?.message || response.statusText);
    state.overview = body;
    state.error = null;
    document.getElementById("ops").hidden = false;
    document.getElementById("message").textContent = "";
    render(body);
  } catch (error) {
    state.error = error.message;
    document.getElementById("message").textContent = error.message === t("forbidden") ? error.message
      : t("failed") + error.message;
  }
}

document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh";
  localStorage.setItem("lang", lang);
  applyLanguage();
});
applyLanguage();
refresh();
setInterval(refresh, REFRESH_MS);
