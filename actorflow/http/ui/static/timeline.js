// A run's timeline, derived from its event log: one row per call of the workflow (a step
// with each attempt and the waits between retries, a sleep, a wait for an event, a child
// run), as bars on a time axis.

import { el, formatDuration, replace, toMillis } from "./dom.js";

/** The generations (executions) present in a log, oldest first. */
export function generations(events) {
  return [...new Set(events.map((e) => e.generation))].sort((a, b) => a - b);
}

/**
 * The rows of one generation. Each row: {seq, label, kind, outcome, bars}; each bar:
 * {start, end (null while it lasts), kind, text, href?}. Also the run-level marks (paused
 * spans) and where the generation starts and ends.
 */
export function buildTimeline(events, generation) {
  const rows = new Map();
  const row = (seq, kind, label) => {
    if (!rows.has(seq)) rows.set(seq, { seq, kind, label, outcome: "", bars: [] });
    return rows.get(seq);
  };
  const open = (r) => r.bars.findLast((b) => b.end === null);
  // Ends a row's open bar (if any) at `at`, giving it `kind` if one is named.
  const close = (r, at, kind) => {
    const bar = open(r);
    if (bar) {
      bar.end = at;
      if (kind) bar.kind = kind;
    }
    return bar;
  };
  const pendingWaits = new Map(); // event type -> rows waiting for it, oldest first
  const buffered = new Map(); // event type -> number of events received and not yet taken
  const paused = [];
  let start = null;
  let end = null;

  for (const e of events) {
    if (e.generation !== generation) {
      // events stay buffered across a restart
      if (e.kind === "event_received" && e.generation < generation) {
        buffered.set(e.name, (buffered.get(e.name) ?? 0) + 1);
      }
      continue;
    }
    const at = toMillis(e.at);
    // a restart copies the kept calls into the new generation with their first times
    if (start === null || at < start) start = at;
    const data = e.data ?? {};
    switch (e.kind) {
      case "step_started": {
        const r = row(e.seq, "step", e.name);
        close(r, at); // the wait before a retry
        r.bars.push({ start: at, end: null, kind: "attempt", text: `attempt ${data.attempt}` });
        r.outcome = "running";
        break;
      }
      case "step_retrying":
      case "step_failed": {
        const r = row(e.seq, "step", e.name);
        const error = data.error ? `${data.error.type}: ${data.error.message}` : "failed";
        const attempt = close(r, at, "attempt-failed");
        if (attempt) attempt.text += ` failed (${error})`;
        if (e.kind === "step_retrying") {
          const retryAt = data.retry_at ? data.retry_at * 1000 : null;
          r.bars.push({ start: at, end: null, planned: retryAt, kind: "backoff", text: "waiting to retry" });
          r.outcome = "retrying";
        } else {
          r.outcome = "failed";
        }
        break;
      }
      case "step_completed": {
        const r = row(e.seq, "step", e.name);
        const attempt = close(r, at, "attempt-ok");
        if (attempt) attempt.text += " completed";
        r.outcome = "completed";
        break;
      }
      case "sleep_started": {
        const r = row(e.seq, "sleep", "sleep");
        const fireAt = data.fire_at ? data.fire_at * 1000 : null;
        r.bars.push({ start: at, end: null, planned: fireAt, kind: "sleep", text: "sleeping" });
        r.outcome = "waiting";
        break;
      }
      case "sleep_fired": {
        const r = row(e.seq, "sleep", "sleep");
        close(r, at);
        r.outcome = "completed";
        break;
      }
      case "wait_started": {
        const r = row(e.seq, "wait", `event “${e.name}”`);
        const timeoutAt = data.timeout_at ? data.timeout_at * 1000 : null;
        r.bars.push({ start: at, end: null, planned: timeoutAt, kind: "wait", text: `waiting for “${e.name}”` });
        r.outcome = "waiting";
        const queued = buffered.get(e.name) ?? 0;
        if (queued > 0) {
          buffered.set(e.name, queued - 1);
          r.bars.at(-1).end = at;
          r.outcome = "received";
        } else {
          if (!pendingWaits.has(e.name)) pendingWaits.set(e.name, []);
          pendingWaits.get(e.name).push(r);
        }
        break;
      }
      case "event_received": {
        const waiting = pendingWaits.get(e.name);
        const r = waiting && waiting.shift();
        if (r) {
          close(r, at);
          r.outcome = "received";
        } else {
          buffered.set(e.name, (buffered.get(e.name) ?? 0) + 1);
        }
        break;
      }
      case "wait_timed_out": {
        const r = rows.get(e.seq);
        if (!r) break;
        close(r, at, "wait-timeout");
        r.outcome = "timed out";
        for (const list of pendingWaits.values()) {
          const i = list.indexOf(r);
          if (i >= 0) list.splice(i, 1);
        }
        break;
      }
      case "child_started": {
        const r = row(e.seq, "child", `child ${e.name}`);
        r.childId = data.run_id;
        r.bars.push({
          start: at, end: null, kind: "child", text: `child run ${data.run_id}`,
          href: `#/runs/${encodeURIComponent(data.run_id)}`,
        });
        r.outcome = "running";
        break;
      }
      case "child_finished": {
        const r = rows.get(e.seq);
        if (!r) break;
        close(r, at, data.status === "completed" ? null : "child-failed");
        r.outcome = data.status ?? "finished";
        break;
      }
      case "run_paused":
        paused.push({ start: at, end: null });
        break;
      case "run_resumed": {
        const span = paused.findLast((p) => p.end === null);
        if (span) span.end = at;
        break;
      }
      case "run_completed":
      case "run_failed":
      case "run_terminated":
        end = at;
        break;
      default:
        break;
    }
  }
  return {
    start,
    end,
    paused,
    rows: [...rows.values()].sort((a, b) => a.seq - b.seq),
  };
}

const NICE_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1e3, 2e3, 5e3, 1e4, 15e3, 3e4, 6e4,
  12e4, 3e5, 6e5, 9e5, 18e5, 36e5, 72e5, 144e5, 216e5, 432e5, 864e5];

// At most one labelled tick per ~110 px of track, so that labels never overlap.
function tickStep(span, trackWidth) {
  const most = Math.max(2, Math.min(8, Math.floor(trackWidth / 110)));
  return NICE_STEPS.find((s) => span / s <= most) ?? span / most;
}

const PLANNED = { sleep: "fires at", wait: "times out at", backoff: "retries at" };

const OUTCOME_GLYPH = {
  completed: "✓", failed: "✗", terminated: "■", retrying: "↻", running: "▶", waiting: "◔",
  received: "✓", "timed out": "⌛",
};

/** Draws a timeline model into `container` (replacing what was there). */
export function renderTimeline(container, model, now = Date.now()) {
  if (model.start === null || !model.rows.length) {
    replace(container, el("p", { class: "muted" }, "No steps or waits yet."));
    return;
  }
  const t0 = model.start;
  const t1 = Math.max(model.end ?? now, t0 + 1);
  const span = t1 - t0;
  const pct = (t) => `${(((Math.min(Math.max(t, t0), t1) - t0) / span) * 100).toFixed(3)}%`;
  const width = (a, b) => `max(3px, ${((Math.max(b - a, 0) / span) * 100).toFixed(3)}%)`;

  const labelWidth = parseFloat(getComputedStyle(container).getPropertyValue("--label-w")) * 14 || 210;
  const step = tickStep(span, (container.clientWidth || 900) - labelWidth);
  const ticks = [];
  for (let t = 0; t <= span + 1e-9; t += step) {
    const late = t > span * 0.9; // its label would overflow the track: drawn to the left of it
    ticks.push(el("span", { class: `tick${late ? " tick-end" : ""}`, style: { left: pct(t0 + t) } }, `+${formatDuration(t)}`));
  }

  const shades = model.paused.map((p) =>
    el("div", {
      class: "paused-span",
      style: { left: pct(p.start), width: width(p.start, p.end ?? t1) },
      title: `paused for ${formatDuration((p.end ?? t1) - p.start)}`,
    }),
  );

  const rowNodes = model.rows.map((r) => {
    const attempts = r.bars.filter((b) => b.kind.startsWith("attempt")).length;
    const pending = r.bars.findLast((b) => b.end === null && b.planned);
    const due = pending ? `, ${PLANNED[pending.kind]} ${new Date(pending.planned).toLocaleTimeString()}` : "";
    const outcome = `${OUTCOME_GLYPH[r.outcome] ?? ""} ${r.outcome}${attempts > 1 ? `, ${attempts} attempts` : ""}${due}`;
    const bars = r.bars.map((b) => {
      const barEnd = b.end ?? t1;
      const lasting = b.end === null ? ` so far${b === pending ? due : ""}` : "";
      const label = `${r.label}: ${b.text}, ${formatDuration(barEnd - b.start)}${lasting}`;
      const attrs = {
        class: `bar bar-${b.kind}${b.end === null ? " open" : ""}`,
        style: { left: pct(b.start), width: width(b.start, barEnd) },
        title: label,
        "aria-label": label,
      };
      return b.href ? el("a", { ...attrs, href: b.href }) : el("span", { ...attrs, tabindex: "0", role: "img" });
    });
    return el(
      "div",
      { class: `tl-row tl-${r.kind}`, dataset: { seq: r.seq, name: r.label, outcome: r.outcome } },
      el(
        "div",
        { class: "tl-label" },
        el("span", { class: "mono muted" }, `#${r.seq}`),
        " ",
        el("span", { class: "tl-name" }, r.label),
        el("span", { class: "tl-outcome small" }, outcome),
      ),
      el("div", { class: "tl-track" }, bars),
    );
  });

  replace(
    container,
    el(
      "div",
      { class: "timeline", role: "group", "aria-label": `Timeline over ${formatDuration(span)}` },
      el("div", { class: "tl-row tl-axis", "aria-hidden": "true" }, el("div", { class: "tl-label" }), el("div", { class: "tl-track" }, ticks)),
      el("div", { class: "tl-body" }, el("div", { class: "tl-shades" }, shades), rowNodes),
    ),
    legend(),
  );
}

function legend() {
  const items = [
    ["attempt-ok", "attempt completed"],
    ["attempt-failed", "attempt failed"],
    ["attempt", "attempt running"],
    ["backoff", "waiting to retry"],
    ["sleep", "sleep"],
    ["wait", "waiting for an event"],
    ["child", "child run"],
  ];
  return el(
    "ul",
    { class: "legend", "aria-label": "Legend" },
    items.map(([kind, text]) => el("li", {}, el("span", { class: `swatch bar-${kind}` }), text)),
    el("li", {}, el("span", { class: "swatch paused-span" }), "paused"),
  );
}
