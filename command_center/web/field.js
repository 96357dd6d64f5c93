// Browser field client (执行单兵): an officer's phone as a unit. The camera and microphone go to the command
// centre over WHIP (POST /api/whip with the device secret); positions from the phone's location, and SOS, go
// over the "telemetry" data channel in the unit telemetry format (docs/protocols.md). Positions wait in an
// outbox (kept in localStorage) until the server acknowledges them, so a dropped link loses nothing; the
// link is re-established with backoff. Talkback audio from the centre plays when the server sends it.
// When the phone's network changes (Wi-Fi <-> 4G: the "online" event, navigator.connection's "change", or the
// connection going "disconnected") it restarts ICE on the same session (PATCH, RFC 9725 §4.3.2) instead of
// publishing again, so the recording and the viewers carry on; if that fails the link is re-established.
// Test hooks: window.fieldState.
import { ApiError } from "/static/lib/api.js";
import { applyTexts, errorText, onLanguage, translator } from "/static/lib/i18n.js";
import { negotiateSession } from "/static/lib/webrtc.js";

const t = translator("field");
const OUTBOX_KEY = "field-outbox";
const MAX_OUTBOX = 20000;
const BATCH = 100;

// outbox: positions not yet acknowledged, oldest first; seq: the last number given
const state = { outbox: JSON.parse(localStorage.getItem(OUTBOX_KEY) || "[]"), seq: 0, acked: 0, link: "idle",
                lastFix: null, session: null, etag: null, restarts: 0, stopped: false, sos: false };
state.seq = Math.max(Date.now(), ...state.outbox.map((p) => p.seq));  // above any earlier run's numbers
window.fieldState = state;

let secret = "";
let stream = null;
let pc = null;
let channel = null;
let inFlight = null;  // the positions of the message awaiting its ack
let backoff = 1000;

const say = (text) => { document.getElementById("message").textContent = text; };
function setLink(link) {
  state.link = link;
  const node = document.getElementById("link");
  node.className = link === "live" ? "up" : "down";
  node.textContent = t(link);
}
function keep() {
  if (state.outbox.length > MAX_OUTBOX) state.outbox.splice(0, state.outbox.length - MAX_OUTBOX);
  localStorage.setItem(OUTBOX_KEY, JSON.stringify(state.outbox));
  document.getElementById("queue").textContent = state.outbox.length ? `${t("waiting")} ${state.outbox.length}` : "";
}

function record(coords, sos = false) {
  state.seq += 1;
  const position = { seq: state.seq, fix_time_ms: Date.now(), lat: coords.latitude, lon: coords.longitude,
                     accuracy_m: coords.accuracy ?? null, sos };
  if (Number.isFinite(coords.speed)) position.speed_mps = coords.speed;
  if (Number.isFinite(coords.heading) && coords.heading >= 0 && coords.heading < 360) position.heading_deg = coords.heading;
  state.outbox.push(position);
  keep();
  flush();
}

function flush() {
  if (!channel || channel.readyState !== "open" || inFlight || !state.outbox.length) return;
  inFlight = state.outbox.slice(0, BATCH);
  channel.send(JSON.stringify(inFlight));
}

function onAnswer(event) {
  const answer = JSON.parse(event.data);
  if (answer.type === "ack") {
    const done = new Set([...answer.stored, ...answer.duplicates, ...answer.rejected.map((r) => r.seq)]);
    state.outbox = state.outbox.filter((p) => !done.has(p.seq));
    state.acked += answer.stored.length + answer.duplicates.length;
    keep();
  } else if (answer.type === "error") {
    say(errorText(answer));
  }
  inFlight = null;
  flush();
}

async function connect() {
  if (state.stopped) return;
  setLink("connecting");
  pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: track.kind === "audio" ? "sendrecv" : "sendonly", streams: [stream] });
  }
  pc.ontrack = (event) => { document.getElementById("talkback").srcObject = new MediaStream([event.track]); };
  channel = pc.createDataChannel("telemetry", { ordered: true });
  channel.onopen = () => { inFlight = null; flush(); };
  channel.onmessage = onAnswer;
  pc.onconnectionstatechange = () => {
    if (pc.connectionState === "connected") { setLink("live"); backoff = 1000; }
    if (pc.connectionState === "disconnected") restartIce();
    if (pc.connectionState === "failed" || pc.connectionState === "closed") lost();
  };
  // the device secret, not a person's session; the ETag lets ICE restart on this session (restartIce)
  ({ location: state.session, etag: state.etag } = await negotiateSession(pc, "/api/whip", secret, 3000));
}

function gathered(peer) {
  return new Promise((resolve) => {
    if (peer.iceGatheringState === "complete") resolve();
    peer.onicegatheringstatechange = () => { if (peer.iceGatheringState === "complete") resolve(); };
    setTimeout(resolve, 3000);
  });
}

// ICE restart on the same WHIP session: new credentials and candidates PATCHed with the session's ETag; the
// server's fragment (its new credentials and candidates) replaces those of the answer we hold.
let restarting = null;
function restartIce() {
  if (!pc || !state.session || !state.etag || state.stopped || restarting) return restarting;
  const peer = pc;
  restarting = (async () => {
    peer.restartIce();
    await peer.setLocalDescription(await peer.createOffer());
    await gathered(peer);
    const local = peer.localDescription.sdp;
    const line = (name, sdp) => (new RegExp(`^a=${name}:(.*)$`, "m").exec(sdp) || [])[1]?.trim();
    const candidates = local.split(/\r?\n/).filter((l) => l.startsWith("a=candidate:"));
    const fragment = [`a=ice-ufrag:${line("ice-ufrag", local)}`, `a=ice-pwd:${line("ice-pwd", local)}`,
                      "m=audio 9 UDP/TLS/RTP/SAVPF 0", `a=mid:${line("mid", local)}`, ...candidates,
                      "a=end-of-candidates", ""].join("\r\n");
    const response = await fetch(state.session, { method: "PATCH", body: fragment, headers: {
      Authorization: `Bearer ${secret}`, "Content-Type": "application/trickle-ice-sdpfrag", "If-Match": state.etag } });
    if (response.status !== 200) throw new Error(`ICE restart ${response.status}`);
    state.etag = response.headers.get("ETag");
    const answer = await response.text();
    const remote = peer.remoteDescription.sdp
      .replace(/^a=ice-ufrag:.*$/gm, `a=ice-ufrag:${line("ice-ufrag", answer)}`)
      .replace(/^a=ice-pwd:.*$/gm, `a=ice-pwd:${line("ice-pwd", answer)}`)
      .replace(/^a=candidate:.*\r?\n/gm, "").replace(/^a=end-of-candidates\r?\n/gm, "");
    const theirs = answer.split(/\r?\n/).filter((l) => l.startsWith("a=candidate:"));
    const withCandidates = remote.replace(/^(a=mid:.*\r?\n)/m, `$1${[...theirs, "a=end-of-candidates"].join("\r\n")}\r\n`);
    await peer.setRemoteDescription({ type: "answer", sdp: withCandidates });
    state.restarts += 1;
  })().catch((exc) => { say(exc.message); if (peer === pc) lost(); }).finally(() => { restarting = null; });
  return restarting;
}
window.addEventListener("online", () => restartIce());
navigator.connection?.addEventListener?.("change", () => restartIce());

function lost() {
  if (state.stopped || state.link === "lost") return;
  setLink("lost");
  channel = null;
  inFlight = null;
  try { pc?.close(); } catch { /* already closed */ }
  setTimeout(() => connect().catch(retry), backoff);
  backoff = Math.min(backoff * 2, 30000);
}
function retry(exc) { say(exc instanceof ApiError ? errorText(exc) : exc.message); state.link = "connecting"; lost(); }

async function start(event) {
  event.preventDefault();
  secret = event.target.secret.value.trim();
  state.stopped = false;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    document.getElementById("preview").srcObject = stream;
    navigator.geolocation.watchPosition((fix) => { state.lastFix = fix.coords; showFix(fix.coords); record(fix.coords); },
                                        () => say(t("noFix")), { enableHighAccuracy: true, maximumAge: 0 });
    await connect();
  } catch (exc) {
    retry(exc);
  }
}

function showFix(coords) {
  document.getElementById("fix").textContent = `${coords.latitude.toFixed(5)}, ${coords.longitude.toFixed(5)} ±${Math.round(coords.accuracy || 0)} m`;
}

async function stop() {
  state.stopped = true;
  if (state.session) {
    await fetch(state.session, { method: "DELETE", headers: { Authorization: `Bearer ${secret}` } }).catch(() => null);
  }
  pc?.close();
  stream?.getTracks().forEach((track) => track.stop());
  setLink("idle");
  say(t("stopped"));
}

document.getElementById("device").addEventListener("submit", start);
document.getElementById("stop").addEventListener("click", stop);
document.getElementById("sos").addEventListener("click", () => {
  if (!state.lastFix) { say(t("noFix")); return; }
  state.sos = true;
  record(state.lastFix, true);
  document.getElementById("sos").classList.add("sent");
  say(t("sosSent"));
});
onLanguage(() => { applyTexts(t); setLink(state.link); keep(); });
keep();
