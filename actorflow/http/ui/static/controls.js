// The controls of a run: pause, resume, terminate, restart from a step, send an event.
// Destructive ones ask first; every API error goes to onError.

import { api } from "./api.js";
import { FINAL, confirmAction, el, replace } from "./dom.js";

export function controlsSection(runId, { onError, onDone }) {
  const path = (action) => `runs/${encodeURIComponent(runId)}/${action}`;
  let busy = false;

  async function act(action, body) {
    if (busy) return;
    busy = true;
    buttons.forEach((b) => (b.disabled = true));
    try {
      await api(path(action), { method: "POST", body });
      onDone(action);
    } catch (error) {
      onError(error);
    } finally {
      busy = false;
      buttons.forEach((b) => (b.disabled = false));
      if (lastRun) update(lastRun);
    }
  }

  const pause = el("button", { type: "button", id: "control-pause", onclick: () => act("pause") }, "‖ Pause");
  const resume = el("button", { type: "button", id: "control-resume", onclick: () => act("resume") }, "▶ Resume");
  // A destructive control: it says what will happen and waits for a confirmation.
  const confirmed = (id, label, title, describe, action) =>
    el(
      "button",
      {
        type: "button",
        id,
        class: "danger",
        onclick: async () => {
          const [text, body] = describe();
          if (await confirmAction(title, text, label.split(" ")[1])) act(action, body);
        },
      },
      label,
    );
  const terminate = confirmed("control-terminate", "■ Terminate", "Terminate this run?", () => [
    `Run ${runId} stops for good: its running steps and unfinished children are cancelled.`,
    undefined,
  ], "terminate");
  const fromStep = el("select", { id: "restart-from" });
  const restart = confirmed("control-restart", "↻ Restart", "Restart this run?", () => {
    const step = fromStep.value || null;
    const where = step ? `from its first step named “${step}”, keeping the results before it` : "from the start";
    return [`Run ${runId} runs again ${where}.`, { from_step: step }];
  }, "restart");

  const eventType = el("input", { id: "event-type", name: "type", type: "text", required: true, placeholder: "approval", autocomplete: "off" });
  const payload = el("textarea", { id: "event-payload", name: "payload", rows: 3, spellcheck: "false", placeholder: "{\"ok\": true}" });
  const payloadHelp = el("span", { id: "event-payload-help", class: "muted small" }, "Any JSON value; empty sends null.");
  payload.setAttribute("aria-describedby", "event-payload-help");
  const send = el("button", { type: "submit", id: "event-send" }, "Send event");
  const eventForm = el(
    "form",
    {
      class: "event-form",
      "aria-label": "Send an event",
      onsubmit: async (event) => {
        event.preventDefault();
        let value = null;
        if (payload.value.trim()) {
          try {
            value = JSON.parse(payload.value);
          } catch (error) {
            payload.setAttribute("aria-invalid", "true");
            onError(`The payload is not valid JSON: ${error.message}`);
            payload.focus();
            return;
          }
        }
        payload.removeAttribute("aria-invalid");
        await act(`events/${encodeURIComponent(eventType.value.trim())}`, value);
      },
    },
    el("div", { class: "field" }, el("label", { for: "event-type" }, "Event type"), eventType),
    el("div", { class: "field grow" }, el("label", { for: "event-payload" }, "Payload (JSON)"), payload, payloadHelp),
    send,
  );

  const buttons = [pause, resume, terminate, restart, send];
  let lastRun = null;

  function update(run) {
    lastRun = run;
    if (busy) return;
    const final = FINAL.has(run.status);
    const paused = run.status === "paused" || run.status === "pausing";
    pause.disabled = final || paused;
    resume.disabled = !paused;
    terminate.disabled = final;
    send.disabled = final;
    const names = [...new Set(run.steps.map((s) => s.name))];
    const chosen = fromStep.value;
    if (fromStep.options.length !== names.length + 1) {
      replace(
        fromStep,
        el("option", { value: "" }, "the start"),
        names.map((n) => el("option", { value: n, selected: n === chosen }, `step ${n}`)),
      );
    }
  }

  const node = el(
    "section",
    { class: "card controls", "aria-labelledby": "controls-title" },
    el("h2", { id: "controls-title", class: "sr-only" }, "Controls"),
    el(
      "div",
      { class: "toolbar", role: "toolbar", "aria-label": "Run controls" },
      pause,
      resume,
      terminate,
      el("span", { class: "inline" }, el("label", { for: "restart-from" }, "Restart from"), fromStep, restart),
    ),
    eventForm,
  );
  return { node, update };
}
