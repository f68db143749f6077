// Audit: the hash chain's verification result (`GET /api/audit/verify`) and the log, filtered
// and paged as `GET /api/audit` does it (time order; "Next page" follows `next`).
//
// URL: /ui/audit[?path=&actor=&action=&outcome=&since=&until=&limit=&after=]

import { get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, errorBox, field, fill, h, heading, table, time } from "../dom.js";

const FILTERS = ["path", "actor", "action", "outcome", "since", "until", "limit"];

// <input type=datetime-local> speaks local time without a zone; the API takes RFC 3339.
function toLocalInput(rfc3339) {
  if (!rfc3339) return "";
  const date = new Date(rfc3339);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60000);
  return local.toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

export async function render(main, { params, ctx }) {
  const filters = Object.fromEntries(FILTERS.map((n) => [n, params.get(n) || ""]));
  if (!filters.limit) filters.limit = "100";
  const after = params.get("after") || "";
  const c = {
    path: field("Path (and below)", h("input", { name: "path", value: filters.path, spellcheck: "false", placeholder: "/myapp" })),
    actor: field("Actor", h("input", { name: "actor", value: filters.actor })),
    action: field("Action", h("input", { name: "action", value: filters.action, placeholder: "config.put" })),
    outcome: field("Outcome", h("select", { name: "outcome" }, ["", "ok", "denied", "failed"].map((o) =>
      h("option", { value: o, selected: o === filters.outcome }, o || "any")))),
    since: field("Since", h("input", { name: "since", type: "datetime-local", value: toLocalInput(filters.since) })),
    until: field("Until", h("input", { name: "until", type: "datetime-local", value: toLocalInput(filters.until) })),
    limit: field("Per page", h("input", { name: "limit", type: "number", min: "1", max: "1000", value: filters.limit })),
  };
  const form = h("form", { class: "filters", role: "search", "aria-label": "Filter the audit log" },
    Object.values(c).map((x) => x.wrapper), h("button", { type: "submit" }, "Filter"),
    h("a", { href: "/ui/audit", class: "button secondary" }, "Clear"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("/ui/audit" + query({
      path: c.path.control.value.trim(), actor: c.actor.control.value.trim(), action: c.action.control.value.trim(),
      outcome: c.outcome.control.value, since: fromLocalInput(c.since.control.value),
      until: fromLocalInput(c.until.control.value), limit: c.limit.control.value,
    }));
  });
  const chain = h("div", { "aria-live": "polite" });
  const log = h("div");
  fill(
    main,
    heading("Audit log"),
    h("section", { "aria-label": "Chain verification" }, h("h2", {}, "Hash chain"), chain),
    h("section", { "aria-label": "Records" }, h("h2", {}, "Records"), form, log),
  );
  await Promise.all([verify(chain), records(log, filters, after)]);
  if (ctx.gone) return;
}

async function verify(box) {
  try {
    const report = await get("/api/audit/verify");
    fill(box,
      report.ok
        ? h("p", { class: "ok-line", "data-verified": "true" }, `✔ The chain verifies: ${report.sealed} sealed record(s) checked, no problem.`)
        : h("p", { class: "bad-line", "data-verified": "false" }, `✘ The chain does not verify: ${report.problems.length} problem(s) in ${report.sealed} sealed record(s).`),
      report.problems.length
        ? table("Problems", [
          { label: "Seq", cell: (p) => p.seq ?? "—" },
          { label: "Record", cell: (p) => h("code", {}, p.key || "—") },
          { label: "Problem", cell: (p) => p.message },
        ], report.problems)
        : null,
      h("p", { class: "hint" }, "Records join the chain a few seconds after they are written."));
  } catch (error) {
    fill(box, errorBox(error));
  }
}

async function records(box, filters, after) {
  try {
    const page = await get("/api/audit" + query({ ...filters, after }));
    const next = page.next
      ? h("a", { class: "button secondary", href: "/ui/audit" + query({ ...filters, after: page.next }) }, "Next page")
      : h("p", { class: "hint" }, "End of the log.");
    fill(box,
      page.records.length
        ? table("Audit records, oldest first", [
          { label: "Time", cell: (r) => time(r.time) },
          { label: "Actor", cell: (r) => r.actor || "—" },
          { label: "Action", cell: (r) => h("code", {}, r.action) },
          { label: "Path", cell: (r) => (r.path ? h("code", {}, r.path) : "—") },
          { label: "Versions", cell: (r) => versions(r) },
          { label: "Outcome", cell: (r) => badge(r.outcome) },
          { label: "Detail", cell: (r) => r.detail || (r.changes ? `${r.changes.length} change(s)` : "—") },
          { label: "Source", cell: (r) => r.source || "—" },
          { label: "Request", cell: (r) => h("code", {}, r.request_id || "—") },
        ], page.records)
        : h("p", {}, "No record matches."),
      h("div", { class: "row" }, after ? h("a", { class: "button secondary", href: "/ui/audit" + query(filters) }, "First page") : null, next));
  } catch (error) {
    fill(box, errorBox(error));
  }
}

function versions(r) {
  const before = r.version_before ?? null;
  const after = r.version_after ?? null;
  if (before === null && after === null) return "—";
  return `${before ?? "∅"} → ${after ?? "∅"}`;
}
