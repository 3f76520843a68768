// The admin API as the console calls it: the credential kept for the tab, and the errors a view acts on.
//
// The key lives in sessionStorage (this tab only, gone when it closes) and travels in the Authorization
// header of every call, the live stream's included (stream.js reads it with fetch(), not EventSource,
// so that it never has to go in a URL).

const KEY = "tokentail.console.key";

export const credential = {
  get: () => sessionStorage.getItem(KEY),
  set: (key) => sessionStorage.setItem(KEY, key),
  forget: () => sessionStorage.removeItem(KEY),
};

export function authHeaders() {
  const key = credential.get();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.type = type;
  }
}

/** 401: no credential, or one the gateway refused. */
export class Unauthorized extends ApiError {}
/** 404: unknown, or another tenant's (the API answers both alike); 410: deleted or expired. */
export class NotFound extends ApiError {}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", ...authHeaders() };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
  });
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (response.ok) return payload;
  const error = payload?.error ?? {};
  // 410: a session deleted, or expired: for the console as gone as one that never was.
  const Kind = response.status === 401 ? Unauthorized : [404, 410].includes(response.status) ? NotFound : ApiError;
  throw new Kind(response.status, error.type, error.message || `${method} ${path}: HTTP ${response.status}`);
}

/** An action's failure, for the banner: a 404 there (the question answered meanwhile, the run gone) is
 * no reason to leave the view for the not-found one, as a 404 of the view's own read is. */
export function actionFailed(error) {
  return error instanceof NotFound ? new ApiError(error.status, error.type, error.message) : error;
}

/** A query string of the values given (empty ones left out). */
export function query(values) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, String(value));
  }
  const text = params.toString();
  return text ? `?${text}` : "";
}
