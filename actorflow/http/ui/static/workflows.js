// The Workflows page: each registered workflow with its run counts by status.

import { api } from "./api.js";
import { STATUSES, alertBox, dataTable, el, replace, statusBadge, whileVisible } from "./dom.js";

const REFRESH_MS = 5000;

export function workflowsPage(main) {
  const alert = alertBox();
  const tbody = el("tbody");
  const empty = el("p", { class: "muted", hidden: true }, "No workflows are registered.");
  let disposed = false;

  replace(
    main,
    el("h1", {}, "Workflows"),
    alert.node,
    dataTable({
      id: "workflows-table",
      cls: "workflows",
      caption: "Workflows and their runs by status",
      headers: ["Workflow", "Concurrency", "Schedules", ...STATUSES.map((s) => [statusBadge(s), "num"])],
      tbody,
    }),
    empty,
  );

  function row(workflow) {
    const runsOf = (status) => `#/runs?workflow=${encodeURIComponent(workflow.name)}${status ? `&status=${status}` : ""}`;
    return el(
      "tr",
      { dataset: { workflow: workflow.name } },
      el("td", { "data-label": "Workflow" }, el("a", { href: runsOf(""), class: "mono" }, workflow.name)),
      el("td", { "data-label": "Concurrency", class: "num" }, workflow.concurrency ?? "unlimited"),
      el("td", { "data-label": "Schedules", class: "mono" }, (workflow.schedules ?? []).join(", ") || "—"),
      STATUSES.map((s) => {
        const count = workflow.runs?.[s] ?? 0;
        return el(
          "td",
          { "data-label": s, class: "num", dataset: { status: s } },
          count ? el("a", { href: runsOf(s), "aria-label": `${count} ${s} runs of ${workflow.name}` }, count) : el("span", { class: "muted" }, "0"),
        );
      }),
    );
  }

  async function load() {
    try {
      const { data } = await api("workflows");
      if (disposed) return;
      alert.clear();
      const workflows = [...data.workflows].sort((a, b) => a.name.localeCompare(b.name));
      replace(tbody, workflows.map(row));
      empty.hidden = workflows.length > 0;
    } catch (error) {
      if (!disposed) alert.show(error);
    }
  }

  load();
  const stop = whileVisible(load, REFRESH_MS);
  return () => {
    disposed = true;
    stop();
  };
}
