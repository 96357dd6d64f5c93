// Navigation that follows the role: a page is offered only to the roles whose API calls it makes are
// allowed (command_center/auth.py), and a page opened by a role it is not for says so in Chinese instead of
// showing empty tables and silent refusals. Every page header has <nav id="nav"></nav>.
import { api, whoAmI } from "./api.js";
import { onLanguage } from "./i18n.js";

/** Each page and the roles it serves (the same sets as its API routes); everyCourt: only for those who see every
 * court (GET /api/me's oversees_every_court), as the 运维 overview's figures are the whole process's. */
export const PAGES = [
  { path: "/wall", key: "wall", roles: ["operator", "judge", "supervisor", "admin"] },
  { path: "/console", key: "console", roles: ["operator", "supervisor", "admin"] },
  { path: "/desk", key: "desk", roles: ["judge", "supervisor", "admin"] },
  { path: "/replay", key: "replay", roles: ["operator", "judge", "supervisor", "admin"] },
  { path: "/entrustments", key: "entrust", roles: ["operator", "supervisor", "admin"] },
  { path: "/rooms", key: "rooms", roles: ["operator", "supervisor", "admin"] },
  { path: "/ops", key: "ops", roles: ["supervisor", "admin"], everyCourt: true },
];

/** Whether the page serves this user (me: GET /api/me). */
const serves = (page, me) => page.roles.includes(me.user.role) && (!page.everyCourt || me.oversees_every_court);

export const pagesFor = (me) => PAGES.filter((page) => serves(page, me));

/** Fills #nav with the pages the user's role may use (the current one marked) and a link home. */
export function renderNav(me, t) {
  const nav = document.getElementById("nav");
  if (!nav) return;
  const links = [{ path: "/", key: "home" }, ...pagesFor(me)].filter((p) => p.path !== location.pathname);
  nav.replaceChildren(...links.map((page) => {
    const a = Object.assign(document.createElement("a"), { href: page.path, textContent: t(page.key) });
    a.dataset.page = page.key;
    return a;
  }));
}

/** The courts the user may see, id -> name (GET /api/courts), fetched once per page. */
let courts = null;
export function courtNames() {
  courts = courts || api("/api/courts").then(({ courts: list }) => new Map(list.map((c) => [c.id, c.name])));
  return courts;
}

/** "Name · role · court name": who is at this screen, with the court's name, never its code. */
export async function whoText(me, t) {
  const names = await courtNames().catch(() => new Map());
  return `${me.user.display_name} · ${t(`role_${me.user.role}`)} · ${names.get(me.court_id) || me.court_id}`;
}

/** Keeps #whoami saying who is at this screen, in the language chosen. */
export function showWho(me, t) {
  onLanguage(() => whoText(me, t).then((text) => { document.getElementById("whoami").textContent = text; }));
}

/**
 * Resolves to the user if the page serves their role; otherwise replaces <main> with the reason (in the
 * user's language) and a way back, and resolves to null. pageKey is the page's entry in PAGES.
 */
export async function guard(pageKey, t) {
  const me = await whoAmI();
  const page = PAGES.find((p) => p.key === pageKey);
  if (!page || serves(page, me)) return me;
  const main = document.querySelector("main") || document.body;
  const why = page.roles.includes(me.user.role) ? t("notEveryCourt") : t("notForRole").replace("{role}", t(`role_${me.user.role}`));
  const note = Object.assign(document.createElement("p"), { className: "refused", id: "refused", textContent: why });
  main.replaceChildren(note);
  main.hidden = false;
  document.querySelectorAll("header button:not(#lang)").forEach((button) => { button.hidden = true; });
  renderNav(me, t);  // the pages this role does use
  return null;
}
