// Entrustment between courts (执行委托): ask another court's centre to act in its area; decide on, staff and
// report the tasks other courts ask of ours; follow a task's timeline and, while it runs, its units' positions.
// Live, not polled: the screen socket's `entrustments` topic tells of every step (asked, accepted, refused, units,
// progress, done, withdrawn, overdue) of ours, asked or received, and the page reads the changed state then;
// `entrusted:<id>` brings the chosen task's units' positions while it runs (docs/protocols.md "Screens").
// Texts from the catalogue's `entrust` section. Test hooks: window.entrustState.
import { api, token } from "/static/lib/api.js";
import { el } from "/static/lib/dom.js";
import { applyTexts, errorText, formatDateTime, fromDateTimeInput, onLanguage, toDateTimeInput, translator } from "/static/lib/i18n.js";
import { guard, renderNav, showWho } from "/static/lib/nav.js";
import { ScreenSocket } from "/static/lib/screen_socket.js";

const t = translator("entrust");
const DAY_MS = 86_400_000;
// me: the caller; courts: every court (names); units: ours (to assign); chosen: the entrustment shown in detail
// steps: entrustment events heard on the socket; frames: position frames of the chosen one's units; following: the entrusted:<id> socket of the chosen one, if any
const state = { me: null, courts: [], units: [], entrustments: [], chosen: null, detail: null, positions: null,
                refreshes: 0, steps: 0, frames: 0, following: null };
window.entrustState = state;

const time = (ms) => el("time", { textContent: formatDateTime(ms) });
const badge = (status) => el("span", { className: `status ${status}`, textContent: t(status) });
const say = (text) => { document.getElementById("message").textContent = text; };
const sayError = (exc) => say(errorText(exc));
const courtName = (id) => state.courts.find((c) => c.id === id)?.name || id;

// A step button, with the text box its step needs (a reason, a report) beside it.
function step(e, path, label, field) {
  const box = el("span", { className: "act" });
  const input = field ? el("input", { maxLength: 1000, placeholder: t(field), name: path }) : null;
  const button = el("button", { type: "button", textContent: t(label), className: path });
  button.addEventListener("click", async () => {
    // the row may have been drawn again since this button was made (a step heard on the socket): read the box
    // that is on the page now, which holds what was typed
    const shown = input && document.querySelector(`tr[data-entrustment="${e.id}"] input[name="${path}"]`);
    const text = (shown ?? input)?.value.trim() ?? "";
    const body = path === "reports" ? { text } : path === "accept" ? { note: text } : { reason: text };
    await act(`/api/entrustments/${e.id}/${path}`, { method: "POST", json: body }, input);
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
    await act(`/api/entrustments/${e.id}/units`, { method: "PUT", json: { unit_ids } });
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
  detail.addEventListener("click", () => { state.chosen = e.id; refresh().catch(sayError); });
  actions.append(detail);
  const tr = el("tr", { className: state.chosen === e.id ? "chosen" : "" });
  tr.dataset.entrustment = e.id;
  tr.append(el("td", {}, time(e.created_ms)),
            el("td", { textContent: `${courtName(e.from_court_id)} → ${courtName(e.to_court_id)}` }),
            el("td", { textContent: `${e.task} · ${e.address}` }),
            el("td", { textContent: `${t("due")} ${formatDateTime(e.deadline_ms)}${e.overdue_ms ? ` · ${t("overdue")}` : ""}` }),
            el("td", {}, badge(e.status)), el("td", { textContent: e.unit_ids.join("、") || t("none") }), actions);
  return tr;
}

// What the user has typed or chosen in the rows, kept across a re-render (a step heard on the socket re-renders
// the tables while someone may be writing a reason or choosing units).
function typed() {
  const kept = new Map();
  for (const field of document.querySelectorAll("tr[data-entrustment] input, tr[data-entrustment] select")) {
    const key = `${field.closest("tr").dataset.entrustment}/${field.name}`;
    kept.set(key, field.multiple ? [...field.selectedOptions].map((o) => o.value) : field.value);
  }
  return kept;
}

function restore(kept) {
  for (const field of document.querySelectorAll("tr[data-entrustment] input, tr[data-entrustment] select")) {
    const value = kept.get(`${field.closest("tr").dataset.entrustment}/${field.name}`);
    if (value === undefined) continue;
    if (field.multiple) { for (const option of field.options) option.selected = value.includes(option.value); }
    else field.value = value;
  }
}

function render() {
  const kept = typed();
  const received = state.entrustments.filter((e) => e.sides.includes("receiving"));
  const asked = state.entrustments.filter((e) => e.sides.includes("asking") && !e.sides.includes("receiving"));
  const empty = () => el("tr", {}, el("td", { textContent: t("noEntrustments") }));
  document.querySelector("#received tbody").replaceChildren(...(received.length ? received.map(row) : [empty()]));
  document.querySelector("#asked tbody").replaceChildren(...(asked.length ? asked.map(row) : [empty()]));
  restore(kept);
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
              el("td", { textContent: u.position ? formatDateTime(u.position.fix_time_ms) : t("none") }),
              el("td", {}, u.task ? badge(u.task.status) : t("none"), u.task?.note ? ` ${u.task.note}` : ""));
    return tr;
  }));
}

// Reads started at once (a click, a step heard) may finish out of order: only the newest read is shown.
let reads = 0;

async function refresh() {
  const read = ++reads;
  const { entrustments } = await api("/api/entrustments?all=true");
  let detail = null;
  let positions = null;
  if (state.chosen) {
    const { entrustment, sides } = await api(`/api/entrustments/${state.chosen}`);
    detail = entrustment;
    // the asking court follows the units only while the task runs; the receiving court always
    if (sides.includes("receiving") || entrustment.status === "accepted") {
      positions = (await api(`/api/entrustments/${state.chosen}/units`)).units;
    }
  }
  if (read !== reads) return;
  for (const unit of positions ?? []) {  // a frame may be newer than the store (positions are written in batches)
    const heard = state.positions?.find((u) => u.unit_id === unit.unit_id)?.position;
    // only where the store still shows the unit: null means it is no longer ours to see
    if (heard && unit.position && heard.fix_time_ms > unit.position.fix_time_ms) unit.position = heard;
  }
  Object.assign(state, { entrustments, detail, positions });
  state.refreshes += 1;
  follow();
  render();
}

// Re-read once per burst of events: a step often comes with others (accepted, then units) within moments.
let pending = null;
function refreshSoon() {
  if (pending) return;
  pending = setTimeout(() => { pending = null; refresh().catch(sayError); }, 100);
}

// While the chosen entrustment runs, its units' positions arrive as frames on entrusted:<id>; the socket is
// closed when another is chosen or the task ends (the server then sends nothing more of those units).
function follow() {
  const want = state.detail && state.positions !== null && state.detail.status === "accepted" ? state.detail.id : null;
  if (state.following?.id === want) return;
  state.following?.socket.close();
  state.following = null;
  if (!want) return;
  const topic = `entrusted:${want}`;
  const socket = new ScreenSocket({ topics: [topic], onMessage: (message) => {
    if (message.topic !== topic || !state.positions) return;
    if (message.type === "frame" || message.type === "snapshot") {
      if (message.type === "frame") state.frames += 1;
      for (const view of message.units) {
        const shown = state.positions.find((u) => u.unit_id === view.unit_id);
        if (shown) shown.position = view.position;
      }
      renderDetail();
    } else if (message.type === "entrusted") {
      refreshSoon();
    }
  } }).start();
  state.following = { id: want, socket };
}

function onScreenMessage(message) {
  if (message.type === "entrustment") {
    state.steps += 1;
    refreshSoon();
  } else if (message.type === "snapshot" && message.topic?.startsWith("entrustments.")) {
    refreshSoon();  // (re)connected: catch up with anything missed meanwhile
  }
}

async function act(path, options, field) {
  try {
    await api(path, options);
    if (field) field.value = "";  // done: what was typed for it is not kept for the next step
    say(t("done"));
    await refresh();
  } catch (exc) { sayError(exc); }
}

async function request(event) {
  event.preventDefault();
  const form = new FormData(event.target);
  const number = (name) => (form.get(name) === "" ? null : Number(form.get(name)));
  const deadline = fromDateTimeInput(form.get("deadline"));
  if (Number.isNaN(deadline)) { say(t("badDeadline")); return; }
  const body = { to_court_id: form.get("to_court_id"), task: form.get("task"), address: form.get("address"),
                 lat: number("lat"), lon: number("lon"), reason: form.get("reason"),
                 deadline: new Date(deadline).toISOString() };
  try {
    const made = await api("/api/entrustments", { method: "POST", json: body });
    event.target.reset();
    event.target.deadline.value = toDateTimeInput(Date.now() + DAY_MS);
    state.chosen = made.entrustment.id;
    say(t("sent"));
    await refresh();
  } catch (exc) { sayError(exc); }
}

async function start() {
  if (!token()) { location.replace("/"); return; }
  const me = await guard("entrust", t);
  if (!me) return;
  renderNav(me, t);
  showWho(me, t);
  const [courts, units] = await Promise.all([api("/api/courts"), api("/api/units")]);
  Object.assign(state, { me, courts: courts.courts, units: units.units });
  const to = document.querySelector("#request-form select[name=to_court_id]");
  to.replaceChildren(...state.courts.filter((c) => c.id !== me.court_id)
    .map((c) => el("option", { value: c.id, textContent: `${c.name} (${c.id})` })));
  const form = document.getElementById("request-form");
  form.deadline.value = toDateTimeInput(Date.now() + DAY_MS);  // a day to act, by default
  form.addEventListener("submit", request);
  document.querySelector("main").hidden = false;
  onLanguage(() => { applyTexts(t); render(); });
  await refresh();
  new ScreenSocket({ topics: ["entrustments"], onMessage: onScreenMessage }).start();
}

start().catch(sayError);
