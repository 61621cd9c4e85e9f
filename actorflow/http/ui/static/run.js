// The page of one run: its summary, result or error, timeline, streams, event log and
// controls, kept live by the run's event stream.

import { ApiError, api, subscribe } from "./api.js";
import {
  FINAL, alertBox, dataTable, el, errorBlock, formatDuration, jsonBlock, replace, runDuration, runLink,
  statusBadge, timeCell,
} from "./dom.js";
import { controlsSection } from "./controls.js";
import { buildTimeline, generations, renderTimeline } from "./timeline.js";
import { streamsSection } from "./streams.js";

const EVENT_ROWS_SHOWN = 1000;

// A run started by a schedule carries its tick in its first log entry.
function scheduleTick(run, events) {
  if (run.schedule) return run.schedule;
  const tick = events.length && events[0].kind === "run_created" && events[0].data?.schedule;
  if (!tick) return null;
  return { schedule_id: tick.id, cron: tick.cron, scheduled_time: new Date(tick.time * 1000).toISOString() };
}

function section(title, id, ...children) {
  return el("section", { class: "card", id, "aria-labelledby": `${id}-title` }, el("h2", { id: `${id}-title` }, title), children);
}

function eventRow(e) {
  const data = e.data === null || e.data === undefined ? "" : JSON.stringify(e.data);
  const short = data.length > 120 ? `${data.slice(0, 120)}…` : data;
  return el(
    "tr",
    { dataset: { kind: e.kind } },
    el("td", { class: "num" }, e.index),
    el("td", { class: "nowrap" }, timeCell(e.at, { millis: true })),
    el("td", { class: "num" }, e.generation),
    el("td", { class: "mono" }, e.kind),
    el("td", { class: "num" }, e.seq ?? ""),
    el("td", { class: "mono" }, e.name ?? ""),
    el(
      "td",
      { class: "mono data" },
      data.length > 120 ? el("details", {}, el("summary", {}, short), el("pre", {}, JSON.stringify(e.data, null, 2))) : short,
    ),
  );
}

export function runPage(main, runId) {
  const alert = alertBox();
  const events = [];
  let run = null;
  let disposed = false;
  let eventsSub = null;
  let generation = null; // the generation shown; null follows the newest
  const children = new Map();
  const closers = [];

  const badge = el("span", { id: "run-status" });
  const summary = el("dl", { class: "summary", id: "run-summary" });
  const outcome = el("div", { id: "run-outcome" });
  const args = el("div", { id: "run-args" });
  const timeline = el("div", { id: "timeline" });
  const generationPick = el("select", { id: "generation" });
  const generationField = el("span", { class: "inline", hidden: true }, el("label", { for: "generation" }, "Execution"), generationPick);
  const eventBody = el("tbody");
  const eventCount = el("span", { class: "muted small", role: "status" });
  const streams = streamsSection(runId, (error) => alert.show(error));
  closers.push(() => streams.close());
  const controls = controlsSection(runId, {
    onError: (error) => alert.show(error),
    onDone: (action) => {
      alert.clear();
      if (action === "restart") {
        streams.reopen();
        follow();
      }
      refresh();
    },
  });

  replace(
    main,
    el("nav", { class: "crumbs", "aria-label": "Breadcrumb" }, el("a", { href: "#/runs" }, "Runs"), " › ", el("span", { class: "mono" }, runId)),
    el("header", { class: "run-head" }, el("h1", {}, el("span", { id: "run-workflow" }, "Run"), " ", badge), el("p", { class: "mono muted" }, runId)),
    alert.node,
    controls.node,
    el("div", { class: "run-grid" },
      section("Summary", "sec-summary", summary),
      section("Outcome", "sec-outcome", outcome),
      section("Arguments and metadata", "sec-args", args),
    ),
    section("Timeline", "sec-timeline", generationField, timeline),
    section("Streams", "sec-streams", streams.node),
    section(
      "Event log",
      "sec-events",
      eventCount,
      dataTable({
        id: "event-log",
        cls: "events",
        caption: "The run's event log",
        headers: ["#", "At", "Gen", "Kind", "Seq", "Name", "Data"],
        tbody: eventBody,
      }),
    ),
  );

  function renderSummary() {
    replace(badge, statusBadge(run.status));
    document.getElementById("run-workflow").textContent = run.workflow;
    const tick = scheduleTick(run, events);
    const items = [
      ["Status", statusBadge(run.status)],
      ["Workflow", el("a", { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow)],
      ["Created", timeCell(run.created_at)],
      ["Started", timeCell(run.started_at)],
      ["Completed", timeCell(run.completed_at)],
      ["Duration", formatDuration(runDuration(run))],
      ["Steps", `${run.steps_done} done of ${run.steps.length}`],
      ["Parent", run.parent_id ? runLink(run.parent_id) : el("span", { class: "muted" }, "none")],
      ["Children", children.size ? el("ul", { class: "plain", id: "run-children" }, [...children.values()].map((c) => el("li", {}, runLink(c)))) : el("span", { class: "muted" }, "none")],
      ["Schedule tick", tick ? el("span", { id: "run-schedule" }, el("a", { href: "#/schedules" }, tick.schedule_id), tick.cron ? ` (${tick.cron})` : "", " at ", timeCell(tick.scheduled_time)) : el("span", { class: "muted" }, "none")],
    ];
    replace(summary, items.map(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
    if (run.status === "completed") {
      replace(outcome, el("h3", {}, "Result"), jsonBlock(run.result, "Result"));
    } else if (run.error) {
      replace(outcome, el("h3", {}, "Error"), errorBlock(run.error));
    } else if (run.status === "terminated") {
      replace(outcome, el("p", {}, "Terminated."));
    } else {
      replace(outcome, el("p", { class: "muted" }, `No outcome yet: the run is ${run.status}.`));
    }
    replace(args, el("h3", {}, "Arguments"), jsonBlock(run.args, "Arguments"), el("h3", {}, "Metadata"), jsonBlock(run.metadata, "Metadata"));
    controls.update(run);
  }

  function renderEvents() {
    const gens = generations(events);
    const shown = generation ?? gens.at(-1) ?? 0;
    generationField.hidden = gens.length < 2;
    if (gens.length !== generationPick.options.length) {
      replace(generationPick, gens.map((g) => el("option", { value: g }, `generation ${g}${g === gens.at(-1) ? " (latest)" : ""}`)));
    }
    generationPick.value = String(shown);
    renderTimeline(timeline, buildTimeline(events, shown));
    const hidden = events.length - eventBody.children.length;
    eventCount.textContent = `${events.length} event${events.length === 1 ? "" : "s"}` +
      (hidden > 0 ? ` (the last ${eventBody.children.length} shown)` : "");
  }

  generationPick.addEventListener("change", () => {
    const gens = generations(events);
    const picked = Number(generationPick.value);
    generation = picked === gens.at(-1) ? null : picked;
    renderEvents();
  });

  let refreshTimer = null;
  function refresh() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(load, 150);
  }

  async function load() {
    try {
      const { data } = await api(`runs/${encodeURIComponent(runId)}`);
      if (disposed) return;
      run = data;
      renderSummary();
      // Namespaces with chunks, steps' included (the log names only the workflow's).
      for (const namespace of run.streams) streams.add(namespace, { auto: true });
    } catch (error) {
      if (disposed) return;
      if (error instanceof ApiError && error.status === 404) {
        replace(main, el("h1", {}, "Run not found"), el("p", {}, "No run has the id ", el("span", { class: "mono" }, runId), "."), el("p", {}, el("a", { href: "#/runs" }, "All runs")));
        dispose();
      } else {
        alert.show(error);
      }
    }
  }

  let renderQueued = false;
  function onEvent(message) {
    const event = JSON.parse(message.data);
    if (events.length && event.index <= events.at(-1).index) return;
    events.push(event);
    if (event.kind === "child_started" && event.data) {
      children.set(event.data.run_id, event.data.run_id);
    }
    if (event.kind === "stream_written") streams.add(event.name, { auto: true });
    eventBody.append(eventRow(event));
    if (eventBody.children.length > EVENT_ROWS_SHOWN) eventBody.firstElementChild.remove();
    if (!renderQueued) {
      renderQueued = true;
      requestAnimationFrame(() => {
        renderQueued = false;
        if (!disposed) renderEvents();
      });
    }
    refresh();
  }

  // Reads the log (after the last event shown, if any); the server ends it when the run ends.
  function follow() {
    if (eventsSub) eventsSub.close();
    const after = events.length ? String(events.at(-1).index) : null;
    eventsSub = subscribe(`runs/${encodeURIComponent(runId)}/events`, {}, {
      onEvent,
      onEnd: refresh,
      onError: (error) => alert.show(error),
    }, after);
  }

  // The bars of unfinished calls grow with the clock.
  const clock = setInterval(() => {
    if (!disposed && run && !FINAL.has(run.status) && document.visibilityState === "visible") renderEvents();
  }, 1000);

  // The axis's ticks depend on the width of the page.
  const onResize = () => events.length && renderEvents();
  window.addEventListener("resize", onResize);

  function dispose() {
    disposed = true;
    window.removeEventListener("resize", onResize);
    clearInterval(clock);
    clearTimeout(refreshTimer);
    if (eventsSub) eventsSub.close();
    closers.forEach((close) => close());
  }

  streams.add("default");
  load();
  follow();
  return dispose;
}
