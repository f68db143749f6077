// Clients and edges: the application instances the edges report (status, edge, environment,
// labels, applied revision, lag, last error, propagation time), filtered as `/api/clients`
// filters them, disconnected ones highlighted; and every edge with its state and lag. Refreshes
// every 5 s while shown; the tables are no live regions, so a screen reader does not read them
// out again at every refresh.
//
// URL: /ui/clients[?prefix=&env=&status=&label=&edge=]

import { get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, errorBox, field, fill, h, heading, table, time } from "../dom.js";

const FILTERS = ["prefix", "env", "status", "label", "edge"];

export async function render(main, { params, ctx }) {
  const filters = Object.fromEntries(FILTERS.map((name) => [name, params.get(name) || ""]));
  const controls = {
    prefix: field("Prefix", h("input", { name: "prefix", value: filters.prefix, placeholder: "/myapp", spellcheck: "false" })),
    env: field("Environment", h("input", { name: "env", value: filters.env, placeholder: "prod" })),
    status: field("Status", h("select", { name: "status" },
      [["", "any"], ["connected", "connected"], ["disconnected", "disconnected"]].map(([v, l]) =>
        h("option", { value: v, selected: v === filters.status }, l)))),
    label: field("Label", h("input", { name: "label", value: filters.label, placeholder: "zone=eu-1" })),
    edge: field("Edge", h("input", { name: "edge", value: filters.edge })),
  };
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter clients" },
    Object.values(controls).map((c) => c.wrapper),
    h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/ui/clients", class: "button secondary" }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const next = Object.fromEntries(FILTERS.map((n) => [n, controls[n].control.value.trim()]));
    navigate("/ui/clients" + query(next));
  });
  const clients = h("div");
  const edges = h("div");
  const updated = h("p", { class: "hint" });
  fill(
    main,
    heading("Clients & edges"),
    updated,
    h("section", { "aria-label": "Clients" }, h("h2", {}, "Clients"), form, clients),
    h("section", { "aria-label": "Edges" }, h("h2", {}, "Edges"), edges),
  );
  const refresh = async () => {
    await Promise.all([showClients(clients, filters), showEdges(edges)]);
    fill(updated, "Updated ", new Date().toLocaleTimeString(), " · refreshes every 5 s");
  };
  await refresh();
  ctx.every(5000, refresh);
}

function ms(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(1)} ms`;
}

function labels(map) {
  const entries = Object.entries(map || {});
  return entries.length ? entries.map(([k, v]) => h("code", { class: "label" }, `${k}=${v} `)) : "—";
}

async function showClients(box, filters) {
  try {
    const clients = await get("/api/clients" + query(filters));
    const connected = clients.filter((c) => c.status === "connected").length;
    fill(
      box,
      h("p", {}, `${clients.length} client(s): ${connected} connected, ${clients.length - connected} disconnected.`),
      clients.length
        ? table("Application instances", [
          { label: "Instance", cell: (c) => h("strong", {}, c.id) },
          { label: "Status", cell: (c) => [badge(c.status), c.disconnected_at ? h("div", { class: "hint" }, "since ", time(c.disconnected_at)) : null] },
          { label: "Edge", cell: (c) => c.edge },
          { label: "Env", cell: (c) => c.env || "—" },
          { label: "Labels", cell: (c) => labels(c.labels) },
          { label: "Watching", cell: (c) => c.watching.map((p) => h("code", {}, p + " ")) },
          { label: "Applied rev.", cell: (c) => c.applied_revision },
          { label: "Lag", cell: (c) => `${c.lag} rev · ${Number(c.lag_seconds).toFixed(1)} s` },
          { label: "Propagation", cell: (c) => ms(c.propagation_ms) },
          { label: "End to end", cell: (c) => ms(c.end_to_end_ms) },
          { label: "NACKs", cell: (c) => c.nacks },
          { label: "Last error", cell: (c) => (c.last_error ? h("span", { class: "bad-line" }, `${c.last_error.path}: ${c.last_error.error}`) : "—") },
          { label: "SDK", cell: (c) => c.sdk || c.kind },
        ], clients, (c) => (c.status === "connected" ? null : "disconnected"))
        : h("p", { class: "hint" }, "No client matches."),
    );
  } catch (error) {
    fill(box, errorBox(error));
  }
}

async function showEdges(box) {
  try {
    const body = await get("/api/edges");
    fill(
      box,
      h("p", {}, `Writer ${body.writer.id} (${body.writer.role}) at revision ${body.revision}.`),
      body.edges.length
        ? table("Edges, their state and lag", [
          { label: "Edge", cell: (e) => h("strong", {}, e.id) },
          { label: "State", cell: (e) => badge(e.state) },
          { label: "Replication", cell: (e) => badge(e.replication) },
          { label: "Upstream", cell: (e) => e.upstream || "—" },
          { label: "Address", cell: (e) => e.address },
          { label: "Region", cell: (e) => e.region },
          { label: "Applied rev.", cell: (e) => e.applied_revision ?? "—" },
          { label: "Lag", cell: (e) => (e.lag === null || e.lag === undefined ? "—" : `${e.lag} rev`) },
        ], body.edges, (e) => (e.replication === "connected" ? null : "disconnected"))
        : h("p", { class: "hint" }, "No edge has connected to this writer."),
    );
  } catch (error) {
    fill(box, errorBox(error));
  }
}
