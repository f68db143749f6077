// The console's one way to the writer's REST API: the same calls curl makes, with the user's
// key (kept in sessionStorage: this tab only, gone when it closes) as a Bearer token, or none
// (setpoint dev lets keyless callers from loopback in). Errors become ApiError with the API's
// own code and message, so every page can show a 401 or 403 for what it is.

const KEY = "setpoint.apiKey";

export function apiKey() {
  return sessionStorage.getItem(KEY) || "";
}

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

// `/api/config` + a config path, each segment encoded (paths allow only [A-Za-z0-9._-], so
// this changes nothing for a valid path and keeps a bad one from escaping the prefix).
export function configUrl(path, suffix = "") {
  const segments = path.split("/").filter((s) => s !== "");
  return "/api/config/" + segments.map(encodeURIComponent).join("/") + suffix;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(name, String(value));
  }
  const text = search.toString();
  return text ? "?" + text : "";
}

// Calls the API; answers {status, body, headers} for a 2xx (or a 304), throws ApiError else.
export async function api(method, url, body, headers = {}) {
  const sent = { Accept: "application/json", ...headers };
  const key = apiKey();
  if (key) sent.Authorization = "Bearer " + key;
  if (body !== undefined) sent["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: sent,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
    });
  } catch (error) {
    throw new ApiError(0, "unreachable", "the writer cannot be reached: " + error.message);
  }
  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!response.ok) {
    const error = json && json.error;
    throw new ApiError(
      response.status,
      error ? error.code : "http_" + response.status,
      error ? error.message : text || response.statusText,
      error ? error.details : undefined,
    );
  }
  return { status: response.status, body: json, headers: response.headers };
}

export const get = (url) => api("GET", url).then((r) => r.body);
