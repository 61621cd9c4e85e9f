// The dashboard's entry point: a hash router over the pages.

import { changeToken, hasToken } from "./api.js";
import { runPage } from "./run.js";
import { runsPage } from "./runs.js";
import { schedulesPage } from "./schedules.js";
import { workflowsPage } from "./workflows.js";

const main = document.getElementById("main");
let dispose = () => {};

function route() {
  const hash = location.hash || "#/runs";
  const [path, query = ""] = hash.slice(1).split("?");
  const params = new URLSearchParams(query);
  dispose();
  let section = "runs";
  const run = /^\/runs\/(.+)$/.exec(path);
  if (run) {
    dispose = runPage(main, decodeURIComponent(run[1]));
  } else if (path === "/workflows") {
    section = "workflows";
    dispose = workflowsPage(main);
  } else if (path === "/schedules") {
    section = "schedules";
    dispose = schedulesPage(main);
  } else {
    dispose = runsPage(main, params);
  }
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === section) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${run ? "Run" : section[0].toUpperCase() + section.slice(1)} · actorflow`;
}

const tokenButton = document.getElementById("token-button");
tokenButton.hidden = !hasToken();
tokenButton.addEventListener("click", () => changeToken().then(route));

window.addEventListener("hashchange", () => {
  route();
  main.focus({ preventScroll: true });
});
route();
