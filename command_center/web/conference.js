// The 会商 view of a consultation room for a member who has joined: their own camera published once
// (POST /api/rooms/{id}/media/publish, WHIP shape), one receive-only peer per other participant who publishes
// (POST …/media/participants/{user_id}/view), the room's unit on its own WHEP route pinned large. Tiles follow
// the member list the page hands to update() (from the screen socket's `room:{id}` events), never a poll of
// their own. Whatever cannot be shown says why (camera refused, no camera, a participant who publishes no
// video, a peer that failed, a play() the browser refused) instead of leaving a black box.
// docs/protocols.md "Consultation rooms" has the routes; this module only negotiates through lib/webrtc.js.
import { el } from "/static/lib/dom.js";
import { errorText } from "/static/lib/i18n.js";
import { negotiateSession, release, watch } from "/static/lib/webrtc.js";

const FIRST_RETRY_MS = 2000;
const MAX_RETRY_MS = 30000;
const memberName = (m) => m.name ?? m.display_name ?? String(m.user_id);
const publishes = (m) => (Array.isArray(m.publishing) ? m.publishing : []);

/** Why getUserMedia failed, as a catalogue key (DOMException names: W3C Media Capture and Streams §9.2). */
function cameraProblem(exc) {
  if (exc?.name === "NotAllowedError" || exc?.name === "SecurityError") return "cameraDenied";
  if (exc?.name === "NotFoundError" || exc?.name === "OverconstrainedError") return "noCamera";
  if (exc?.name === "NotReadableError") return "cameraBusy";
  return "cameraFailed";
}

/** A <video> that reports in its tile why it shows nothing, until its first frame (and after a failure).
 * The note keeps its catalogue key (data-key) so a change of language says it again (retell). */
function playing(video, note, t) {
  const show = (key, extra = "") => {
    Object.assign(note.dataset, { key, extra });
    note.textContent = key ? t(key) + extra : "";
    note.hidden = !key;
  };
  const framed = () => { if (video.videoWidth > 0) show(""); };  // an audio-only stream loads data too
  video.addEventListener("loadeddata", framed);
  video.addEventListener("resize", framed);
  video.addEventListener("error", () => show("videoError", video.error?.message ? `（${video.error.message}）` : ""));
  return show;
}

/** Starts playback; when the browser refuses sound without a gesture, plays muted and asks for a click. */
async function play(video, show, t) {
  if (!video.srcObject) return;  // no track yet: autoplay starts it when one comes
  try {
    await video.play();
  } catch (exc) {
    if (exc?.name !== "NotAllowedError" || video.muted) { show("videoError", `（${exc?.message || exc}）`); return; }
    video.muted = true;
    show("clickForSound");
    video.closest(".tile")?.addEventListener("click", () => { video.muted = false; show(""); }, { once: true });
    await video.play().catch((again) => show("videoError", `（${again?.message || again}）`));
  }
}

export class Conference {
  /**
   * roomId, unitId (pinned, may be null), me (user id); grid: where tiles go; pinned: the unit's <video>;
   * t: the page's translator; actions.mute(userId, muted) for the host's buttons; say(text) for page messages.
   */
  constructor({ roomId, unitId, me, grid, pinned, pinnedNote, t, actions, say }) {
    Object.assign(this, { roomId, unitId, me, grid, pinned, pinnedNote, t, actions, say });
    this.tiles = new Map();  // user id -> {tile, video, pc, location, key, show}
    this.camera = null;  // my MediaStream
    this.publisher = null;  // {pc, location}
    this.stopUnit = null;
    this.closed = false;
    this.publishTimer = null;
    this.publishBackoff = FIRST_RETRY_MS;
    this.cameraNote = "";
    this.members = [];
    this.host = false;
  }

  /** Camera, publish, the unit's video. Each failure is told and the rest goes on (a member without a camera
   * still hears and sees the others). */
  async start() {
    this.selfTile = this.makeTile(this.me, true);
    this.grid.prepend(this.selfTile.tile);
    await this.openCamera();
    if (this.closed) return;
    if (this.camera) await this.publish();
    if (this.unitId) await this.watchUnit();
  }

  async openCamera() {
    const { t } = this;
    try {
      this.camera = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch (exc) {
      this.cameraNote = cameraProblem(exc);
      try {  // no camera (or refused): publish the voice alone when the microphone is allowed
        this.camera = await navigator.mediaDevices.getUserMedia({ audio: true });
      } catch (again) {
        this.cameraNote = cameraProblem(again) === "cameraDenied" ? "micDenied" : "noDevices";
      }
    }
    const { video, show } = this.selfTile;
    if (this.closed) { this.stopCamera(); return; }
    if (this.camera?.getVideoTracks().length) {
      video.srcObject = this.camera;
      await play(video, show, t);
    } else {
      show(this.cameraNote || "noCamera");
    }
    if (this.cameraNote) this.say(t(this.cameraNote));
  }

  /** My camera and microphone to the room; a failure is said on my tile and publishing tried again
   * (backing off to MAX_RETRY_MS; a second publish replaces the first on the server). */
  async publish() {
    this.publishTimer = null;
    if (this.closed || !this.camera) return;
    const pc = new RTCPeerConnection({ iceServers: [] });
    for (const track of this.camera.getTracks()) pc.addTransceiver(track, { direction: "sendonly", streams: [this.camera] });
    const publisher = { pc, location: null, seen: false };  // seen: the room has shown me publishing on it
    this.publisher = publisher;
    const again = publisher.again = (extra = "") => {
      if (this.publisher !== publisher || this.closed) return;
      this.selfTile.show("publishFailed", extra);
      this.publisher = null;
      pc.close();
      release(publisher.location);
      this.publishTimer = setTimeout(() => this.publish(), this.publishBackoff);
      this.publishBackoff = Math.min(this.publishBackoff * 2, MAX_RETRY_MS);
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") again();
      if (pc.connectionState === "connected") {
        this.publishBackoff = FIRST_RETRY_MS;
        if (this.selfTile.note.dataset.key === "publishFailed") this.selfTile.show(this.cameraNote);
      }
    };
    try {
      publisher.location = (await negotiateSession(pc, `/api/rooms/${encodeURIComponent(this.roomId)}/media/publish`)).location;
    } catch (exc) {
      again(`：${errorText(exc)}`);
      return;
    }
    if (this.publisher !== publisher) { await release(publisher.location); pc.close(); }  // left meanwhile
  }

  async unpublish({ keepalive = false } = {}) {
    const publisher = this.publisher;
    this.publisher = null;
    if (!publisher) return;
    const released = release(publisher.location, undefined, { keepalive });
    publisher.pc.close();
    await released;
  }

  async watchUnit() {
    const note = playing(this.pinned, this.pinnedNote, this.t);
    note("connecting");
    try {
      const stop = await watch(this.unitId, this.pinned);
      if (this.closed) { await stop(); return; }
      this.stopUnit = stop;
      this.pinned.muted = false;  // in the room the scene is heard too
      await play(this.pinned, note, this.t);
    } catch (exc) {
      note("unitUnavailable", `：${errorText(exc)}`);
    }
  }

  /** The room's members as the socket (or the API) last described them; host: whether I host the room. */
  update(members, host) {
    if (this.closed) return;
    this.members = members;
    this.host = host;
    const others = new Map(members.filter((m) => m.user_id !== this.me && m.present && publishes(m).length)
      .map((m) => [m.user_id, m]));
    for (const [userId, view] of this.tiles) {
      const member = others.get(userId);
      if (!member || view.key !== publishes(member).join(",")) this.drop(userId);
    }
    for (const [userId, member] of others) {
      const view = this.tiles.get(userId);
      if (!view) this.view(member);
      else if (view.retryAt !== undefined && Date.now() >= view.retryAt) this.connect(view, member);
    }
    const mine = members.find((m) => m.user_id === this.me);
    const publisher = this.publisher;
    if (mine && publisher?.location) {  // the server ended my stream (the room shows me publishing no more)
      if (publishes(mine).length) publisher.seen = true;
      else if (publisher.seen) publisher.again();
    }
    if (mine) {
      this.badges(this.selfTile, mine);
      for (const track of this.camera?.getAudioTracks() || []) track.enabled = !mine.muted;  // the host muted me
    }
    for (const [userId, view] of this.tiles) this.badges(view, others.get(userId));
    this.retell();
  }

  /** Each note again in the current language. */
  retell() {
    for (const note of [this.pinnedNote, ...[this.selfTile, ...this.tiles.values()].map((v) => v?.note)]) {
      if (note?.dataset.key) note.textContent = this.t(note.dataset.key) + (note.dataset.extra || "");
    }
  }

  makeTile(userId, self = false) {
    const video = el("video", { autoplay: true, playsInline: true, muted: self });
    const note = el("p", { className: "tile-note", hidden: true });
    const name = el("span", { className: "tile-name" });
    const speaking = el("span", { className: "badge speaking", textContent: this.t("speaking"), hidden: true });
    const muted = el("span", { className: "badge muted-flag", textContent: this.t("muted"), hidden: true });
    const controls = el("span", { className: "tile-controls" });
    const tile = el("figure", { className: self ? "tile self" : "tile" }, video, note,
      el("figcaption", {}, name, speaking, muted, controls));
    tile.dataset.user = String(userId);
    return { tile, video, note, name, speaking, muted, controls, show: playing(video, note, this.t), self };
  }

  badges(view, member) {
    if (!member) return;
    const { t } = this;
    view.name.textContent = view.self ? `${memberName(member)}（${t("me")}）` : memberName(member);
    view.speaking.hidden = !member.speaking;
    view.muted.hidden = !member.muted;
    view.speaking.textContent = t("speaking");
    view.muted.textContent = t("muted");
    view.tile.classList.toggle("is-speaking", Boolean(member.speaking));
    if (view.self || !this.host) { view.controls.replaceChildren(); return; }
    const button = el("button", { type: "button", className: "mute", textContent: t(member.muted ? "unmute" : "mute") });
    button.addEventListener("click", (event) => { event.stopPropagation(); this.actions.mute(member.user_id, !member.muted); });
    view.controls.replaceChildren(button);
  }

  /** A tile for one participant, and its receive-only peer. */
  async view(member) {
    const view = this.makeTile(member.user_id);
    view.key = publishes(member).join(",");
    view.backoff = FIRST_RETRY_MS;
    this.tiles.set(member.user_id, view);
    this.grid.append(view.tile);
    this.badges(view, member);
    await this.connect(view, member);
  }

  /** (Re)connects a tile's peer. One that failed keeps saying why and is tried again by a later update
   * (backing off to MAX_RETRY_MS) while the participant still publishes. */
  async connect(view, member) {
    const again = view.retryAt !== undefined;
    view.retryAt = undefined;
    view.pc?.close();
    release(view.location);
    view.location = null;
    if (!again) view.show(publishes(member).includes("video") ? "connecting" : "noVideo");
    const pc = new RTCPeerConnection({ iceServers: [] });
    view.pc = pc;
    const failed = (key, extra = "") => {
      if (view.pc !== pc) return;
      view.show(key, extra);
      view.retryAt = Date.now() + view.backoff;
      view.backoff = Math.min(view.backoff * 2, MAX_RETRY_MS);
    };
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.ontrack = (event) => { stream.addTrack(event.track); view.video.srcObject = stream; };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") failed("peerFailed");
      if (pc.connectionState === "connected") view.backoff = FIRST_RETRY_MS;
    };
    const path = `/api/rooms/${encodeURIComponent(this.roomId)}/media/participants/${member.user_id}/view`;
    let location;
    try {
      location = (await negotiateSession(pc, path)).location;
    } catch (exc) {
      failed("viewFailed", `：${errorText(exc)}`);
      return;
    }
    if (this.tiles.get(member.user_id) !== view || view.pc !== pc) { await release(location); pc.close(); return; }
    view.location = location;
    if (again && !publishes(member).includes("video")) view.show("noVideo");
    await play(view.video, view.show, this.t);
  }

  drop(userId, { keepalive = false } = {}) {
    const view = this.tiles.get(userId);
    if (!view) return;
    this.tiles.delete(userId);
    view.tile.remove();
    view.pc?.close();
    view.video.srcObject = null;
    release(view.location, undefined, { keepalive });
  }

  stopCamera() {
    for (const track of this.camera?.getTracks() || []) track.stop();
    this.camera = null;
  }

  /** Leaving: the camera off, my publication and every view and the unit's video released. Idempotent.
   * ``keepalive`` (the page is going away, pagehide): every DELETE is sent before anything is awaited and
   * with fetch's keepalive, so it reaches the server after the tab is gone. */
  async stop({ keepalive = false } = {}) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.publishTimer);
    for (const userId of [...this.tiles.keys()]) this.drop(userId, { keepalive });
    this.selfTile?.tile.remove();
    this.stopCamera();
    const stopUnit = this.stopUnit;
    this.stopUnit = null;
    await Promise.all([this.unpublish({ keepalive }), stopUnit?.({ keepalive })]);
    this.pinned.srcObject = null;
    this.pinned.muted = true;
    Object.assign(this.pinnedNote, { hidden: true, textContent: "" });
    this.pinnedNote.dataset.key = "";
  }

  /** Test hook: audio bytes received so far from each participant (their voice reaches this page). */
  async heard() {
    const bytes = async (pc) => {
      let total = 0;
      (await pc.getStats()).forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "audio") total += r.bytesReceived; });
      return total;
    };
    return Object.fromEntries(await Promise.all([...this.tiles].filter(([, v]) => v.pc)
      .map(async ([id, v]) => [id, await bytes(v.pc)])));
  }

  /** Test hook: what the view shows, per tile. */
  describe() {
    const tile = (v) => ({ width: v.video.videoWidth, time: v.video.currentTime, note: v.note.hidden ? "" : v.note.textContent,
                           speaking: !v.speaking.hidden, muted: !v.muted.hidden });
    return { publishing: Boolean(this.publisher?.location), cameraNote: this.cameraNote,
             self: this.selfTile ? tile(this.selfTile) : null,
             unit: { width: this.pinned.videoWidth, time: this.pinned.currentTime },
             tiles: Object.fromEntries([...this.tiles].map(([id, v]) => [id, tile(v)])) };
  }
}
