// The run page's task graph: dagre lays it out, this file draws it as SVG.
// It refetches the graph on "gnomon:changed" (see gnomon.js), lays it out again only when
// tasks appeared (a continuation expanded), and otherwise just recolours the nodes.
// Clicking a task shows its logs.
"use strict";

(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const container = document.getElementById("graph");
  if (!container || !window.dagre) return;
  let shape = null;
  let nodesById = new Map();
  let busy = false;

  function make(name, attributes, parent) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes || {})) element.setAttribute(key, value);
    if (parent) parent.appendChild(element);
    return element;
  }

  function short(text, limit) {
    return text.length > limit ? text.slice(0, limit - 1) + "…" : text;
  }

  function describe(node) {
    if (!node.statuses) return `${node.id}\n${node.status}`;
    const parts = Object.entries(node.statuses).map(([status, count]) => `${count} ${status}`);
    return `${node.label}\n${parts.join(", ")}`;
  }

  function showLogs(taskId) {
    if (!window.htmx) return;
    const url = `${container.dataset.logs}?task_id=${encodeURIComponent(taskId)}`;
    window.htmx.ajax("GET", url, { target: "#logs", swap: "outerHTML" });
  }

  function draw(data) {
    const graph = new window.dagre.graphlib.Graph({ compound: true });
    graph.setGraph({ rankdir: "LR", nodesep: 14, ranksep: 46, marginx: 12, marginy: 12 });
    graph.setDefaultEdgeLabel(() => ({}));
    for (const cluster of data.clusters) graph.setNode(cluster.id, { label: cluster.label, cluster: true });
    for (const cluster of data.clusters) if (cluster.parent) graph.setParent(cluster.id, cluster.parent);
    for (const node of data.nodes) {
      const label = short(node.label, 30);
      graph.setNode(node.id, { label, width: Math.max(64, label.length * 7.4 + 22), height: 30, node });
      if (node.cluster) graph.setParent(node.id, node.cluster);
    }
    for (const edge of data.edges) graph.setEdge(edge.source, edge.target, { kind: edge.kind });
    window.dagre.layout(graph);

    const size = graph.graph();
    const svg = make("svg", {
      width: Math.ceil(size.width), height: Math.ceil(size.height),
      viewBox: `0 0 ${Math.ceil(size.width)} ${Math.ceil(size.height)}`,
      role: "img", "aria-label": `Task graph of ${data.total} tasks`,
    });
    const defs = make("defs", {}, svg);
    const marker = make("marker", {
      id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
    }, defs);
    make("path", { d: "M0,0 L10,5 L0,10 z" }, marker);

    for (const cluster of data.clusters) {
      const box = graph.node(cluster.id);
      const group = make("g", { class: "cluster" }, svg);
      make("rect", { x: box.x - box.width / 2, y: box.y - box.height / 2, width: box.width, height: box.height, rx: 6 }, group);
      make("text", { x: box.x - box.width / 2 + 6, y: box.y - box.height / 2 + 12 }, group).textContent = cluster.label;
    }
    for (const edge of graph.edges()) {
      const route = graph.edge(edge);
      const group = make("g", { class: `edge ${route.kind || "data"}` }, svg);
      const points = route.points.map((point) => `${point.x.toFixed(1)},${point.y.toFixed(1)}`);
      make("path", { d: `M${points.join(" L")}`, "marker-end": "url(#arrow)" }, group);
    }
    nodesById = new Map();
    for (const id of graph.nodes()) {
      const box = graph.node(id);
      if (!box.node) continue;
      const group = make("g", {
        class: `node status-${box.node.status}`, "data-task-id": id, tabindex: 0,
        transform: `translate(${(box.x - box.width / 2).toFixed(1)},${(box.y - box.height / 2).toFixed(1)})`,
      }, svg);
      make("rect", { width: box.width, height: box.height, rx: 5 }, group);
      make("text", { x: box.width / 2, y: 19, "text-anchor": "middle" }, group).textContent = box.label;
      make("title", {}, group).textContent = describe(box.node);
      if (!data.collapsed) {
        group.addEventListener("click", () => showLogs(id));
        group.addEventListener("keydown", (event) => { if (event.key === "Enter") showLogs(id); });
      }
      nodesById.set(id, group);
    }
    container.replaceChildren();
    if (data.collapsed) {
      const legend = document.createElement("p");
      legend.className = "legend";
      legend.textContent = `${data.total} tasks, drawn as ${data.nodes.length} groups by function.`;
      container.appendChild(legend);
    }
    container.appendChild(svg);
  }

  function recolour(data) {
    for (const node of data.nodes) {
      const group = nodesById.get(node.id);
      if (!group) continue;
      group.setAttribute("class", `node status-${node.status}`);
      group.querySelector("title").textContent = describe(node);
    }
  }

  async function refresh() {
    if (busy) return;
    busy = true;
    try {
      const response = await fetch(container.dataset.src, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const data = await response.json();
      const next = JSON.stringify([data.nodes.map((node) => node.id), data.edges.length, data.collapsed]);
      if (next !== shape) {
        draw(data);
        shape = next;
      } else {
        recolour(data);
      }
      container.dataset.drawn = String(data.nodes.length);
    } catch (error) {
      container.dataset.error = String(error);
    } finally {
      busy = false;
    }
  }

  document.body.addEventListener("gnomon:changed", refresh);
  refresh();
})();
