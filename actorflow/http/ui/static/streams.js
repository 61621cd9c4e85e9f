// A run's streams: one panel per namespace, each reading the stream's Server-Sent Events,
// so chunks appear as the run writes them.

import { subscribe } from "./api.js";
import { el, replace } from "./dom.js";

const MAX_SHOWN = 500;
const AUTO_OPEN = 3;

function decodeBytes(base64) {
  const binary = atob(base64);
  const hex = [...binary.slice(0, 32)].map((c) => c.charCodeAt(0).toString(16).padStart(2, "0"));
  return `${binary.length} bytes: ${hex.join(" ")}${binary.length > 32 ? " …" : ""}`;
}

function streamPanel(runId, namespace, onError) {
  const list = el("ol", { class: "chunks", start: 0 });
  const text = el("pre", { class: "stream-text", hidden: true, tabindex: "0" });
  const state = el("span", { class: "muted small", role: "status" }, "connecting…");
  const panel = el(
    "section",
    { class: "stream", dataset: { namespace }, "aria-label": `Stream ${namespace}` },
    el("h3", {}, el("span", { class: "mono" }, namespace), " ", state),
    text,
    list,
  );
  let count = 0;
  let allStrings = true;
  let joined = "";

  const subscription = subscribe(
    `runs/${encodeURIComponent(runId)}/stream`,
    { namespace, start: 0 },
    {
      onOpen() {
        if (!count) state.textContent = "live, no chunks yet";
      },
      onEvent(message) {
        count += 1;
        let shown;
        if (message.event === "bytes") {
          allStrings = false;
          shown = decodeBytes(message.data);
        } else {
          const value = JSON.parse(message.data);
          if (typeof value === "string") joined += value;
          else allStrings = false;
          shown = JSON.stringify(value);
        }
        const index = message.id ?? String(count - 1);
        list.append(el("li", { value: index, dataset: { index } }, el("code", {}, shown)));
        if (list.children.length > MAX_SHOWN) list.firstElementChild.remove();
        text.hidden = !allStrings;
        text.textContent = joined;
        state.textContent = `${count} chunk${count === 1 ? "" : "s"}, live`;
      },
      onEnd() {
        state.textContent = `${count} chunk${count === 1 ? "" : "s"}, ended`;
        panel.dataset.ended = "true";
      },
      onError(error) {
        state.textContent = "unavailable";
        onError(error);
      },
    },
  );
  return { panel, close: () => subscription.close() };
}

/**
 * The streams section of a run page. `add(namespace)` opens a namespace once; with
 * `{auto: true}` (a namespace the log names), only while few are open.
 */
export function streamsSection(runId, onError) {
  const panels = new Map();
  const container = el("div", { class: "streams" });
  const input = el("input", { id: "stream-namespace", type: "text", placeholder: "namespace", required: true });
  const form = el(
    "form",
    {
      class: "inline",
      onsubmit: (event) => {
        event.preventDefault();
        if (input.value.trim()) add(input.value.trim());
        input.value = "";
      },
    },
    el("label", { for: "stream-namespace" }, "Open another namespace"),
    input,
    el("button", { type: "submit" }, "Open"),
  );

  // A browser allows six connections to a server: beyond AUTO_OPEN live streams, a
  // namespace found in the log waits for a click.
  function add(namespace, { auto = false } = {}) {
    if (panels.has(namespace)) return;
    if (auto && panels.size >= AUTO_OPEN) {
      const placeholder = el(
        "section",
        { class: "stream", dataset: { namespace } },
        el("h3", {}, el("span", { class: "mono" }, namespace)),
        el("button", { type: "button", onclick: () => open(namespace, placeholder) }, "Read this stream"),
      );
      panels.set(namespace, { panel: placeholder, close: () => {} });
      container.append(placeholder);
      return;
    }
    open(namespace, null);
  }

  function open(namespace, placeholder) {
    const panel = streamPanel(runId, namespace, onError);
    panels.set(namespace, panel);
    if (placeholder) placeholder.replaceWith(panel.panel);
    else container.append(panel.panel);
  }

  return {
    node: el("div", {}, container, form),
    add,
    // Reopens every namespace from its start (after a restart, the run writes again).
    reopen() {
      const names = [...panels.keys()];
      for (const panel of panels.values()) panel.close();
      panels.clear();
      replace(container);
      names.forEach((name) => add(name, { auto: true }));
    },
    close() {
      for (const panel of panels.values()) panel.close();
    },
  };
}
