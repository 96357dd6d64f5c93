// Entrustment between courts (执行委托): ask another court's centre to act in its area; decide on, staff and
// report the tasks other courts ask of ours; follow a task's timeline and, while it runs, its units' positions.
// Polls the API every few seconds. Test hooks: window.entrustState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 执行委托", console: "指挥台", home: "首页", lang: "English",
        newRequest: "委托他院执行", task: "委托事项", address: "执行地址", lat: "纬度", lon: "经度",
        deadline: "办理期限", reason: "委托理由", send: "发出委托", received: "他院委托本院（受托）",
        asked: "本院委托他院（委托）", unitsTitle: "受托单元位置", requested: "待受理", accepted: "执行中",
        refused: "已退回", completed: "已办结", withdrawn: "已撤回", accept: "受理", refuse: "退回",
        refuseReason: "退回理由", assign: "派出单元", report: "报告进展", progress: "进展情况", complete: "办结",
        outcome: "办结情况", withdraw: "撤回", withdrawReason: "撤回理由", detail: "详情", sent: "委托已发出",
        done: "已完成", due: "期限", none: "暂无", noPosition: "暂无定位", kind_requested: "委托",
        kind_accepted: "受理", kind_refused: "退回", kind_units: "派出单元", kind_report: "进展",
        kind_completed: "办结", kind_withdrawn: "撤回", noUnitsShown: "任务未在执行，不显示受托单元",
        queued: "待下发", delivered: "已下发", acknowledged: "已接收", in_progress: "执行中", failed: "未完成",
        cancelled: "已撤销" },
  en: { title: "Command Centre · Entrustments", console: "Console", home: "Home", lang: "中文",
        newRequest: "Entrust a task to another court", task: "task", address: "address", lat: "lat", lon: "lon",
        deadline: "Deadline", reason: "why", send: "Entrust", received: "Asked of our court",
        asked: "Asked by our court", unitsTitle: "Assigned units", requested: "requested", accepted: "accepted",
        refused: "refused", completed: "completed", withdrawn: "withdrawn", accept: "Accept", refuse: "Refuse",
        refuseReason: "why refused", assign: "Assign units", report: "Report", progress: "progress",
        complete: "Complete", outcome: "outcome", withdraw: "Withdraw", withdrawReason: "why withdrawn",
        detail: "Details", sent: "entrustment sent", done: "done", due: "due", none: "none",
        noPosition: "no fix yet", kind_requested: "requested", kind_accepted: "accepted", kind_refused: "refused",
        kind_units: "units", kind_report: "progress", kind_completed: "completed", kind_withdrawn: "withdrawn",
        noUnitsShown: "the task is not running: its units are not shown", queued: "queued",
        delivered: "delivered", acknowledged: "acknowledged", in_progress: "in progress", failed: "failed",
        cancelled: "cancelled" },
};
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const token = sessionStorage.getItem("token");
// me: the caller; courts: every court (names); units: ours (to assign); chosen: the entrustment shown in detail
const state = { me: null, courts: [], units: [], entrustments: [], chosen: null, detail: null, positions: null,
                refreshes: 0 };
window.entrustState = state;

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
const stamp = (ms) => new Date(ms).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", { hour12: false });
const time = (ms) => el("time", { textContent: stamp(ms) });
const badge = (status) => el("span", { className: `status ${status}`, textContent: t(status) });
const say = (text) => { document.getElementById("message").textContent = text; };
const courtName = (id) => state.courts.find((c) => c.id === id)?.name || id;

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  document.querySelectorAll("[data-i18n-placeholder]").forEach((node) => { node.placeholder = t(node.dataset.i18nPlaceholder); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
  render();
}

// A step button, with the text box its step needs (a reason, a report) beside it.
function step(e, path, label, field) {
  const box = el("span", { className: "act" });
  const input = field ? el("input", { maxLength: 1000, placeholder: t(field), name: path }) : null;
  const button = el("button", { type: "button", textContent: t(label), className: path });
  button.addEventListener("click", async () => {
    const text = input?.value.trim() ?? "";
    const body = path === "reports" ? { text } : path === "accept" ? { note: text } : { reason: text };
    await act(`/api/entrustments/${e.id}/${path}`, { method: "POST", body: JSON.stringify(body) });
  });
  if (input) box.append(input);
  box.append(button);
  return box;
}

function assigner(e) {
  const box = el("span", { className: "act" });
  const ours = state.units.filter((u) => u.court_id === e.to_court_id);
  const select = el("select", { multiple: true, name: "units" },
    ...ours.map((u) => el("option", { value: u.id, textContent: `${u.id} ${u.name}`, selected: e.unit_ids.includes(u.id) })));
  const button = el("button", { type: "button", textContent: t("assign"), className: "assign" });
  button.addEventListener("click", async () => {
    const unit_ids = [...select.selectedOptions].map((o) => o.value);
    await act(`/api/entrustments/${e.id}/units`, { method: "PUT", body: JSON.stringify({ unit_ids }) });
  });
  box.append(select, button);
  return box;
}

function row(e) {
  const actions = el("td");
  const receiving = e.sides.includes("receiving");
  const asking = e.sides.includes("asking");
  if (receiving && e.status === "requested") {
    actions.append(step(e, "accept", "accept"), step(e, "refuse", "refuse", "refuseReason"));
  }
  if (receiving && e.status === "accepted") {
    actions.append(assigner(e), step(e, "reports", "report", "progress"), step(e, "complete", "complete", "outcome"));
  }
  if (asking && (e.status === "requested" || e.status === "accepted")) {
    actions.append(step(e, "withdraw", "withdraw", "withdrawReason"));
  }
  const detail = el("button", { type: "button", textContent: t("detail"), className: "detail" });
  detail.addEventListener("click", () => { state.chosen = e.id; refresh().catch((err) => say(err.message)); });
  actions.append(detail);
  const tr = el("tr", { className: state.chosen === e.id ? "chosen" : "" });
  tr.dataset.entrustment = e.id;
  tr.append(el("td", {}, time(e.created_ms)),
            el("td", { textContent: `${courtName(e.from_court_id)} → ${courtName(e.to_court_id)}` }),
            el("td", { textContent: `${e.task} · ${e.address}` }),
            el("td", { textContent: `${t("due")} ${stamp(e.deadline_ms)}` }),
            el("td", {}, badge(e.status)), el("td", { textContent: e.unit_ids.join("、") || "—" }), actions);
  return tr;
}

function render() {
  const received = state.entrustments.filter((e) => e.sides.includes("receiving"));
  const asked = state.entrustments.filter((e) => e.sides.includes("asking") && !e.sides.includes("receiving"));
  const empty = () => el("tr", {}, el("td", { textContent: t("none") }));
  document.querySelector("#received tbody").replaceChildren(...(received.length ? received.map(row) : [empty()]));
  document.querySelector("#asked tbody").replaceChildren(...(asked.length ? asked.map(row) : [empty()]));
  renderDetail();
}

function renderDetail() {
  const panel = document.getElementById("detail-panel");
  panel.hidden = !state.detail;
  if (!state.detail) return;
  const e = state.detail;
  document.getElementById("detail-title").textContent = `${e.task} · ${courtName(e.from_court_id)} → ${courtName(e.to_court_id)}`;
  document.getElementById("timeline").replaceChildren(...e.timeline.map((s) =>
    el("li", {}, time(s.at_ms), [t(`kind_${s.kind}`), courtName(s.court_id), s.text].filter(Boolean).join(" · "))));
  const body = document.querySelector("#positions tbody");
  if (state.positions === null) { body.replaceChildren(el("tr", {}, el("td", { textContent: t("noUnitsShown") }))); return; }
  body.replaceChildren(...state.positions.map((u) => {
    const where = u.position ? `${u.position.lat.toFixed(5)}, ${u.position.lon.toFixed(5)}` : t("noPosition");
    const tr = el("tr");
    tr.dataset.unit = u.unit_id;
    tr.append(el("td", { textContent: `${u.unit_id} ${u.name}` }), el("td", { textContent: where }),
              el("td", { textContent: u.position ? stamp(u.position.fix_time_ms) : "—" }),
              el("td", {}, u.task ? badge(u.task.status) : "—", u.task?.note ? ` ${u.task.note}` : ""));
    return tr;
  }));
}

async function refresh() {
  const { entrustments } = await api("/api/entrustments?all=true");
  state.entrustments = entrustments;
  state.detail = null;
  state.positions = null;
  if (state.chosen) {
    const { entrustment, sides } = await api(`/api/entrustments/${state.chosen}`);
    state.detail = entrustment;
    // the asking court follows the units only while the task runs; the receiving court always
    if (sides.includes("receiving") || entrustment.status === "accepted") {
      state.positions = (await api(`/api/entrustments/${state.chosen}/units`)).units;
    }
  }
  state.refreshes += 1;
  render();
}

async function act(path, options) {
  try { await api(path, options); say(t("done")); await refresh(); } catch (err) { say(err.message); }
}

async function request(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const number = (name) => (form.get(name) === "" ? null : Number(form.get(name)));
  const body = { to_court_id: form.get("to_court_id"), task: form.get("task"), address: form.get("address"),
                 lat: number("lat"), lon: number("lon"), reason: form.get("reason"),
                 deadline: new Date(form.get("deadline")).toISOString() };
  try {
    const made = await api("/api/entrustments", { method: "POST", body: JSON.stringify(body) });
    event.target.reset();
    state.chosen = made.entrustment.id;
    say(t("sent"));
    await refresh();
  } catch (err) { say(err.message); }
}

async function start() {
  if (!token) { location.replace("/"); return; }
  const [me, courts, units] = await Promise.all([api("/api/me"), api("/api/courts"), api("/api/units")]);
  Object.assign(state, { me, courts: courts.courts, units: units.units });
  document.getElementById("whoami").textContent = `${me.user.display_name} · ${courtName(me.court_id)}`;
  const to = document.querySelector("#request-form select[name=to_court_id]");
  to.replaceChildren(...state.courts.filter((c) => c.id !== me.court_id)
    .map((c) => el("option", { value: c.id, textContent: `${c.name} (${c.id})` })));
  document.getElementById("request-form").addEventListener("submit", request);
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); applyLanguage();
  });
  applyLanguage();
  await refresh();
  setInterval(() => refresh().catch((err) => say(err.message)), 5000);
}

start().catch((err) => say(err.message));
