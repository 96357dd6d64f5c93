// Consultation rooms (执行会商): open a room on an operation or a case with the centres that should confer,
// follow who is present and who the host has muted, join and leave, and watch the pinned unit's live video
// (the unit's own WHEP route). Polls the API every two seconds. Test hooks: window.roomsState.
// The participants' own audio and video are not built yet (README: consultation rooms).
import { api, token } from "/static/lib/api.js";
import { el, fillSelect } from "/static/lib/dom.js";
import { applyTexts, errorText, formatDateTime, onLanguage, translator } from "/static/lib/i18n.js";
import { courtNames, guard, renderNav, showWho } from "/static/lib/nav.js";
import { watch } from "/static/lib/webrtc.js";

const t = translator("rooms");
const REFRESH_MS = 2000;
// rooms: mine; chosen: the room shown; room/host: its detail and whether I host it; candidates: who may be invited
const state = { me: null, rooms: [], chosen: null, room: null, host: false, candidates: [], refreshes: 0 };
window.roomsState = state;
let stopWatching = null;
let courts = new Map();  // id -> name: people are shown with their court's name, never its code
const courtOf = (c) => courts.get(c.court_id) || c.court_id;

const say = (text) => { document.getElementById("message").textContent = text; };
const sayError = (exc) => say(errorText(exc));

async function act(path, json) {
  try {
    const body = await api(path, { method: "POST", ...(json === undefined ? {} : { json }) });
    say("");
    return body;
  } catch (exc) {
    sayError(exc);
    return null;
  } finally {
    await refresh();
  }
}

function matterQuery(form) {
  const operation = form.operation_id.value;
  return operation ? { operation_id: operation } : { case_id: Number(form.case_id.value) };
}

async function findPeople() {
  const form = document.getElementById("open-form");
  const query = new URLSearchParams(matterQuery(form));
  try {
    const { candidates } = await api(`/api/rooms/candidates?${query}`);
    state.candidates = candidates;
    const box = document.getElementById("candidates");
    box.replaceChildren(el("legend", { textContent: t("invite") }), ...candidates.map((c) => el("label", {},
      el("input", { type: "checkbox", name: "invited", value: String(c.user_id) }),
      ` ${c.display_name}（${t(`role_${c.role}`)} · ${courtOf(c)}）`)));
    say(candidates.length ? "" : t("nobody"));
  } catch (exc) { sayError(exc); }
}

async function openRoom(event) {
  event.preventDefault();
  const form = event.target;
  const invited = [...form.querySelectorAll("input[name=invited]:checked")].map((box) => Number(box.value));
  const json = { title: form.title.value, ...matterQuery(form), invited,
                 ...(form.unit_id.value ? { unit_id: form.unit_id.value } : {}) };
  const body = await act("/api/rooms", json);
  if (body) { state.chosen = body.room.id; form.title.value = ""; say(t("opened")); await refresh(); }
}

function renderRooms() {
  const body = document.querySelector("#rooms tbody");
  body.replaceChildren(...state.rooms.map((r) => {
    const show = el("button", { type: "button", textContent: t("show"), className: "show" });
    show.addEventListener("click", async () => { state.chosen = r.id; await refresh(); });
    const row = el("tr", { className: r.id === state.chosen ? "chosen" : "" },
      el("td", { textContent: r.title }), el("td", {}, el("span", { className: `status ${r.status}`, textContent: t(`room_${r.status}`) })),
      el("td", { textContent: formatDateTime(r.created_ms) }), el("td", {}, show));
    row.dataset.room = r.id;
    return row;
  }));
  if (!state.rooms.length) body.append(el("tr", {}, el("td", { textContent: t("noRooms") })));
}

function renderRoom() {
  const panel = document.getElementById("room-panel");
  const room = state.room;
  panel.hidden = !room;
  if (!room) return;
  const mine = room.members.find((m) => m.user_id === state.me.user.id);
  document.getElementById("room-title").textContent = `${room.title}（${t(`room_${room.status}`)}）`;
  document.getElementById("room-matter").textContent = room.operation_id
    ? `${t("operation")} ${room.operation_id}` : `${t("case")} ${room.case_id}`;
  const open = room.status === "open";
  document.getElementById("join").hidden = !open || Boolean(mine?.present);
  document.getElementById("leave").hidden = !mine?.present;
  document.getElementById("close").hidden = !(open && state.host);
  document.getElementById("invite-more").hidden = !(open && state.host);
  document.getElementById("pinned").hidden = !room.unit_id;
  const body = document.querySelector("#members tbody");
  body.replaceChildren(...room.members.map((m) => {
    const flags = el("td", {}, el("span", { className: m.present ? "present" : "absent", textContent: t(m.present ? "present" : "absent") }));
    if (m.muted) flags.append(" ", el("span", { className: "muted-flag", textContent: t("muted") }));
    const row = el("tr", {}, el("td", { textContent: m.display_name + (m.user_id === room.host_id ? `（${t("host")}）` : "") }), flags);
    if (open && state.host && m.user_id !== state.me.user.id) {
      const mute = el("button", { type: "button", className: "mute", textContent: t(m.muted ? "unmute" : "mute") });
      mute.addEventListener("click", () => act(`/api/rooms/${room.id}/mute`, { user_id: m.user_id, muted: !m.muted }));
      row.append(el("td", {}, mute));
    }
    row.dataset.user = m.display_name;
    return row;
  }));
  const invited = new Set(room.members.map((m) => m.user_id));
  fillSelect(document.getElementById("more"), state.candidates.filter((c) => !invited.has(c.user_id))
    .map((c) => [String(c.user_id), `${c.display_name}（${courtOf(c)}）`]));
}

function render() {
  renderRooms();
  renderRoom();
}

async function refresh() {
  try {
    state.rooms = (await api("/api/rooms")).rooms;
    if (state.chosen) {
      const body = await api(`/api/rooms/${state.chosen}`);
      if (body.host && state.room?.id !== body.room.id) {  // the host's invite list: this room's candidates
        const query = body.room.operation_id ? { operation_id: body.room.operation_id } : { case_id: body.room.case_id };
        state.candidates = (await api(`/api/rooms/candidates?${new URLSearchParams(query)}`)).candidates;
      }
      state.room = body.room;
      state.host = body.host;
    }
  } catch (exc) {
    sayError(exc);
  }
  state.refreshes += 1;
  render();
}

async function start() {
  if (!token()) { location.replace("/"); return; }
  const me = await guard("rooms", t);
  if (!me) return;
  state.me = me;
  renderNav(me, t);
  showWho(me, t);
  courts = await courtNames().catch(() => new Map());
  const [{ operations }, { units }] = await Promise.all([api("/api/operations"), api("/api/units")]);
  fillSelect(document.querySelector("#open-form select[name=operation_id]"),
    [["", t("none")], ...operations.map((o) => [o.id, o.title])]);
  fillSelect(document.querySelector("#open-form select[name=unit_id]"),
    [["", t("none")], ...units.map((u) => [u.id, `${u.name}（${u.id}）`])]);
  document.getElementById("find").addEventListener("click", findPeople);
  document.getElementById("open-form").addEventListener("submit", openRoom);
  document.getElementById("join").addEventListener("click", () => act(`/api/rooms/${state.chosen}/join`));
  document.getElementById("leave").addEventListener("click", () => act(`/api/rooms/${state.chosen}/leave`));
  document.getElementById("close").addEventListener("click", () => act(`/api/rooms/${state.chosen}/close`));
  document.getElementById("invite-button").addEventListener("click", () => {
    const chosen = document.getElementById("more").value;
    if (chosen) act(`/api/rooms/${state.chosen}/invite`, { user_ids: [Number(chosen)] });
  });
  document.getElementById("watch").addEventListener("click", async () => {
    if (stopWatching) { await stopWatching(); stopWatching = null; return; }
    try { stopWatching = await watch(state.room.unit_id, document.getElementById("video")); } catch (exc) { sayError(exc); }
  });
  document.querySelector("main").hidden = false;
  onLanguage(() => { applyTexts(t); render(); });
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start();
