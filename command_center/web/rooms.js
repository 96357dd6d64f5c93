// Consultation rooms (执行会商): open a room on an operation or a case with the centres that should confer,
// follow who is present and who the host has muted, join and leave, and watch the pinned unit's live video
// (the unit's own WHEP route). A member who has joined confers in the 会商 view (conference.js): their camera,
// a tile per other participant, the unit pinned large. The chosen room's members (present, muted, publishing,
// speaking) come from the screen socket's `room:{id}` topic; the list of rooms is polled every two seconds, and
// the room itself only while its socket has told nothing yet (or after this page's own actions).
// Test hooks: window.roomsState (media: the conference's describe(); conference: the 会商 view itself).
import { api, token } from "/static/lib/api.js";
import { el, fillSelect } from "/static/lib/dom.js";
import { applyTexts, errorText, formatDateTime, onLanguage, translator } from "/static/lib/i18n.js";
import { courtNames, guard, renderNav, showWho } from "/static/lib/nav.js";
import { ScreenSocket } from "/static/lib/screen_socket.js";
import { watch } from "/static/lib/webrtc.js";
import { Conference } from "/static/conference.js";

const t = translator("rooms");
const REFRESH_MS = 2000;
// rooms: mine; chosen: the room shown; room/host: its detail and whether I host it; candidates: who may be invited
// live: the room's socket topic has spoken (its members then come from there); recording: the host's last word
const state = { me: null, rooms: [], chosen: null, room: null, host: false, candidates: [], refreshes: 0,
                live: false, recording: false, roomEvents: 0,
                get media() { return conference ? conference.describe() : null; },
                get conference() { return conference; } };
window.roomsState = state;
let stopWatching = null;
let conference = null;  // the 会商 view while I am present in the chosen, open room
let socket = null;  // the chosen room's screen socket
// {room, present} after my join or leave, until the socket (or, without it, the API) says the same: an event
// sent before the server knew neither restarts the camera of one who left nor stops one who joined
let expected = null;
const myself = (members) => members?.find((m) => m.user_id === state.me.user.id);
const settle = (roomId, members) => {
  if (expected?.room === roomId && myself(members)?.present === expected.present) expected = null;
};
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
    await refresh(true);
  }
}

/** The chosen room's socket: a `room:{id}` event carries every member's presence, mute and media state. */
function follow(roomId) {
  if (socket?.roomId === roomId) return;
  socket?.close();
  socket = null;
  state.live = false;
  if (!roomId) return;
  const topic = `room:${roomId}`;
  socket = new ScreenSocket({ topics: [topic], onMessage: (message) => {
    const room = message.room || {};
    if (message.topic !== topic && room.id !== roomId && message.room_id !== roomId) return;
    if (state.chosen !== roomId || !state.room || state.room.id !== roomId) return;
    const members = message.members || room.members;
    if (!members) return;
    state.live = true;
    state.roomEvents += 1;
    state.room = { ...state.room, ...room, members: mergeMembers(state.room.members, members) };
    settle(roomId, members);
    if (typeof (message.recording ?? room.recording) === "boolean") state.recording = message.recording ?? room.recording;
    render();
  } });
  socket.roomId = roomId;
  socket.start();
}

/** The socket's members over the ones known (it may leave out fields such as display_name). */
function mergeMembers(known, fresh) {
  const old = new Map((known || []).map((m) => [m.user_id, m]));
  return fresh.map((m) => ({ ...old.get(m.user_id), ...m }));
}

async function stopConference(options = {}) {
  const leaving = conference;
  conference = null;
  if (leaving) await leaving.stop(options);
}

/** Starts or ends the 会商 view as my presence in the chosen room says, and hands it the members. */
function syncConference() {
  const room = state.room;
  const mine = room?.members.find((m) => m.user_id === state.me.user.id);
  const present = expected && expected.room === room?.id ? expected.present : mine?.present;
  const confer = Boolean(room && room.status === "open" && present);
  if (conference && (!confer || conference.roomId !== room.id)) stopConference();
  if (confer && !conference) {
    if (stopWatching) { stopWatching(); stopWatching = null; }
    conference = new Conference({
      roomId: room.id, unitId: room.unit_id, me: state.me.user.id, t, say,
      grid: document.getElementById("tiles"), pinned: document.getElementById("video"),
      pinnedNote: document.getElementById("pinned-note"),
      actions: { mute: (userId, muted) => act(`/api/rooms/${room.id}/mute`, { user_id: userId, muted }) },
    });
    conference.start();
  }
  if (conference) conference.update(room.members, state.host);
  document.getElementById("conference-bar").hidden = !conference;
  document.querySelector("main").classList.toggle("conferring", Boolean(conference));  // the room comes first
  document.getElementById("watch").hidden = Boolean(conference);
  const record = document.getElementById("record");
  record.hidden = !(conference && state.host);
  record.textContent = t(state.recording ? "stopRecording" : "startRecording");
  document.getElementById("recording-flag").hidden = !state.recording;
}

async function setRecording() {
  const on = !state.recording;
  const body = await act(`/api/rooms/${state.chosen}/recording`, { on });
  if (body) state.recording = body.recording ?? body.room?.recording ?? on;
  render();
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
    show.addEventListener("click", async () => { state.chosen = r.id; await refresh(true); });
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
  syncConference();
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
    if (m.speaking) flags.append(" ", el("span", { className: "badge speaking", textContent: t("speaking") }));
    const name = m.display_name ?? m.name;
    const row = el("tr", {}, el("td", { textContent: name + (m.user_id === room.host_id ? `（${t("host")}）` : "") }), flags);
    if (open && state.host && m.user_id !== state.me.user.id) {
      const mute = el("button", { type: "button", className: "mute", textContent: t(m.muted ? "unmute" : "mute") });
      mute.addEventListener("click", () => act(`/api/rooms/${room.id}/mute`, { user_id: m.user_id, muted: !m.muted }));
      row.append(el("td", {}, mute));
    }
    row.dataset.user = name;
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

/** The rooms, and the chosen room unless its socket speaks for it (full: after this page's own action, or
 * when the room leaves the open list). The topic carries the members and whether the room is recorded. */
async function refresh(full = false) {
  try {
    state.rooms = (await api("/api/rooms")).rooms;
    const listed = state.rooms.find((r) => r.id === state.chosen);
    const changed = listed ? listed.status !== state.room?.status : state.room?.status === "open";  // closed: unlisted
    const stale = !state.live || full || changed || state.room?.id !== state.chosen;
    follow(state.chosen);
    if (state.chosen && stale) {
      const body = await api(`/api/rooms/${state.chosen}`);
      if (body.host && state.room?.id !== body.room.id) {  // the host's invite list: this room's candidates
        const query = body.room.operation_id ? { operation_id: body.room.operation_id } : { case_id: body.room.case_id };
        state.candidates = (await api(`/api/rooms/candidates?${new URLSearchParams(query)}`)).candidates;
      }
      state.room = body.room;
      state.host = body.host;
      if (!state.live) settle(body.room.id, body.room.members);
      if (typeof body.room.recording === "boolean") state.recording = body.room.recording;
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
  document.getElementById("join").addEventListener("click", async () => {
    expected = { room: state.chosen, present: true };
    if (!await act(`/api/rooms/${state.chosen}/join`)) { expected = null; render(); }
  });
  document.getElementById("leave").addEventListener("click", async () => {
    expected = { room: state.chosen, present: false };
    await stopConference();  // the camera off and every session released before the server is told
    if (!await act(`/api/rooms/${state.chosen}/leave`)) { expected = null; render(); }  // still in the room
  });
  document.getElementById("record").addEventListener("click", setRecording);
  window.addEventListener("pagehide", () => { stopConference({ keepalive: true }); });  // a closed tab frees its sessions
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
