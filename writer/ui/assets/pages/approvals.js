// Approvals: change requests waiting for approval (`GET /api/changes?status=pending`), each
// with its changes and diffs, approved, rejected or cancelled from here. The server decides who
// may: an approver needs `approve` on every path and cannot be the author (a 403 or 409 says so).
//
// URL: /ui/approvals[?status=pending|committed|rejected|cancelled|expired|failed]

import { api, get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, code, errorBox, field, fill, h, heading } from "../dom.js";

const STATUSES = ["pending", "committed", "rejected", "cancelled", "expired", "failed"];

export async function render(main, { params, ctx }) {
  const status = params.get("status") || "pending";
  const statusField = field("Status", h("select", { name: "status" }, STATUSES.map((s) =>
    h("option", { value: s, selected: s === status }, s))));
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter change requests" },
    statusField.wrapper, h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("/ui/approvals" + query({ status: statusField.control.value }));
  });
  const list = h("div");
  fill(main, heading("Approvals"), form, list);
  const body = await get("/api/changes" + query({ status }));
  if (ctx.gone) return;
  fill(list, body.changes.length
    ? body.changes.map((c) => request(c, ctx))
    : h("p", {}, status === "pending" ? "Nothing waits for approval." : `No ${status} change request.`));
}

const when = (seconds) => new Date(seconds * 1000).toLocaleString();

function request(c, ctx) {
  const message = h("div");
  const decide = async (action) => {
    fill(message);
    try {
      await api("POST", `/api/changes/${encodeURIComponent(c.id)}/${action}`);
      ctx.rerender();
    } catch (error) {
      fill(message, errorBox(error));
    }
  };
  return h("section", { "aria-label": `Change request ${c.id}` },
    h("h2", {}, "Change ", h("code", {}, c.id), " ", badge(c.status)),
    h("p", {}, `By ${c.author}, ${when(c.created_at)}; expires ${when(c.expires_at)}. `,
      `Approvals: ${c.approvals.length} of ${c.approvals_required}`,
      c.approvals.length ? ` (${c.approvals.join(", ")})` : "", "."),
    c.error ? h("p", { class: "bad-line" }, c.error) : null,
    h("ul", {}, c.changes.map((change, i) => h("li", {},
      h("strong", {}, change.op), " ", h("a", { href: "/ui/config" + change.path }, h("code", {}, change.path)),
      c.diffs[i] ? code(c.diffs[i]) : null))),
    c.status === "pending"
      ? h("div", { class: "row" },
        h("button", { type: "button", onclick: () => decide("approve") }, "Approve"),
        h("button", { type: "button", class: "secondary", onclick: () => decide("reject") }, "Reject"),
        h("button", { type: "button", class: "secondary", onclick: () => decide("cancel") }, "Cancel request"))
      : null,
    message);
}
