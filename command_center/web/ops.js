// 运维 page: what this server process is doing, and every process of the cluster with what it leads, for
// supervisors and administrators without Grafana. Reads GET /api/ops/overview every few seconds (the same
// readings as /metrics); "立即校验" re-hashes the recordings (POST /api/ops/verify-recordings). Texts from the catalogue's `ops`
// section; a role the page is not for is told so by nav.js guard. Test hooks: window.opsState.
import { api, token } from "/static/lib/api.js";
import { el } from "/static/lib/dom.js";
import { applyTexts, errorText, formatDateTime, formatTime, onLanguage, translator } from "/static/lib/i18n.js";
import { guard, renderNav, showWho } from "/static/lib/nav.js";

const t = translator("ops");
const REFRESH_MS = 5000;
const state = { overview: null, error: null };
window.opsState = state;

const gib = (bytes) => `${(bytes / 2 ** 30).toFixed(1)} GiB`;

function set(id, text, cls = "") {
  const node = document.getElementById(id);
  node.textContent = text;
  node.className = cls;
}

/** Fills a two-column table with [label, value, class] rows. */
function rows(tableId, entries) {
  document.querySelector(`#${tableId} tbody`).replaceChildren(...entries.map(([label, value, cls]) =>
    el("tr", {}, el("th", { textContent: label }), el("td", { textContent: String(value), className: cls || "num" }))));
}

function render(o) {
  set("node", o.node.id);
  set("role", o.node.shared ? t(o.node.leader ? "leader" : "follower") : t("single"));
  set("leader-node", o.node.leader_node ?? t("unknown"));
  set("started", formatDateTime(o.node.started * 1000));
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
    ...Object.entries(o.media.sessions).map(([role, n]) => [t(`session_${role}`), n]),
    [t("framesDropped"), o.media.frames_dropped.viewer + o.media.frames_dropped.recorder],
  ]);
  renderProcesses(o.processes, o.node.id);
  renderVerifications(o.verifications);
  document.querySelector("#agencies tbody").replaceChildren(...o.agencies.map((a) => {
    const breaker = el("td", { textContent: t(`breaker_${a.breaker}`),
      className: a.breaker === "closed" ? "ok" : a.breaker === "open" ? "bad" : "warn" });
    breaker.dataset.agency = a.id;
    return el("tr", {}, el("td", { textContent: a.name }), breaker);
  }));
  set("updated", `${t("updated")} ${formatTime(Date.now())}`);
}

/** Every process of the cluster: what it leads (its leases by kind), what it holds, whether it still beats. */
function renderProcesses(processes, here) {
  const unknown = document.getElementById("processes-unknown");
  unknown.hidden = processes !== null;
  unknown.textContent = t("processesUnknown");
  document.querySelector("#processes tbody").replaceChildren(...(processes || []).map((p) => {
    const roles = Object.entries(p.roles).map(([kind, n]) => (kind === "leader" ? t("role_leader")
      : `${t(`role_${kind}`) === `role_${kind}` ? kind : t(`role_${kind}`)} ×${n}`));
    const media = Object.entries(p.media).filter(([, n]) => n).map(([role, n]) => `${t(`session_${role}`)} ${n}`);
    const row = el("tr", {},
      el("td", { textContent: p.id + (p.id === here ? t("thisProcess") : "") }),
      el("td", { textContent: `${p.host} / ${p.pid}` }),
      el("td", { textContent: roles.join("，") || t("noRoles"), className: p.leader ? "ok" : "" }),
      el("td", { textContent: String(p.units), className: "num" }),
      el("td", { textContent: String(p.screens), className: "num" }),
      el("td", { textContent: media.join("，") || "0" }),
      el("td", { textContent: t("secondsAgo").replace("{s}", p.age_seconds.toFixed(1)) }),
      el("td", { textContent: t(`state_${p.state}`), className: p.state === "live" ? "ok" : "bad" }));
    row.dataset.node = p.id;
    row.dataset.state = p.state;
    row.dataset.leader = String(p.leader);
    return row;
  }));
}

/** Recorded segments re-hashed against the audit chain: totals since start, the last pass and its problems. */
function renderVerifications(v) {
  const totals = v.totals;
  document.getElementById("verification-warning").hidden = !(totals.mismatch || totals.missing);
  rows("verification", [
    [t("verifiedOk"), totals.ok],
    [t("verifiedMismatch"), totals.mismatch, totals.mismatch ? "num bad" : "num"],
    [t("verifiedMissing"), totals.missing, totals.missing ? "num bad" : "num"],
    [t("lastVerified"), v.last ? formatDateTime(v.last.finished * 1000) : t("neverVerified"), ""],
  ]);
  document.getElementById("verification-problems").replaceChildren(
    ...(v.last?.problems || []).map((problem) => el("li", { textContent: problem, className: "bad" })));
}

async function verifyNow() {
  const button = document.getElementById("verify");
  button.disabled = true;
  try {
    await api("/api/ops/verify-recordings", { method: "POST" });
    await refresh();
  } catch (exc) {
    document.getElementById("message").textContent = errorText(exc);
  } finally {
    button.disabled = false;
  }
}

async function refresh() {
  try {
    state.overview = await api("/api/ops/overview");
    state.error = null;
    document.getElementById("message").textContent = "";
    render(state.overview);
  } catch (exc) {
    state.error = exc.code || exc.message;
    document.getElementById("message").textContent = errorText(exc);
  }
}

async function start() {
  if (!token()) { location.replace("/"); return; }
  const me = await guard("ops", t);
  if (!me) return;
  renderNav(me, t);
  showWho(me, t);
  document.getElementById("ops").hidden = false;
  document.getElementById("verify").addEventListener("click", verifyNow);
  onLanguage(() => { applyTexts(t); if (state.overview) render(state.overview); });
  await refresh();
  setInterval(refresh, REFRESH_MS);
}

start().catch((exc) => { document.getElementById("message").textContent = errorText(exc); });
