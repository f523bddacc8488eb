// Small page behaviours, kept out of the HTML because the CSP forbids inline script.
"use strict";

// <form data-confirm="..."> asks before it submits (Cancel, Delete).
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form instanceof HTMLFormElement && form.dataset.confirm && !window.confirm(form.dataset.confirm)) {
    event.preventDefault();
  }
}, true);

// A run page: each live update of the header sends "gnomon:tick"; the task table and the
// graph reload on "gnomon:changed", sent while the run is active and once when its status
// changes (a finished run's tasks do not change).
let runStatus = null;
document.addEventListener("DOMContentLoaded", () => {
  const header = document.getElementById("run-header");
  runStatus = header ? header.dataset.status : null;
});
document.addEventListener("gnomon:tick", () => {
  const header = document.getElementById("run-header");
  if (!header) return;
  const changed = header.dataset.status !== runStatus;
  runStatus = header.dataset.status;
  if (changed || header.dataset.active === "true") {
    document.body.dispatchEvent(new CustomEvent("gnomon:changed"));
  }
});

// A followed log shows its newest lines.
function showLogTails() {
  document.querySelectorAll("pre.log").forEach((pre) => { pre.scrollTop = pre.scrollHeight; });
}
document.addEventListener("DOMContentLoaded", showLogTails);
document.addEventListener("htmx:afterSettle", showLogTails);

// A polled list whose rows carry keys (<tbody data-keyed-by="data-workflow-id">) is updated
// row by row: unchanged rows stay the same elements, so a link being clicked, hovered or
// selected is not swapped out from under the pointer every few seconds.
document.addEventListener("htmx:beforeSwap", (event) => {
  const target = event.detail.target;
  const attribute = target && target.dataset.keyedBy;
  if (!attribute || !event.detail.xhr || event.detail.xhr.status !== 200) return;
  event.detail.shouldSwap = false;
  const template = document.createElement("template");
  template.innerHTML = event.detail.serverResponse;
  const current = new Map();
  for (const row of Array.from(target.children)) {
    if (row.getAttribute(attribute)) current.set(row.getAttribute(attribute), row);
  }
  const placed = new Set();
  let previous = null;
  for (const row of Array.from(template.content.children)) {
    const existing = current.get(row.getAttribute(attribute));
    const node = existing && existing.outerHTML === row.outerHTML ? existing : row;
    const slot = previous ? previous.nextSibling : target.firstChild;
    if (node !== slot) target.insertBefore(node, slot);
    placed.add(node);
    previous = node;
  }
  for (const row of Array.from(target.children)) if (!placed.has(row)) row.remove();
});

// The database is unavailable: a poll's 503 carries a banner the server retargeted to the
// page's #unavailable slot (htmx does not swap error answers by itself). The part that
// polled keeps its last content, polling goes on, and the first answer that works again
// hides the banner.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  const target = event.detail.target;
  if (xhr && xhr.status === 503 && target && target.id === "unavailable") {
    event.detail.shouldSwap = true;
    event.detail.isError = false;
  }
});
document.addEventListener("htmx:afterRequest", (event) => {
  const xhr = event.detail.xhr;
  if (!xhr || xhr.status < 200 || xhr.status >= 400) return;
  const banner = document.getElementById("unavailable");
  if (banner) banner.hidden = true;
});
