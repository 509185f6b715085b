// The control API as the console calls it: every request carries the bearer token that the
// login page kept in this tab's session storage.

const KEY = "weir.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export const enc = encodeURIComponent;

// JSON from `path` (or the Response itself with raw: true); errors carry the server's message.
export async function api(path, { method = "GET", body, headers = {}, raw = false } = {}) {
  const init = { method, headers: { Authorization: `Bearer ${token.get() || ""}`, ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers["Content-Type"] = init.headers["Content-Type"] || "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const detail = await response.json();
      message = detail.message || JSON.stringify(detail.detail || detail);
    } catch { /* not JSON: keep the status line */ }
    if (response.status === 401) {
      token.clear();
      window.dispatchEvent(new Event("weir:signed-out"));
    }
    throw new ApiError(response.status, message);
  }
  return raw ? response : response.json();
}
