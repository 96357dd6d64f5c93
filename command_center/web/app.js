// Console start page: log in, then show who I am, the units I may see and the court hierarchy.
// The token lives in sessionStorage (gone when the tab closes); every call sends it as a bearer token.
"use strict";

const TEXT = {
  zh: { title: "执行指挥中心", checking: "检查中…", ok: "系统正常", degraded: "系统降级", logout: "退出",
        login: "登录", username: "用户名", password: "密码", signIn: "登录", units: "执行单兵", wall: "打开态势大屏", desk: "点对点查控", replay: "轨迹回放", console: "指挥台", ops: "运维", unitId: "编号",
        name: "名称", kind: "类型", court: "法院", courts: "法院", lang: "English", loggedIn: "当前用户",
        body_camera: "执法记录仪", handheld: "手持终端", vehicle: "车载终端", noUnits: "暂无执行单兵",
        operator: "指挥员", judge: "执行法官", supervisor: "监督员", admin: "管理员" },
  en: { title: "Enforcement Command Centre", checking: "checking…", ok: "healthy", degraded: "degraded",
        logout: "Log out", login: "Log in", username: "Username", password: "Password", signIn: "Log in",
        units: "Field units", wall: "Open the wall display", desk: "Asset queries", replay: "Track replay", console: "Console", ops: "Operations", unitId: "ID", name: "Name", kind: "Kind", court: "Court", courts: "Courts",
        lang: "中文", loggedIn: "Signed in as", body_camera: "body camera", handheld: "handheld",
        vehicle: "vehicle kit", noUnits: "no field units yet", operator: "operator", judge: "judge",
        supervisor: "supervisor", admin: "administrator" },
};
let lang = localStorage.getItem("lang") || "zh";
const t = (key) => (TEXT[lang][key] ?? key);

function applyLanguage() {
  document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
  document.querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
  document.getElementById("lang").textContent = t("lang");
  document.title = t("title");
}

async function api(path, options = {}) {
  const token = sessionStorage.getItem("token");
  const headers = { ...(options.headers || {}) };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401 && path !== "/api/auth/login") { sessionStorage.removeItem("token"); show(); }
  const body = response.status === 204 ? null : await response.json();
  if (!response.ok) throw new Error(body?.error?.message || response.statusText);
  return body;
}

async function checkHealth() {
  const pill = document.getElementById("health");
  try {
    const response = await fetch("/api/health");
    const ok = response.ok;
    pill.dataset.i18n = ok ? "ok" : "degraded";
    pill.className = `pill ${ok ? "ok" : "bad"}`;
  } catch { pill.dataset.i18n = "degraded"; pill.className = "pill bad"; }
  pill.textContent = t(pill.dataset.i18n);
}

function cell(row, text) { const td = document.createElement("td"); td.textContent = text; row.append(td); }

async function show() {
  const loggedIn = Boolean(sessionStorage.getItem("token"));
  document.getElementById("login").hidden = loggedIn;
  document.getElementById("overview").hidden = !loggedIn;
  document.getElementById("logout").hidden = !loggedIn;
  if (!loggedIn) return;
  const me = await api("/api/me");
  document.getElementById("ops-link").hidden = !["supervisor", "admin"].includes(me.user?.role);
  document.getElementById("whoami").textContent =
    `${t("loggedIn")}: ${me.user.display_name} (${t(me.user.role)}, ${me.court_id})`;
  const { courts } = await api("/api/courts");
  const names = Object.fromEntries(courts.map((c) => [c.id, c.name]));
  const list = document.getElementById("courts");
  list.replaceChildren(...courts.map((c) => {
    const li = document.createElement("li");
    li.textContent = `${c.name} (${c.id})${c.parent_id ? " ← " + names[c.parent_id] : ""}`;
    return li;
  }));
  const body = document.querySelector("#units tbody");
  const { units } = await api("/api/units");
  body.replaceChildren(...units.map((u) => {
    const row = document.createElement("tr");
    cell(row, u.id); cell(row, u.name); cell(row, t(u.kind)); cell(row, names[u.court_id] || u.court_id);
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
    const session = await api("/api/auth/login", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    sessionStorage.setItem("token", session.token);
    await show();
  } catch (err) { error.textContent = err.message; }
});
document.getElementById("logout").addEventListener("click", async () => {
  try { await api("/api/auth/logout", { method: "POST" }); } finally { sessionStorage.removeItem("token"); show(); }
});
document.getElementById("lang").addEventListener("click", () => {
  lang = lang === "zh" ? "en" : "zh"; localStorage.setItem("lang", lang); applyLanguage(); show();
});

applyLanguage();
checkHealth();
setInterval(checkHealth, 15000);
show();
