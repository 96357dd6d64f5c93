// The one client of the screen socket (docs/protocols.md "Screens"): opens /api/screen/ws with a single-use
// ticket (the session token never goes in a URL, where logs keep it), subscribes, remembers each topic's last
// sequence number and resumes from it after a break, with exponential backoff. A `bye` (dropped as too slow)
// carries where to resume. Silence longer than deadMs means a half-open link: the socket is replaced. A close
// with 4401 (logged out, revoked, expired) sends the user to log in.
import { signOut, token } from "./api.js";

export const CLOSE_REVOKED = 4401;
const FIRST_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 10000;

/** A URL for a WebSocket on this server, bought with a single-use ticket (POST /api/auth/ticket). */
export async function socketUrl(path) {
  const response = await fetch("/api/auth/ticket", { method: "POST", headers: { Authorization: `Bearer ${token()}` } });
  if (response.status === 401) { signOut(); throw new Error("the session has ended"); }
  if (!response.ok) throw new Error(`ticket: HTTP ${response.status}`);
  const { ticket } = await response.json();
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return `${scheme}://${location.host}${path}?ticket=${encodeURIComponent(ticket)}`;
}

export class ScreenSocket {
  /**
   * topics: what to subscribe to; onMessage(message): every message but `bye`; onLink(): called when the link
   * changes (connected, lost). deadMs: silence after which the link is presumed half-open (the server beats
   * every 5 s); 0 turns the check off.
   */
  constructor({ topics, onMessage, onLink = () => {}, deadMs = 15000 }) {
    Object.assign(this, { topics, onMessage, onLink, deadMs });
    this.seqs = {};
    this.connected = false;
    this.everConnected = false;
    this.lastMessageAt = 0;
    this.backoff = FIRST_BACKOFF_MS;
    this.socket = null;
    this.closed = false;
    this.timer = null;
    this.watchdog = deadMs ? setInterval(() => this.checkAlive(), 1000) : null;
  }

  start() {
    this.connect();
    return this;
  }

  /** Ends this client for good (a page that switches topics makes a new one). */
  close() {
    this.closed = true;
    clearTimeout(this.timer);
    clearInterval(this.watchdog);
    const ws = this.socket;
    this.socket = null;
    if (ws) { ws.onclose = ws.onmessage = null; ws.close(); }
  }

  /** Cuts the link as a network fault would (test hook); the client resumes on its own. */
  drop() { this.socket?.close(); }

  async connect() {
    if (this.closed) return;
    let url;
    try {
      url = await socketUrl("/api/screen/ws");
    } catch (exc) {
      console.warn("screen socket:", exc.message);
      this.retry();
      return;
    }
    if (this.closed) return;
    const ws = new WebSocket(url);
    this.socket = ws;
    ws.onopen = () => {
      this.backoff = FIRST_BACKOFF_MS;
      ws.send(JSON.stringify({ type: "subscribe", topics: this.topics, resume: this.seqs }));
    };
    ws.onmessage = (event) => {
      const message = JSON.parse(event.data);
      this.lastMessageAt = Date.now();
      if (!this.connected) { this.connected = this.everConnected = true; this.onLink(); }
      if (message.topic && message.seq !== undefined) this.seqs[message.topic] = message.seq;
      if (message.type === "bye") {
        if (message.resume) Object.assign(this.seqs, message.resume);  // too slow: resume where the server says
        return;
      }
      if (message.type === "error") console.warn("screen socket:", message.code, message.message);
      this.onMessage(message);
    };
    ws.onclose = (event) => {
      if (event.code === CLOSE_REVOKED) { this.close(); signOut(); return; }
      this.lost(ws);
    };
  }

  lost(ws) {
    if (this.socket !== ws || this.closed) return;
    this.socket = null;
    ws.onclose = ws.onmessage = null;
    this.connected = false;
    this.onLink();
    this.retry();
  }

  retry() {
    if (this.closed) return;
    this.timer = setTimeout(() => this.connect(), this.backoff);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
  }

  checkAlive() {
    if (this.socket && this.connected && Date.now() - this.lastMessageAt > this.deadMs) {
      const dead = this.socket;
      this.lost(dead);
      dead.close();
    }
  }
}
