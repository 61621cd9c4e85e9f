// Talking to the actorflow HTTP API: JSON requests, the token, and Server-Sent Events
// read through fetch (EventSource cannot send an Authorization header).

const TOKEN_KEY = "actorflow.token";

// The API sits next to the dashboard: /ui/ -> /v1/, and /prefix/ui/ -> /prefix/v1/ when the
// app is mounted inside another service.
const API_ROOT = new URL("../v1/", new URL(".", location.href));

export class ApiError extends Error {
  constructor(status, type, message) {
    super(message);
    this.status = status;
    this.type = type;
  }

  describe() {
    return this.status ? `${this.type} (HTTP ${this.status}): ${this.message}` : this.message;
  }
}

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

function headers(extra = {}) {
  const result = { ...extra };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) result.Authorization = `Bearer ${token}`;
  return result;
}

let pendingToken = null;
let declined = false; // the user cancelled: no more asking until "Change token"

// Asks for the token once, however many requests got a 401 meanwhile.
function askToken(reason, { force = false } = {}) {
  if (pendingToken) return pendingToken;
  if (declined && !force) {
    return Promise.reject(new ApiError(401, "Unauthorized", "a token is needed to use this server"));
  }
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  document.getElementById("token-reason").textContent = reason;
  input.value = "";
  pendingToken = new Promise((resolve, reject) => {
    const form = document.getElementById("token-form");
    const cancel = document.getElementById("token-cancel");
    const done = (ok) => {
      form.removeEventListener("submit", onSubmit);
      cancel.removeEventListener("click", onCancel);
      dialog.removeEventListener("cancel", onCancel);
      if (dialog.open) dialog.close();
      pendingToken = null;
      declined = !ok;
      document.getElementById("token-button").hidden = !(hasToken() || declined);
      if (ok) resolve();
      else reject(new ApiError(401, "Unauthorized", "a token is needed to use this server"));
    };
    const onSubmit = (event) => {
      event.preventDefault();
      sessionStorage.setItem(TOKEN_KEY, input.value.trim());
      done(true);
    };
    const onCancel = (event) => {
      event.preventDefault();
      done(false);
    };
    form.addEventListener("submit", onSubmit);
    cancel.addEventListener("click", onCancel);
    dialog.addEventListener("cancel", onCancel);
    dialog.showModal();
    input.focus();
  });
  return pendingToken;
}

export function changeToken() {
  return askToken("Enter the token to use from now on.", { force: true }).catch(() => {});
}

export function hasToken() {
  return Boolean(sessionStorage.getItem(TOKEN_KEY));
}

async function errorOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && body.error) return new ApiError(response.status, body.error.type, body.error.message);
  } catch {
    // not JSON: the status line says it all
  }
  return new ApiError(response.status, `HTTP ${response.status}`, text || response.statusText);
}

function unauthorizedReason() {
  return hasToken() ? "The token was refused. Enter a valid one." : "This server needs a token.";
}

// fetch, asking for a token on a 401 and trying again with it.
async function authorizedFetch(url, init) {
  for (;;) {
    let response;
    try {
      response = await fetch(url, { ...init, headers: headers(init.headers) });
    } catch (error) {
      if (error.name === "AbortError") throw error;
      throw new ApiError(0, "NetworkError", `the server cannot be reached (${error.message})`);
    }
    if (response.status !== 401) return response;
    await askToken(unauthorizedReason());
  }
}

/** A JSON request; resolves to {status, data}, rejects with ApiError. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await authorizedFetch(apiUrl(path, query), init);
  if (!response.ok) throw await errorOf(response);
  const text = await response.text();
  return { status: response.status, data: text ? JSON.parse(text) : null };
}

/**
 * Reads a Server-Sent Events endpoint until the server ends it, from after `lastEventId` if
 * given. It reconnects with Last-Event-ID after a network error, and lets go of the
 * connection while the tab is hidden (a browser allows only six connections to a server,
 * shared by its tabs). handlers: onEvent({id, event, data}), onOpen(), onEnd(),
 * onError(ApiError). Returns {close()}.
 */
export function subscribe(
  path,
  query,
  { onEvent, onOpen = () => {}, onEnd = () => {}, onError = () => {} },
  lastEventId = null,
) {
  let closed = false;
  let connection = null; // the AbortController of the request in flight
  let wake = null; // resolves the wait for the tab to be visible again
  let lastId = lastEventId;
  let retryDelay = 500;

  const onVisibility = () => {
    if (document.visibilityState === "hidden") connection?.abort();
    else wake?.();
  };
  document.addEventListener("visibilitychange", onVisibility);

  async function readOnce(signal) {
    const extra = { Accept: "text/event-stream" };
    if (lastId !== null) extra["Last-Event-ID"] = lastId;
    const response = await authorizedFetch(apiUrl(path, query), { headers: extra, signal });
    if (!response.ok) throw await errorOf(response);
    retryDelay = 500;
    onOpen();
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let message = { id: null, event: "message", data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (message.data.length) {
            if (message.id !== null) lastId = message.id;
            onEvent({ id: message.id, event: message.event, data: message.data.join("\n") });
          }
          message = { id: null, event: "message", data: [] };
        } else if (!line.startsWith(":")) {
          const colon = line.indexOf(":");
          const field = colon < 0 ? line : line.slice(0, colon);
          const raw = colon < 0 ? "" : line.slice(colon + 1);
          const text = raw.startsWith(" ") ? raw.slice(1) : raw;
          if (field === "data") message.data.push(text);
          else if (field === "id") message.id = text;
          else if (field === "event") message.event = text;
        }
      }
    }
  }

  (async () => {
    while (!closed) {
      if (document.visibilityState === "hidden") {
        await new Promise((resolve) => (wake = resolve));
        wake = null;
        continue;
      }
      connection = new AbortController();
      try {
        await readOnce(connection.signal);
        if (!closed) onEnd();
        break;
      } catch (error) {
        if (closed) break;
        if (connection.signal.aborted) continue; // hidden: resumes once visible
        if (error instanceof ApiError && error.status !== 0 && error.status < 500) {
          onError(error);
          break;
        }
        await new Promise((resolve) => setTimeout(resolve, retryDelay));
        retryDelay = Math.min(retryDelay * 2, 10000);
      }
    }
    document.removeEventListener("visibilitychange", onVisibility);
  })();

  return {
    close() {
      closed = true;
      connection?.abort();
      wake?.();
    },
  };
}
