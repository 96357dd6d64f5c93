// Judge's query desk (点对点查控): pick a case, its parties and the agencies, submit; every agency's answer
// arrives live over the screen socket (topic query:<id>, docs/protocols.md), with a countdown to the
// deadline, the assets grouped by kind, follow-up requests with their approval state, and a small map of
// the properties and vehicles whose location the agency knows. Test hooks: window.deskState.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心 · 点对点查控", home: "首页", lang: "English", signIn: "请先在首页登录",
        case: "案件", parties: "被查询人", agencies: "查询机构", all: "全部", reason: "查询事由",
        submit: "发起查询", history: "本案历次查询", noQuery: "尚未查询", pending: "查询中", answered: "有财产",
        no_assets: "无财产", failed: "失败", timed_out: "超时", late: "（逾期答复）", remaining: "剩余",
        seconds: "秒", completeIn: "已完成 · 用时", progress: "已反馈", assets: "查询结果", noAssets: "暂无财产",
        freeze: "冻结", renew: "续冻", unfreeze: "解冻", deduct: "扣划", awaiting_approval: "待审批",
        approved: "已批准", sending: "发送中", confirmed: "已确认", rejected: "已驳回", refused: "被拒绝",
        needReason: "请填写查询事由（至少2个字）", needParty: "请选择被查询人", followupReason: "执行案件财产控制",
        bank: "银行", real_estate: "不动产", vehicle: "车辆", market_regulator: "市场监管", securities: "证券",
        provident_fund: "公积金", social_insurance: "社保", tax: "税务", insurance: "保险", vessel: "船舶",
        payment: "网络支付", deposit: "存款", equity: "股权", fund: "公积金", policy: "保单", account: "账户",
        onlyJudges: "只有本案承办法官可以发起查询" },
  en: { title: "Command Centre · Asset Queries", home: "Home", lang: "中文", signIn: "Log in on the start page first",
        case: "Case", parties: "Parties", agencies: "Agencies", all: "all", reason: "Reason", submit: "Query",
        history: "Earlier queries of this case", noQuery: "no query yet", pending: "asking", answered: "assets",
        no_assets: "no assets", failed: "failed", timed_out: "timed out", late: " (late answer)",
        remaining: "left", seconds: "s", completeIn: "complete in", progress: "answered", assets: "Results",
        noAssets: "no assets yet", freeze: "Freeze", renew: "Renew", unfreeze: "Unfreeze", deduct: "Deduct",
        awaiting_approval: "awaiting approval", approved: "approved", sending: "sending", confirmed: "confirmed",
        rejected: "rejected", refused: "refused", needReason: "give a reason (2 characters at least)",
        needParty: "choose at least one party", followupReason: "asset control in an enforcement case",
        bank: "banks", real_estate: "real estate", vehicle: "vehicles", market_regulator: "market regulator",
        securities: "securities", provident_fund: "provident fund", social_insurance: "social insurance",
        tax: "tax", insurance: "insurance", vessel: "vessels", payment: "payment platforms", deposit: "deposits",
        equity: "equity", fund: "provident fund", policy: "policies", account: "accounts",
        onlyJudges: "only the case's judges may query" },
};
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => TEXT[lang][key] ?? key;
const token = sessionStorage.getItem("token");
const FINAL = new Set(["answered", "no_assets", "failed", "timed_out"]);

// query: the open query's view; jobs: job_id -> job view; followups: asset_id -> [follow-up views]
const state = { cases: [], agencies: [], query: null, jobs: new Map(), followups: new Map(), updates: 0 };
window.deskState = state;

async function api(path, options = {}) {
  const headers = { Authorization: `Bearer ${token}`, ...(options.body ? { "Content-Type": "application/json" } : {}),
                    ...(options.headers || {}) };
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) { sessionStorage.removeItem("token"); location.replace("/"); }
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error?.message || `${path}: ${response.status}`);
  return body;
}

const money = (cents) => (cents == null ? "" : `¥${(cents / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2 })}`);
function el(tag, props = {}, ...children) {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
}

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
  renderAgencies();
  render();
}

// Asking ---------------------------------------------------------------------------------------------------
function selectedCase() { return state.cases.find((c) => String(c.id) === document.getElementById("case").value); }

function renderParties() {
  const box = document.getElementById("parties");
  const chosen = selectedCase();
  box.replaceChildren(...(chosen ? chosen.parties : []).map((p) => {
    const input = el("input", { type: "checkbox", value: p.id, checked: true });
    return el("label", {}, input, ` ${p.name} · ${p.identifier}`);
  }));
}

function renderAgencies() {
  const box = document.getElementById("agencies");
  const all = document.getElementById("all-agencies").checked;
  const checked = new Set([...box.querySelectorAll("input:checked")].map((i) => i.value));
  box.replaceChildren(...state.agencies.map((a) => {
    const input = el("input", { type: "checkbox", value: a.id, checked: all || checked.has(a.id), disabled: all });
    return el("label", { title: t(a.kind) }, input, ` ${a.name}`);
  }));
}

async function loadHistory() {
  const chosen = selectedCase();
  const list = document.getElementById("history");
  if (!chosen) { list.replaceChildren(); return; }
  const { queries } = await api(`/api/queries?case_id=${chosen.id}`);
  list.replaceChildren(...queries.map((q) => {
    const li = el("li", { textContent: `${new Date(q.created_ms).toLocaleString(locale())} · ${q.reason}` });
    li.addEventListener("click", () => openQuery(q.id));
    return li;
  }));
}

// The Idempotency-Key of the query being asked: kept while the same request is retried (a lost answer, a
// second click), so the server makes one query; a new request gets a new key.
let asking = { body: "", key: "" };
const newKey = () => `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;

async function submit() {
  const error = document.getElementById("ask-error");
  error.textContent = "";
  const chosen = selectedCase();
  const partyIds = [...document.querySelectorAll("#parties input:checked")].map((i) => Number(i.value));
  const reason = document.getElementById("reason").value.trim();
  if (!partyIds.length) { error.textContent = t("needParty"); return; }
  if (reason.length < 2) { error.textContent = t("needReason"); return; }
  const body = { case_id: chosen.id, reason, party_ids: partyIds };
  if (!document.getElementById("all-agencies").checked) {
    body.agency_ids = [...document.querySelectorAll("#agencies input:checked")].map((i) => i.value);
  }
  const button = document.getElementById("submit");
  button.disabled = true;
  try {
    const json = JSON.stringify(body);
    if (asking.body !== json) asking = { body: json, key: newKey() };
    const query = await api("/api/queries", { method: "POST", body: json, headers: { "Idempotency-Key": asking.key } });
    asking = { body: "", key: "" };
    showQuery(query);
    follow(query.id);
    loadHistory();
  } catch (exc) {
    error.textContent = exc.message;
  } finally {
    button.disabled = false;
  }
}

// The open query --------------------------------------------------------------------------------------------
function showQuery(view) {
  state.query = view;
  state.jobs = new Map(view.jobs.map((j) => [j.job_id, j]));
  render();
  loadFollowups();
}

async function openQuery(queryId) {
  const reason = encodeURIComponent(lang === "zh" ? "查看查询结果" : "view results");
  showQuery(await api(`/api/queries/${queryId}?reason=${reason}`));
  follow(queryId);
}

let socket = null;
async function follow(queryId, reconnecting = false) {
  if (socket) { socket.onclose = null; socket.close(); }
  socket = null;
  let url;
  try {
    url = await window.ticket.socketUrl("/api/screen/ws", token);
  } catch (err) {
    console.warn("query socket:", err.message);
    setTimeout(() => { if (state.query?.id === queryId && !socket) follow(queryId); }, 1000);
    return;
  }
  if (socket || state.query?.id !== queryId) return;  // another query was opened meanwhile
  const ws = new WebSocket(url);
  socket = ws;
  let seq = null;
  ws.onopen = () => ws.send(JSON.stringify({ type: "subscribe", topics: [`query:${queryId}`],
                                             resume: seq === null ? {} : { [`query:${queryId}`]: seq } }));
  ws.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.topic !== `query:${queryId}` || state.query?.id !== queryId) return;
    if (message.seq !== undefined) seq = message.seq;
    if (message.type === "snapshot") {
      state.query = message.query;
      state.jobs = new Map(message.query.jobs.map((j) => [j.job_id, j]));
      if (reconnecting) loadFollowups();  // back after a break: follow-up changes may have been missed
    } else if (message.type === "query_update" && message.event === "followup") {
      const f = message.followup;
      const list = (state.followups.get(f.asset_id) || []).filter((g) => g.id !== f.id);
      state.followups.set(f.asset_id, [...list, f]);
      renderAssets();
    } else if (message.type === "query_update" && message.event === "job") {
      state.jobs.set(message.job.job_id, message.job);
    } else if (message.type === "query_update" && message.event === "complete") {
      state.query = { ...state.query, complete: true, completed_ms: message.completed_ms };
    }
    state.updates += 1;
    render();
  };
  ws.onclose = (event) => {
    if (event.code === window.ticket.CLOSE_REVOKED) { window.ticket.signOut(); return; }  // logged out, revoked…
    if (socket === ws) setTimeout(() => follow(queryId, true), 1000);
  };
}

async function loadFollowups() {
  if (!state.query) return;
  const { followups } = await api(`/api/followups?query_id=${state.query.id}`);
  state.followups = new Map();
  for (const f of followups) {
    if (!state.followups.has(f.asset_id)) state.followups.set(f.asset_id, []);
    state.followups.get(f.asset_id).push(f);
  }
  renderAssets();
}

async function requestFollowup(asset, action) {
  const body = { asset_id: asset.id, action, reason: t("followupReason") };
  if (action === "deduct") body.amount_cents = asset.value_cents;
  try {
    await api("/api/followups", { method: "POST", body: JSON.stringify(body) });
  } catch (exc) {
    alert(exc.message);
  }
  loadFollowups();
}

// Drawing ---------------------------------------------------------------------------------------------------
function locale() { return lang === "zh" ? "zh-CN" : "en-GB"; }

function render() {
  renderSummary();
  renderGrid();
  renderAssets();
  renderMap();
}

function renderSummary() {
  const query = state.query;
  if (!query) return;
  document.getElementById("query-title").textContent = `${query.case_number} · ${query.reason}`;
  const jobs = [...state.jobs.values()];
  const done = jobs.filter((j) => FINAL.has(j.status)).length;
  document.getElementById("progress").textContent = `${t("progress")} ${done}/${jobs.length}`;
  tick();
}

function tick() {
  const query = state.query;
  const clock = document.getElementById("countdown");
  if (!query) return;
  if (query.complete) {
    clock.className = "countdown done";
    clock.textContent = `${t("completeIn")} ${((query.completed_ms - query.created_ms) / 1000).toFixed(1)} ${t("seconds")}`;
  } else {
    const left = Math.max(0, query.deadline_ms - Date.now()) / 1000;
    clock.className = "countdown";
    clock.textContent = `${t("remaining")} ${left.toFixed(1)} ${t("seconds")}`;
  }
}
setInterval(tick, 100);

function renderGrid() {
  const grid = document.getElementById("grid");
  const jobs = [...state.jobs.values()].sort((a, b) => a.agency_name.localeCompare(b.agency_name, "zh-CN"));
  grid.replaceChildren(...jobs.map((job) => {
    const card = el("div", { className: `job ${job.status}` });
    card.dataset.agency = job.agency_id;
    card.append(el("b", { textContent: job.agency_name }));
    const count = job.assets.length ? ` · ${job.assets.length}` : "";
    card.append(el("span", { className: "state", textContent: t(job.status) + count + (job.late ? t("late") : "") }));
    if (state.query && new Set([...state.jobs.values()].map((j) => j.party_id)).size > 1) {
      card.append(el("div", { className: "why", textContent: job.party_name }));
    }
    if (job.error) card.append(el("div", { className: "why", textContent: job.error }));
    return card;
  }));
}

function renderAssets() {
  const box = document.getElementById("assets");
  const agencies = new Map(state.agencies.map((a) => [a.id, a]));
  const byKind = new Map();
  for (const job of state.jobs.values()) {
    for (const asset of job.assets) {
      if (!byKind.has(asset.kind)) byKind.set(asset.kind, []);
      byKind.get(asset.kind).push({ asset, job });
    }
  }
  const parts = [el("h2", { textContent: t("assets") })];
  if (!byKind.size) parts.push(el("p", { className: "why", textContent: t("noAssets") }));
  for (const [kind, rows] of byKind) {
    const total = rows.reduce((sum, r) => sum + (r.asset.value_cents || 0), 0);
    parts.push(el("h3", { textContent: `${t(kind)} · ${rows.length}${total ? ` · ${money(total)}` : ""}` }));
    const table = el("table");
    for (const { asset, job } of rows) {
      const actions = el("td", { className: "actions" });
      for (const f of state.followups.get(asset.id) || []) {
        actions.append(el("span", { className: `followup ${f.status}`, textContent: `${t(f.action)}·${t(f.status)}` }));
      }
      const frozen = (state.followups.get(asset.id) || []).some((f) => f.action === "freeze" && f.status === "confirmed");
      for (const action of agencies.get(job.agency_id)?.followups || []) {
        if ((action === "renew" || action === "unfreeze") && !frozen) continue;  // only once a freeze holds
        const button = el("button", { type: "button", textContent: t(action) });
        button.dataset.action = action;
        button.addEventListener("click", () => requestFollowup(asset, action));
        actions.append(button);
      }
      const row = el("tr");
      row.dataset.assetId = asset.id;
      row.append(el("td", { textContent: asset.description }), el("td", { className: "why", textContent: job.agency_name }),
                 el("td", { className: "money", textContent: money(asset.value_cents) }), actions);
      table.append(row);
    }
    parts.push(table);
  }
  box.replaceChildren(...parts);
}

// The small map: properties and vehicles whose location the agency gave ----------------------------------------
const map = L.map("minimap", { zoomControl: true, attributionControl: false });
const markers = L.layerGroup().addTo(map);
window.deskState.markers = () => markers.getLayers().length;

async function setUpMap() {
  const config = await api("/api/map/config");
  map.setView(config.center, Math.max(config.zoom - 1, 3));
  if (config.tile_url) {
    L.tileLayer(config.tile_url, { maxZoom: 19 }).addTo(map);
  } else if (config.basemap_url) {
    const outlines = await (await fetch(config.basemap_url)).json();
    L.geoJSON(outlines, { interactive: false, style: { color: "#35507a", weight: 1, fillColor: "#10233f", fillOpacity: 0.6 } })
      .addTo(map);
  }
}

function renderMap() {
  markers.clearLayers();
  const points = [];
  for (const job of state.jobs.values()) {
    for (const asset of job.assets) {
      const at = asset.details?.location;
      if (!at) continue;
      const color = asset.kind === "real_estate" ? "#f5a524" : "#3d8bfd";
      L.circleMarker([at.lat, at.lon], { radius: 7, color, fillColor: color, fillOpacity: 0.8 })
        .bindTooltip(`${t(asset.kind)} · ${asset.description}`).addTo(markers);
      points.push([at.lat, at.lon]);
    }
  }
  if (points.length) map.fitBounds(points, { padding: [25, 25], maxZoom: 13 });
}

// Start -----------------------------------------------------------------------------------------------------
async function start() {
  document.getElementById("lang").addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("lang", lang);
    applyLanguage();
  });
  if (!token) { document.getElementById("signin").hidden = false; applyLanguage(); return; }
  document.getElementById("desk").hidden = false;
  map.invalidateSize();
  const me = await api("/api/me");
  document.getElementById("whoami").textContent = `${me.user.display_name} · ${me.court_id}`;
  if (me.user.role !== "judge") document.getElementById("ask-error").textContent = t("onlyJudges");
  [{ cases: state.cases }, { agencies: state.agencies }] = await Promise.all([api("/api/cases"), api("/api/agencies")]);
  const select = document.getElementById("case");
  select.replaceChildren(...state.cases.map((c) => el("option", { value: c.id, textContent: `${c.case_number} ${c.title}${c.status === "active" ? "" : ` (${c.status_label})`}` })));
  select.addEventListener("change", () => { renderParties(); loadHistory(); });
  document.getElementById("all-agencies").addEventListener("change", renderAgencies);
  document.getElementById("submit").addEventListener("click", submit);
  // A supervisor's approval and the agency's answer arrive on the query's socket (``followup`` updates): no
  // polling, since every list of follow-ups read is an entry in the audit chain.
  renderParties();
  applyLanguage();
  await Promise.all([loadHistory(), setUpMap()]);
  map.invalidateSize();
}
start();
