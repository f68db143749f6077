// Alerts: what the writer's own rules say is firing now (`GET /api/alerts`): clients gone, a
// sharp drop of connected clients, edges down or lagging. Refreshes every 5 s while shown.
//
// URL: /ui/alerts

import { get } from "../api.js";
import { badge, errorBox, fill, h, heading, table, time } from "../dom.js";

export async function render(main, { ctx }) {
  const box = h("div");
  const updated = h("p", { class: "hint" });
  fill(main, heading("Alerts"), updated, box);
  const refresh = async () => {
    try {
      const { alerts } = await get("/api/alerts");
      fill(box, alerts.length
        ? table(`${alerts.length} alert(s) firing`, [
          { label: "Alert", cell: (a) => [badge("firing"), " ", h("strong", {}, a.name)] },
          { label: "Key", cell: (a) => h("code", {}, a.key) },
          { label: "Since", cell: (a) => time(a.since) },
          { label: "What", cell: (a) => a.summary },
          { label: "Edges", cell: (a) => (a.edges && a.edges.length ? a.edges.join(", ") : "—") },
          { label: "Clients", cell: (a) => clients(a) },
        ], alerts)
        : h("p", { class: "ok-line" }, "No alert is firing."));
      fill(updated, "Updated ", new Date().toLocaleTimeString(), " · refreshes every 5 s");
    } catch (error) {
      fill(box, errorBox(error));
    }
  };
  await refresh();
  ctx.every(5000, refresh);
}

function clients(a) {
  if (!a.clients || !a.clients.length) return "—";
  const more = a.clients_total > a.clients.length ? ` and ${a.clients_total - a.clients.length} more` : "";
  return [a.clients.map((id) => h("a", { href: "/ui/clients?" + new URLSearchParams({ status: "disconnected" }) }, id + " ")), more];
}
