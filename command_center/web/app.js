// Console start page: log in, then show who I am, the pages my role uses, the units I may see and the court
// hierarchy. The token lives in sessionStorage (gone when the tab closes); every call sends it as a bearer token.
import { api, token } from "/static/lib/api.js";
import { applyTexts, errorText, onLanguage, translator } from "/static/lib/i18n.js";
import { courtNames, pagesFor } from "/static/lib/nav.js";

const t = translator("index");

async function checkHealth() {
  const pill = document.getElementById("health");
  let ok = false;
  try { ok = (await fetch("/api/health")).ok; } catch { ok = false; }
  pill.dataset.i18n = ok ? "ok" : "degraded";
  pill.className = `pill ${ok ? "ok" : "bad"}`;
  pill.textContent = t(pill.dataset.i18n);
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.append(td); }

async function show() {
  const loggedIn = Boolean(token());
  document.getElementById("login").hidden = loggedIn;
  document.getElementById("overview").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  if (!loggedIn) return;
  const me = await api("/api/me");
  const names = await courtNames();
  document.getElementById("whoami").textContent =
    `${t("loggedIn")}: ${me.user.display_name}（${t(`role_${me.user.role}`)} · ${names.get(me.court_id) || me.court_id}）`;
  document.getElementById("pages").replaceChildren(...pagesFor(me).map((page) => {
    const a = Object.assign(document.createElement("a"), { className: "button", href: page.path, textContent: t(page.key) });
    a.id = `${page.key}-link`;
    return a;
  }));
  const { courts } = await api("/api/courts");
  const list = document.getElementById("courts");
  list.replaceChildren(...courts.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${c.name} (${c.id})${c.parent_id ? ` ← ${names.get(c.parent_id) || c.parent_id}` : ""}`;
    return li;
  }));
  const body = document.querySelector("#units tbody");
  const { units } = await api("/api/units");
  body.replaceChildren(...units.map((u) => {
    const row = document.createElement("tr");
    cell(row, u.id); cell(row, u.name); cell(row, t(`unitkind_${u.kind}`)); cell(row, names.get(u.court_id) || u.court_id);
    return row;
  }));
  if (!units.length) { const row = document.createElement("tr"); cell(row, t("noUnits")); body.append(row); }
}

document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const error = document.getElementById("login-error");
  error.textContent = "";
  try {
    const session = await api("/api/auth/login", { method: "POST",
      json: { username: form.get("username"), password: form.get("password") } });
    sessionStorage.setItem("token", session.token);
    await show();
  } catch (err) { error.textContent = errorText(err); }
});
document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } finally { sessionStorage.removeItem("token"); show(); }
});

onLanguage(() => { applyTexts(t); checkHealth(); show().catch((err) => console.warn(err)); });
setInterval(checkHealth, 15000);
