// Small DOM and formatting helpers shared by the pages.

/** el("a", {href: "#"}, "text", child...): attributes starting with "on" become listeners. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "class") node.className = value;
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
}

/**
 * A scrollable table: `headers` are strings or nodes (a header with class "num" is
 * given as [node, "num"]); `tbody` is the body the page fills.
 */
export function dataTable({ id, cls, caption, headers, tbody }) {
  const th = (h) => (Array.isArray(h) ? el("th", { scope: "col", class: h[1] }, h[0]) : el("th", { scope: "col" }, h));
  return el(
    "div",
    { class: "table-wrap" },
    el(
      "table",
      { class: cls, id },
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, headers.map(th))),
      tbody,
    ),
  );
}

export function replace(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

export const FINAL = new Set(["completed", "failed", "terminated"]);

// Colour is never the only signal: every status also has a glyph and its name.
const GLYPHS = {
  queued: "○",
  running: "▶",
  pausing: "‖",
  paused: "‖",
  waiting: "◔",
  completed: "✓",
  failed: "✗",
  terminated: "■",
  retrying: "↻",
};

export const STATUSES = [
  "queued", "running", "pausing", "paused", "waiting", "completed", "failed", "terminated",
];

export function statusBadge(status) {
  return el(
    "span",
    { class: `status status-${status}`, dataset: { status } },
    el("span", { class: "glyph", "aria-hidden": "true" }, GLYPHS[status] ?? "•"),
    " ",
    status,
  );
}

export function toMillis(iso) {
  return iso ? Date.parse(iso) : null;
}

const pad = (n, width = 2) => String(n).padStart(width, "0");

/** Local date and time to the second (or millisecond); the ISO string is in the title. */
export function timeCell(iso, { millis = false } = {}) {
  if (!iso) return el("span", { class: "muted" }, "—");
  const d = new Date(iso);
  const text = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    (millis ? `.${pad(d.getMilliseconds(), 3)}` : "");
  return el("time", { datetime: iso, title: iso }, text);
}

export function formatDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 0) ms = 0;
  if (ms < 1000) return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${pad(Math.floor(s % 60))}s`;
  const h = Math.floor(m / 60);
  if (h < 24) return `${h}h ${pad(m % 60)}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

/** How long a run (or step) took, or has taken so far if it has not ended. */
export function runDuration(run, now = Date.now()) {
  const start = toMillis(run.started_at) ?? toMillis(run.created_at);
  if (start === null) return null;
  return (toMillis(run.completed_at) ?? now) - start;
}

export function json(value) {
  return JSON.stringify(value, null, 2);
}

export function jsonBlock(value, label) {
  return el("pre", { class: "json", tabindex: "0", "aria-label": label }, json(value));
}

export function errorBlock(error) {
  if (!error) return null;
  return el(
    "div",
    { class: "error-info" },
    el("p", {}, el("strong", {}, error.type), ": ", error.message),
    error.traceback
      ? el(
          "details",
          { open: true },
          el("summary", {}, "Traceback"),
          el("pre", { class: "traceback", tabindex: "0" }, error.traceback),
        )
      : null,
  );
}

/** A region that shows API errors (role=alert, so screen readers announce them). */
export function alertBox() {
  const box = el("div", { class: "alert", role: "alert", hidden: true });
  return {
    node: box,
    show(error) {
      const text = error && error.describe ? error.describe() : String(error);
      replace(
        box,
        el("span", {}, text),
        el("button", { type: "button", class: "link", onclick: () => (box.hidden = true) }, "Dismiss"),
      );
      box.hidden = false;
    },
    clear() {
      box.hidden = true;
    },
  };
}

/** Asks before a destructive action; resolves to true when confirmed. */
export function confirmAction(title, text, action = "Confirm") {
  const dialog = document.getElementById("confirm-dialog");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  document.getElementById("confirm-ok").textContent = action;
  dialog.returnValue = "cancel";
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.showModal();
  });
}

export function runLink(id) {
  return el("a", { href: `#/runs/${encodeURIComponent(id)}`, class: "mono" }, id);
}

/** Calls fn every `ms` while the tab is visible; returns a stop function. */
export function whileVisible(fn, ms) {
  const timer = setInterval(() => {
    if (document.visibilityState === "visible") fn();
  }, ms);
  const onVisible = () => document.visibilityState === "visible" && fn();
  document.addEventListener("visibilitychange", onVisible);
  return () => {
    clearInterval(timer);
    document.removeEventListener("visibilitychange", onVisible);
  };
}
