// The Schedules page: next fire time, recent ticks and their outcome, pause/resume/trigger.

import { ApiError, api } from "./api.js";
import { alertBox, el, formatDuration, replace, runLink, timeCell, toMillis, whileVisible } from "./dom.js";

const REFRESH_MS = 5000;
const RECENT_SHOWN = 5;

function tickOf(entry) {
  // a tick as (scheduled_time, run_id, outcome), as a list or an object
  if (Array.isArray(entry)) return { scheduled_time: entry[0], run_id: entry[1], outcome: entry[2] };
  return entry;
}

export function schedulesPage(main) {
  const alert = alertBox();
  const body = el("div", { id: "schedules" }, el("p", { class: "muted" }, "Loading…"));
  const triggered = new Map(); // schedule id -> the run its last "Trigger now" started
  let disposed = false;

  replace(main, el("h1", {}, "Schedules"), alert.node, body);

  async function act(schedule, action) {
    try {
      const { data } = await api(`schedules/${encodeURIComponent(schedule.id)}/${action}`, { method: "POST" });
      if (action === "trigger" && data && data.id) triggered.set(schedule.id, data.id);
      alert.clear();
      load();
    } catch (error) {
      alert.show(error);
    }
  }

  function card(schedule) {
    const next = toMillis(schedule.next_time);
    const recent = (schedule.recent ?? []).map(tickOf).slice(-RECENT_SHOWN).reverse();
    const state = schedule.paused
      ? el("span", { class: "status status-paused" }, el("span", { class: "glyph", "aria-hidden": "true" }, "‖"), " paused")
      : el("span", { class: "status status-running" }, el("span", { class: "glyph", "aria-hidden": "true" }, "▶"), " active");
    return el(
      "article",
      { class: "card schedule", dataset: { schedule: schedule.id }, "aria-labelledby": `sched-${schedule.id}` },
      el("h2", { id: `sched-${schedule.id}`, class: "mono" }, schedule.id, " ", state),
      el(
        "dl",
        { class: "summary" },
        el("dt", {}, "Workflow"), el("dd", {}, el("a", { href: `#/runs?workflow=${encodeURIComponent(schedule.workflow)}` }, schedule.workflow)),
        el("dt", {}, "Cron"), el("dd", { class: "mono" }, schedule.cron, schedule.timezone ? ` (${schedule.timezone})` : ""),
        el("dt", {}, "Next tick"), el("dd", {}, schedule.paused || !next ? el("span", { class: "muted" }, "none while paused") : [timeCell(schedule.next_time), ` (in ${formatDuration(next - Date.now())})`]),
        el("dt", {}, "Policies"), el("dd", {}, `overlap ${schedule.overlap ?? "—"}, catch-up ${schedule.catchup ?? "—"}`),
        el("dt", {}, "Declared"), el("dd", {}, schedule.declared ? "in code" : "through the API"),
        schedule.buffered?.length ? [el("dt", {}, "Buffered"), el("dd", {}, `${schedule.buffered.length} tick(s) wait for the unfinished run`)] : null,
      ),
      el("h3", {}, "Recent ticks"),
      recent.length
        ? el("ul", { class: "plain ticks" }, recent.map((t) => el("li", {}, timeCell(t.scheduled_time), " ", el("span", { class: `outcome outcome-${t.outcome}` }, t.outcome), " ", t.run_id ? runLink(t.run_id) : "")))
        : el("p", { class: "muted" }, "No ticks yet."),
      el(
        "div",
        { class: "toolbar" },
        schedule.paused
          ? el("button", { type: "button", dataset: { action: "resume" }, onclick: () => act(schedule, "resume") }, "▶ Resume")
          : el("button", { type: "button", dataset: { action: "pause" }, onclick: () => act(schedule, "pause") }, "‖ Pause"),
        el("button", { type: "button", dataset: { action: "trigger" }, onclick: () => act(schedule, "trigger") }, "Trigger now"),
        el("span", { class: "small triggered", role: "status" }, triggered.has(schedule.id) ? ["started ", runLink(triggered.get(schedule.id))] : ""),
      ),
    );
  }

  async function load() {
    try {
      const { data } = await api("schedules");
      if (disposed) return;
      alert.clear();
      const schedules = data.schedules ?? [];
      replace(body, schedules.length ? el("div", { class: "schedule-grid" }, schedules.map(card)) : el("p", { class: "muted" }, "No schedules."));
    } catch (error) {
      if (disposed) return;
      if (error instanceof ApiError && error.status === 404) {
        stop();
        replace(body, el("p", { class: "notice", id: "schedules-unavailable" }, "This server has no schedule routes: schedules are not available here."));
      } else {
        alert.show(error);
      }
    }
  }

  load();
  const stop = whileVisible(load, REFRESH_MS);
  return () => {
    disposed = true;
    stop();
  };
}
