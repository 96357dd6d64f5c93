// The one way a page says something: every string a user sees comes from the catalogue (catalogue.js), in
// Simplified Chinese unless the user chose English. A page asks for its own section first, then the common one:
//   import { translator } from "/static/lib/i18n.js";  const t = translator("wall");
import { CATALOGUE } from "./catalogue.js";

const LANGS = ["zh", "en"];
let current = LANGS.includes(localStorage.getItem("lang")) ? localStorage.getItem("lang") : "zh";
const listeners = [];

export const lang = () => current;
export const locale = () => (current === "zh" ? "zh-CN" : "en-GB");

/** A t(key) for one page: its section of the catalogue, then the common one; an unknown key is shown as is. */
export function translator(page) {
  return (key) => {
    const own = CATALOGUE[page]?.[current];
    return own?.[key] ?? CATALOGUE.common[current][key] ?? key;
  };
}

/** Has the catalogue a text for this key (the page's section or the common one)? */
export function has(page, key) {
  return key in (CATALOGUE[page]?.[current] || {}) || key in CATALOGUE.common[current];
}

/** Fills every [data-i18n] and [data-i18n-placeholder] below root, the page title and the language button. */
export function applyTexts(t, root = document) {
  document.documentElement.lang = locale();
  root.querySelectorAll("[data-i18n]").forEach((node) => { node.textContent = t(node.dataset.i18n); });
  root.querySelectorAll("[data-i18n-placeholder]").forEach((node) => { node.placeholder = t(node.dataset.i18nPlaceholder); });
  root.querySelectorAll("[data-i18n-label]").forEach((node) => { node.setAttribute("aria-label", t(node.dataset.i18nLabel)); });
  document.title = t("title");
  const button = document.getElementById("lang");
  if (button) button.textContent = t("otherLanguage");
}

/** Calls fn now and after every change of language (the #lang button switches it). */
export function onLanguage(fn) {
  listeners.push(fn);
  fn();
}

function switchLanguage() {
  current = current === "zh" ? "en" : "zh";
  localStorage.setItem("lang", current);
  listeners.forEach((fn) => fn());
}
document.getElementById("lang")?.addEventListener("click", switchLanguage);

// Dates and times: 24-hour clock in both languages (a court's duty log is read in 24-hour time).
const TIME = { hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23" };
const DATE = { year: "numeric", month: "2-digit", day: "2-digit" };
export const formatTime = (ms) => new Date(ms).toLocaleTimeString(locale(), TIME);
export const formatDateTime = (ms) => new Date(ms).toLocaleString(locale(), { ...DATE, ...TIME });
// A date and time typed by the user is "YYYY-MM-DD HH:MM[:SS]" in local time, 24-hour, whatever the browser's
// locale (a datetime-local input follows the browser's locale, which showed a court's clock as 12-hour AM/PM).
export const toDateTimeInput = (ms) =>
  new Date(ms - new Date(ms).getTimezoneOffset() * 60000).toISOString().slice(0, 19).replace("T", " ");
/** The typed date and time in ms since the epoch (NaN when it is not one). */
export const fromDateTimeInput = (value) => new Date(value.trim().replace(" ", "T")).getTime();

/** A failed request said in the user's language: by the server's stable error code, never its English text. */
export function errorText(error) {
  const t = translator("errors");
  if (!error || !error.code) return t(error?.offline ? "offline" : "unknown");
  const details = error.details || {};
  if (error.code === "forbidden" && details.role) {
    return t("forbiddenRole").replace("{role}", translator("common")(`role_${details.role}`));
  }
  if (has("errors", error.code)) return t(error.code);
  return t(`status_${error.status}`) !== `status_${error.status}` ? t(`status_${error.status}`) : t("unknown");
}
