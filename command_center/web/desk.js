// Judge's query desk (点对点查控): pick a case, its parties and the agencies, submit; every agency's answer
// arrives live over the screen socket (topic query:<id>, docs/protocols.md), with a countdown to the
// deadline, the assets grouped by kind, follow-up requests with their approval state, and a small map of
// the properties and vehicles whose location the agency knows. Test hooks: window.deskState.
import { api, token } from "/static/lib/api.js";
import { el } from "/static/lib/dom.js";
import { applyTexts, errorText, formatDateTime, onLanguage, translator } from "/static/lib/i18n.js";
import { createMap } from "/static/lib/map.js";
import { guard, renderNav, showWho } from "/static/lib/nav.js";
import { ScreenSocket } from "/static/lib/screen_socket.js";

const t = translator("desk");
const FINAL = new Set(["answered", "no_assets", "failed", "timed_out"]);

// query: the open query's view; jobs: job_id -> job view; followups: asset_id -> [follow-up views]
const state = { cases: [], agencies: [], query: null, jobs: new Map(), followups: new Map(), updates: 0 };
window.deskState = state;

const money = (cents) => (cents == null ? "" : `¥${(cents / 100).toLocaleString("zh-CN", { minimumFractionDigits: 2 })}`);
function applyLanguage() {
  applyTexts(t);
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
    const li = el("li", { textContent: `${formatDateTime(q.created_ms)} · ${q.reason}` });
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
    const query = await api("/api/queries", { method: "POST", json: body, headers: { "Idempotency-Key": asking.key } });
    asking = { body: "", key: "" };
    showQuery(query);
    follow(query.id);
    loadHistory();
  } catch (exc) {
    error.textContent = errorText(exc);
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
  const reason = encodeURIComponent(t("viewReason"));
  showQuery(await api(`/api/queries/${queryId}?reason=${reason}`));
  follow(queryId);
}

// The open query's answers, live on topic query:<id>: one socket client per query followed (resume, backoff
// and `bye` as every page, screen_socket.js); a snapshot after a break reloads the follow-ups it may have missed.
let socket = null;
function follow(queryId) {
  socket?.close();
  let snapshots = 0;
  socket = new ScreenSocket({ topics: [`query:${queryId}`], deadMs: 0, onMessage: (message) => {
    if (message.topic !== `query:${queryId}` || state.query?.id !== queryId) return;
    if (message.type === "snapshot") {
      state.query = message.query;
      state.jobs = new Map(message.query.jobs.map((j) => [j.job_id, j]));
      if (snapshots++ > 0) loadFollowups();  // back after a break: follow-up changes may have been missed
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
  } }).start();
}

// How far a follow-up has got: a list read over HTTP may be older than an update the socket brought meanwhile,
// and must not take a follow-up back (a confirmed freeze shown as awaiting approval again).
const FOLLOWUP_STAGE = { awaiting_approval: 0, approved: 1, sending: 2, rejected: 3, confirmed: 3, refused: 3, failed: 3 };
const later = (a, b) => ((FOLLOWUP_STAGE[a.status] ?? 0) >= (FOLLOWUP_STAGE[b.status] ?? 0) ? a : b);

async function loadFollowups() {
  if (!state.query) return;
  const { followups } = await api(`/api/followups?query_id=${state.query.id}`);
  const known = new Map([...state.followups.values()].flat().map((f) => [f.id, f]));
  state.followups = new Map();
  for (const read of followups) {
    const f = known.has(read.id) ? later(known.get(read.id), read) : read;
    if (!state.followups.has(f.asset_id)) state.followups.set(f.asset_id, []);
    state.followups.get(f.asset_id).push(f);
  }
  renderAssets();
}

async function requestFollowup(asset, action) {
  const body = { asset_id: asset.id, action, reason: t("followupReason") };
  if (action === "deduct") body.amount_cents = asset.value_cents;
  try {
    await api("/api/followups", { method: "POST", json: body });
    say("");
  } catch (exc) {
    say(errorText(exc));
  }
  loadFollowups();
}

const say = (text) => { document.getElementById("ask-error").textContent = text; };

// Drawing ---------------------------------------------------------------------------------------------------

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
    if (job.error) card.append(el("div", { className: "why", textContent: t("agencyFailed"), title: job.error }));
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
    parts.push(el("h3", { textContent: `${t(`asset_${kind}`)} · ${rows.length}${total ? ` · ${money(total)}` : ""}` }));
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

// The small map: properties and vehicles whose location the agency gave, framed on them ----------------------
let map = null;
let markers = null;
let toMap = (lat, lon) => [lat, lon];
window.deskState.markers = () => (markers ? markers.getLayers().length : 0);
// Test hook: is every marker inside the map, clear of its edge (the map is framed on the assets)?
window.deskState.markersInView = () => {
  const inner = map.getBounds().pad(-0.03);
  return markers.getLayers().every((marker) => inner.contains(marker.getLatLng()));
};

async function setUpMap() {
  ({ map, toMap } = await createMap("minimap"));
  map.setZoom(Math.max(map.getZoom() - 1, 3));
  markers = L.layerGroup().addTo(map);
}

function renderMap() {
  if (!markers) return;
  markers.clearLayers();
  const points = [];
  for (const job of state.jobs.values()) {
    for (const asset of job.assets) {
      const at = asset.details?.location;
      if (!at) continue;
      const color = asset.kind === "real_estate" ? "#f5a524" : "#3d8bfd";
      const where = toMap(at.lat, at.lon);
      L.circleMarker(where, { radius: 7, color, fillColor: color, fillOpacity: 0.8 })
        .bindTooltip(`${t(`asset_${asset.kind}`)} · ${asset.description}`).addTo(markers);
      points.push(where);
    }
  }
  // every marker inside, clear of the edge (a marker's radius plus its tooltip's reach)
  if (points.length) { map.invalidateSize(); map.fitBounds(points, { padding: [40, 40], maxZoom: 15 }); }
}

// Start -----------------------------------------------------------------------------------------------------
async function start() {
  if (!token()) { document.getElementById("signin").hidden = false; onLanguage(() => applyTexts(t)); return; }
  document.getElementById("desk").hidden = false;
  const me = await guard("desk", t);
  if (!me) return;
  renderNav(me, t);
  showWho(me, t);
  if (me.user.role !== "judge") {  // a supervisor or an administrator reads queries; only the case's judge asks
    document.getElementById("submit").disabled = true;
    document.getElementById("submit").title = t("onlyJudges");
    say(t("onlyJudges"));
  }
  [{ cases: state.cases }, { agencies: state.agencies }] = await Promise.all([api("/api/cases"), api("/api/agencies")]);
  const select = document.getElementById("case");
  select.replaceChildren(...state.cases.map((c) => el("option", { value: c.id, textContent: `${c.case_number} ${c.title}${c.status === "active" ? "" : ` (${c.status_label})`}` })));
  select.addEventListener("change", () => { renderParties(); loadHistory(); });
  document.getElementById("all-agencies").addEventListener("change", renderAgencies);
  document.getElementById("submit").addEventListener("click", submit);
  // A supervisor's approval and the agency's answer arrive on the query's socket (``followup`` updates): no
  // polling, since every list of follow-ups read is an entry in the audit chain.
  renderParties();
  onLanguage(applyLanguage);  // the agencies, before the map: asking needs no map
  await setUpMap();
  renderMap();
  await loadHistory();
  map.invalidateSize();
}
start().catch((exc) => say(errorText(exc)));
