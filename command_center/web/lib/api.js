// The one HTTP client of the pages: the session token (sessionStorage, gone with the tab) as a bearer token,
// JSON in and out, a failed call as an ApiError that carries the server's stable code (core/errors.py) so the
// page can say it in the user's language (i18n.js errorText). A 401 sends the user to the start page to log in.

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message || `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code || null;
    this.details = body?.error?.details ?? null;
  }
}

export const token = () => sessionStorage.getItem("token");

/** Forgets the session and goes to the start page (which logs in). */
export function signOut() {
  sessionStorage.removeItem("token");
  if (location.pathname !== "/") location.replace("/");
}

/** Calls the API; options.json is sent as a JSON body. Resolves to the parsed body (null for 204). */
export async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (token()) headers.Authorization = `Bearer ${token()}`;
  const init = { ...options, headers };
  if (options.json !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(options.json);
    delete init.json;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    const error = new ApiError(0, null);
    error.offline = true;
    throw error;
  }
  if (response.status === 401 && path !== "/api/auth/login") signOut();
  const body = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

/** Fetches a file with the session token (reports) and hands it to the browser as a download. */
export async function download(path, filename) {
  const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}` } });
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const link = Object.assign(document.createElement("a"), { href: URL.createObjectURL(await response.blob()), download: filename });
  document.body.append(link);
  link.click();
  link.remove();
}

/** Who is logged in (GET /api/me), fetched once per page. */
let me = null;
export function whoAmI() {
  me = me || api("/api/me");
  return me;
}
