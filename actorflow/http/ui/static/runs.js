// The Runs page: a filtered, paged table of runs, refreshed in place while it is shown.

import { ApiError, api } from "./api.js";
import {
  FINAL, STATUSES, alertBox, dataTable, el, formatDuration, replace, runDuration, runLink, statusBadge,
  timeCell, whileVisible,
} from "./dom.js";

const PAGE_SIZE = 25;
const REFRESH_MS = 2000;

function select(id, label, options, value) {
  return [
    el("label", { for: id }, label),
    el(
      "select",
      { id, name: id },
      options.map(([optionValue, text]) =>
        el("option", { value: optionValue, selected: optionValue === value }, text),
      ),
    ),
  ];
}

export function runsPage(main, params) {
  const filters = {
    workflow: params.get("workflow") ?? "",
    status: params.get("status") ?? "",
  };
  const cursors = [params.get("cursor") ?? ""]; // cursor of each page visited, for "Newer"
  const alert = alertBox();
  const rows = new Map(); // run id -> {row, run}
  let current = [];
  let disposed = false;
  let live = true;

  const workflowSelect = select("filter-workflow", "Workflow", [["", "All workflows"]], filters.workflow);
  const statusSelect = select(
    "filter-status",
    "Status",
    [["", "All statuses"], ...STATUSES.map((s) => [s, s])],
    filters.status,
  );
  const search = el("input", {
    id: "search-id", type: "search", name: "id", placeholder: "exact run id", autocomplete: "off",
  });
  const liveBox = el("input", { id: "live", type: "checkbox", checked: true });
  const liveState = el("span", { class: "muted small", "aria-live": "polite", id: "live-state" });
  const tbody = el("tbody");
  const empty = el("p", { class: "muted", hidden: true }, "No runs match these filters.");
  const newer = el("button", { type: "button", id: "page-newer" }, "← Newer");
  const older = el("button", { type: "button", id: "page-older" }, "Older →");
  const pageLabel = el("span", { class: "muted small" });

  const filterForm = el(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: (e) => e.preventDefault() },
    el("div", { class: "field" }, workflowSelect),
    el("div", { class: "field" }, statusSelect),
    el(
      "div",
      { class: "field" },
      el("label", { for: "search-id" }, "Run id"),
      el("div", { class: "inline" }, search, el("button", { type: "submit", id: "search-go" }, "Find")),
    ),
    el("div", { class: "field live" }, el("label", {}, liveBox, " Live updates"), liveState),
  );

  replace(
    main,
    el("h1", {}, "Runs"),
    filterForm,
    alert.node,
    dataTable({
      id: "runs-table",
      cls: "runs",
      caption: "Runs, newest first",
      headers: ["Run id", "Workflow", "Status", "Created", "Duration", "Steps done"],
      tbody,
    }),
    empty,
    el("nav", { class: "pager", "aria-label": "Pages" }, newer, pageLabel, older),
  );

  function setHash() {
    const query = new URLSearchParams();
    if (filters.workflow) query.set("workflow", filters.workflow);
    if (filters.status) query.set("status", filters.status);
    const text = query.toString();
    history.replaceState(null, "", `#/runs${text ? `?${text}` : ""}`);
  }

  function cells(run) {
    return [
      el("td", { "data-label": "Run id" }, runLink(run.id)),
      el(
        "td",
        { "data-label": "Workflow" },
        el("a", { href: `#/runs?workflow=${encodeURIComponent(run.workflow)}` }, run.workflow),
      ),
      el("td", { "data-label": "Status" }, statusBadge(run.status)),
      el("td", { "data-label": "Created" }, timeCell(run.created_at)),
      el("td", { "data-label": "Duration", class: "num" }, formatDuration(runDuration(run))),
      el("td", { "data-label": "Steps done", class: "num" }, String(run.steps_done)),
    ];
  }

  function signature(run) {
    return [run.status, run.completed_at, run.steps_done].join("|");
  }

  // Updates rows in place: a run's row is rebuilt only when what it shows changed, and rows
  // new since the last refresh are marked.
  function render(runs, { highlightNew }) {
    const seen = new Set();
    let previous = null;
    for (const run of runs) {
      seen.add(run.id);
      let entry = rows.get(run.id);
      if (!entry) {
        const row = el("tr", { dataset: { runId: run.id, status: run.status } }, cells(run));
        if (highlightNew) row.classList.add("fresh");
        entry = { row, sig: signature(run) };
        rows.set(run.id, entry);
      } else if (entry.sig !== signature(run)) {
        const statusChanged = entry.row.dataset.status !== run.status;
        replace(entry.row, cells(run));
        entry.row.dataset.status = run.status;
        entry.sig = signature(run);
        if (statusChanged) {
          entry.row.classList.remove("fresh");
          void entry.row.offsetWidth; // restart the highlight animation
          entry.row.classList.add("fresh");
        }
      } else if (!FINAL.has(run.status)) {
        // the duration of an unfinished run still moves
        entry.row.cells[4].textContent = formatDuration(runDuration(run));
      }
      const anchor = previous ? previous.nextSibling : tbody.firstChild;
      if (anchor !== entry.row) tbody.insertBefore(entry.row, anchor);
      previous = entry.row;
    }
    for (const [id, entry] of rows) {
      if (!seen.has(id)) {
        entry.row.remove();
        rows.delete(id);
      }
    }
    empty.hidden = runs.length > 0;
    newer.disabled = cursors.length <= 1;
    pageLabel.textContent = `page ${cursors.length}`;
  }

  let loading = null;
  let nextCursor = null;
  async function load({ highlightNew = false } = {}) {
    if (loading) return loading;
    loading = (async () => {
      try {
        const { data } = await api("runs", {
          query: {
            workflow: filters.workflow,
            status: filters.status,
            limit: PAGE_SIZE,
            cursor: cursors[cursors.length - 1],
          },
        });
        if (disposed) return;
        alert.clear();
        current = data.runs;
        nextCursor = data.next_cursor;
        older.disabled = !nextCursor;
        render(current, { highlightNew });
        liveState.textContent = live ? `updated ${new Date().toLocaleTimeString()}` : "paused";
      } catch (error) {
        if (!disposed) alert.show(error);
      } finally {
        loading = null;
      }
    })();
    return loading;
  }

  function reset() {
    cursors.length = 1;
    cursors[0] = "";
    for (const entry of rows.values()) entry.row.remove();
    rows.clear();
    setHash();
    load();
  }

  workflowSelect[1].addEventListener("change", (e) => {
    filters.workflow = e.target.value;
    reset();
  });
  statusSelect[1].addEventListener("change", (e) => {
    filters.status = e.target.value;
    reset();
  });
  filterForm.addEventListener("submit", async () => {
    const id = search.value.trim();
    if (!id) return;
    try {
      await api(`runs/${encodeURIComponent(id)}`);
      location.hash = `#/runs/${encodeURIComponent(id)}`;
    } catch (error) {
      alert.show(error instanceof ApiError && error.status === 404 ? `No run has the id ${id}.` : error);
    }
  });
  older.addEventListener("click", () => {
    if (!nextCursor) return;
    cursors.push(nextCursor);
    load();
  });
  newer.addEventListener("click", () => {
    if (cursors.length <= 1) return;
    cursors.pop();
    load();
  });
  liveBox.addEventListener("change", () => {
    live = liveBox.checked;
    liveState.textContent = live ? "" : "paused";
  });

  api("workflows")
    .then(({ data }) => {
      if (disposed) return;
      const names = data.workflows.map((w) => w.name).sort();
      if (filters.workflow && !names.includes(filters.workflow)) names.unshift(filters.workflow);
      const selectNode = workflowSelect[1];
      replace(
        selectNode,
        el("option", { value: "" }, "All workflows"),
        names.map((n) => el("option", { value: n, selected: n === filters.workflow }, n)),
      );
    })
    .catch((error) => alert.show(error));

  load();
  const stop = whileVisible(() => live && load({ highlightNew: true }), REFRESH_MS);
  return () => {
    disposed = true;
    stop();
  };
}
