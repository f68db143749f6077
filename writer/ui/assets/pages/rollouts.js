// Rollouts: start one after its dry run (`POST …/rollout?dry_run=true`: the rollout checked as
// creation would check it, the instances each stage would hold, and the candidate's impact
// preview as `POST /api/preview` answers it — what each environment's effective value becomes,
// which connected clients get an event), the list, and one rollout's progress per stage with
// advance, pause, resume and rollback. Start sends the dry run's id, so the stages hold exactly
// the instances shown (membership hashes the id).
//
// URLs: /ui/rollouts[?path=&status=]   start + list
//       /ui/rollouts/<id>              one rollout (refreshes every 3 s while it runs)

import { api, ApiError, configUrl, get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, code, errorBox, field, fill, h, heading, setFieldError, table, time } from "../dom.js";

export async function render(main, { rest, params, ctx }) {
  const id = rest.split("/").filter((s) => s !== "")[0];
  if (id) return detail(main, id, ctx);
  return overview(main, params, ctx);
}

async function overview(main, params, ctx) {
  const status = params.get("status") || "";
  const list = h("div");
  const statusField = field("Status", h("select", { name: "status" },
    ["", "in_progress", "paused", "completed", "rolled_back"].map((s) =>
      h("option", { value: s, selected: s === status }, s || "any"))));
  const filter = h("form", { class: "filters", role: "search", "aria-label": "Filter rollouts" },
    statusField.wrapper, h("button", { type: "submit" }, "Filter"));
  filter.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("/ui/rollouts" + query({ status: statusField.control.value, path: params.get("path") }));
  });
  fill(
    main,
    heading("Rollouts"),
    h("section", { "aria-label": "Start a rollout" }, h("h2", {}, "Start a rollout"), await starter(params.get("path") || "")),
    h("section", { "aria-label": "Rollouts" }, h("h2", {}, "Rollouts"), filter, list),
  );
  let shown = null;
  const refresh = async () => {
    try {
      const body = await get("/api/rollouts" + query({ status }));
      // Redrawn only when something changed, so a refresh keeps the keyboard focus.
      const text = JSON.stringify(body);
      if (text === shown) return;
      shown = text;
      fill(list, body.rollouts.length
        ? table("Rollouts, newest first", [
          { label: "Rollout", cell: (r) => h("a", { href: `/ui/rollouts/${r.rollout_id}` }, r.rollout_id) },
          { label: "Path", cell: (r) => h("code", {}, r.path) },
          { label: "Status", cell: (r) => badge(r.status) },
          { label: "Stage", cell: (r) => `${r.stage} of ${r.stages.length} (${r.percent} %)` },
          { label: "Progress", cell: (r) => `${Number(r.progress).toFixed(0)} % applied` },
          { label: "Health", cell: (r) => (r.healthy ? badge("healthy") : badge("unhealthy")) },
          { label: "Created", cell: (r) => [time(r.created_at), " by ", r.created_by] },
        ], body.rollouts)
        : h("p", { class: "hint" }, "No rollout."));
    } catch (error) {
      shown = null;
      fill(list, errorBox(error));
    }
  };
  await refresh();
  ctx.every(5000, refresh);
}

// The form: path, candidate value, stages and gates; "Preview impact" first, "Start" after.
async function starter(path) {
  let current = null;
  if (path) {
    current = await get(configUrl(path)).catch(() => null);
  }
  const f = {
    path: field("Path", h("input", { name: "path", value: path, required: true, spellcheck: "false", placeholder: "/myapp/feature" })),
    value: field("Candidate value", h("textarea", { name: "value", rows: "5", class: "mono", spellcheck: "false" }),
      "JSON for the json format; YAML or plain text for the others."),
    format: field("Format", h("select", { name: "format" }, ["json", "yaml", "text"].map((v) =>
      h("option", { value: v, selected: v === (current?.format || "json") }, v)))),
    stages: field("Stages (percent)", h("input", { name: "stages", value: "10,50,100", spellcheck: "false" }),
      "Strictly increasing, ending at 100."),
    interval: field("Interval", h("input", { name: "interval", value: "", placeholder: "5m" }),
      "Between healthy stages; empty: advance by hand."),
    onUnhealthy: field("When unhealthy", h("select", { name: "on_unhealthy" },
      ["rollback", "pause"].map((v) => h("option", { value: v }, v)))),
    ackTimeout: field("Ack timeout", h("input", { name: "ack_timeout", value: "30s" })),
    canary: field("Canary instances", h("input", { name: "canary", placeholder: "app-1, app-2" }), "Optional: a first stage of these."),
  };
  if (current) f.value.control.value = current.format === "json" ? JSON.stringify(current.value, null, 2) : current.value;
  const preview = h("div", { class: "preview-result", "aria-live": "polite" });
  const previewButton = h("button", { type: "submit" }, "Preview impact");
  const start = h("button", { type: "button", disabled: true }, "Start rollout");
  const formError = h("div");
  let previewed = null; // the body the preview was made of; Start sends exactly it

  const form = h("form", { class: "editor", novalidate: true },
    h("div", { class: "grid2" },
      h("div", {}, f.path.wrapper, f.value.wrapper, f.format.wrapper),
      h("div", {}, f.stages.wrapper, f.interval.wrapper, f.onUnhealthy.wrapper, f.ackTimeout.wrapper, f.canary.wrapper)),
    formError,
    h("div", { class: "row" }, previewButton, start),
    preview);
  // Any edit makes the preview stale: Start waits for a new one.
  form.addEventListener("input", () => {
    previewed = null;
    start.disabled = true;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    Object.values(f).forEach((x) => setFieldError(x, null));
    fill(formError);
    const built = build(f);
    if (!built) return;
    previewButton.disabled = true;
    try {
      const result = await api("POST", configUrl(built.path, "/rollout?dry_run=true"), built.body);
      previewed = { path: built.path, body: { ...built.body, id: result.body.rollout_id } };
      start.disabled = false;
      fill(preview, impact(result.body.preview), stagePlan(result.body));
    } catch (error) {
      fill(preview);
      showError(error, f, formError);
    } finally {
      previewButton.disabled = false;
    }
  });
  start.addEventListener("click", async () => {
    if (!previewed) return;
    start.disabled = true;
    try {
      const result = await api("POST", configUrl(previewed.path, "/rollout"), previewed.body);
      navigate(`/ui/rollouts/${result.body.rollout_id}`);
    } catch (error) {
      showError(error, f, formError);
    }
  });
  return form;
}

function build(f) {
  const path = "/" + f.path.control.value.split("/").filter((s) => s !== "").join("/");
  if (path === "/") {
    setFieldError(f.path, "Give the path to roll out.");
    return null;
  }
  const format = f.format.control.value;
  let value = f.value.control.value;
  if (format === "json") {
    try {
      value = JSON.parse(value);
    } catch (error) {
      setFieldError(f.value, "Not JSON: " + error.message);
      return null;
    }
  }
  const stages = f.stages.control.value.split(",").map((s) => s.trim()).filter(Boolean).map(Number);
  if (!stages.length || stages.some((s) => !Number.isInteger(s))) {
    setFieldError(f.stages, "Whole percentages separated by commas, such as 10,50,100.");
    return null;
  }
  const body = { value, format, stages, health: { on_unhealthy: f.onUnhealthy.control.value } };
  const interval = f.interval.control.value.trim();
  if (interval) body.interval = interval;
  const ack = f.ackTimeout.control.value.trim();
  if (ack) body.health.ack_timeout = ack;
  const canary = f.canary.control.value.split(",").map((s) => s.trim()).filter(Boolean);
  if (canary.length) body.canary = { instances: canary };
  return { path, body };
}

function showError(error, f, formError) {
  if (error instanceof ApiError && (error.status === 400 || error.status === 422)) {
    const message = error.message.toLowerCase();
    const violations = error.details && Array.isArray(error.details.violations) ? error.details.violations : null;
    const target = violations ? f.value
      : message.includes("stage") ? f.stages
      : message.includes("interval") ? f.interval
      : message.includes("ack_timeout") ? f.ackTimeout
      : message.includes("canary") ? f.canary
      : message.includes("path") ? f.path
      : f.value;
    setFieldError(target, violations
      ? h("span", {}, "The value is invalid:", h("ul", {}, violations.map((v) => h("li", {}, `${v.pointer || "(the whole value)"}: ${v.message}`))))
      : error.message);
    target.control.focus();
    return;
  }
  fill(formError, errorBox(error));
}

function impact(p) {
  const reach = p.clients || { total: 0, by_edge: {}, by_env: {}, by_label: {}, by_prefix: {} };
  const counts = (title, map) => {
    const entries = Object.entries(map || {});
    return entries.length ? h("p", {}, `${title}: `, entries.map(([k, n]) => h("code", {}, `${k} ${n}  `))) : null;
  };
  return h("div", { class: "panel", "data-testid": "impact" },
    h("h3", {}, "Impact preview"),
    h("p", {}, p.would === "commit"
      ? "Valid: a PUT of this value would commit."
      : `This path needs ${p.approvals_required} approval(s): a rollout cannot carry approvals.`),
    h("p", {}, `Environments reached: ${p.environments.join(", ") || "none"}. `,
      h("strong", {}, `${reach.total} connected client(s)`), " would get an event when it reaches them."),
    counts("By edge", reach.by_edge), counts("By environment", reach.by_env), counts("By label", reach.by_label),
    p.effective.length
      ? table("Effective values that would change", [
        { label: "Environment", cell: (e) => e.env || "base" },
        { label: "Before", cell: (e) => (e.before === null || e.before === undefined ? "—" : code(e.before)) },
        { label: "After", cell: (e) => (e.after === null || e.after === undefined ? "—" : code(e.after)) },
      ], p.effective)
      : h("p", {}, "No effective value would change."));
}

// The instances each stage would hold, as the dry run placed them.
function stagePlan(dry) {
  return h("div", { class: "panel", "data-testid": "stage-plan" },
    h("h3", {}, `Stages of ${dry.rollout_id}`),
    h("p", {}, `${dry.matching} connected instance(s) watch this path.`),
    table("Instances per stage (cumulative)", [
      { label: "Stage", cell: (s) => s.stage },
      { label: "Kind", cell: (s) => s.kind },
      { label: "Percent", cell: (s) => (s.percent === null || s.percent === undefined ? "—" : `${s.percent} %`) },
      { label: "Instances", cell: (s) => s.count },
      { label: "Named", cell: (s) => (s.instances.length ? s.instances.map((i) => h("code", {}, i + " ")) : "—") },
    ], dry.stages));
}

const STEERING = {
  in_progress: ["advance", "pause", "rollback"],
  paused: ["resume", "advance", "rollback"],
};

async function detail(main, id, ctx) {
  const box = h("div");
  const message = h("div");
  fill(main, heading("Rollout ", h("span", { class: "path" }, id)),
    h("p", {}, h("a", { href: "/ui/rollouts" }, "All rollouts")), message, box);
  let shown = null;
  const refresh = async () => {
    try {
      const r = await get(`/api/rollouts/${encodeURIComponent(id)}`);
      // Redrawn only when something changed, so a refresh does not take the keyboard focus
      // from a button.
      const text = JSON.stringify(r);
      if (text === shown) return;
      shown = text;
      fill(box, ...view(r, message, refresh));
    } catch (error) {
      shown = null;
      fill(box, errorBox(error));
    }
  };
  await refresh();
  ctx.every(3000, refresh);
}

function view(r, message, refresh) {
  const steer = async (action) => {
    fill(message);
    try {
      await api("POST", `/api/rollouts/${encodeURIComponent(r.rollout_id)}/${action}`);
      fill(message, h("p", { class: "notice", role: "status" }, `${action}: done.`));
    } catch (error) {
      fill(message, errorBox(error));
    }
    await refresh();
  };
  const actions = STEERING[r.status] || [];
  const stageClass = (s) => (r.status === "completed" || s.stage < r.stage ? "done" : s.stage === r.stage && !["rolled_back"].includes(r.status) ? "current" : null);
  return [
    h("section", { "aria-label": "Status" },
      h("p", {}, "Path ", h("a", { href: "/ui/config" + r.path }, h("code", {}, r.path)), " · ", badge(r.status),
        " · ", r.healthy ? badge("healthy") : badge("unhealthy"), ` · stable version ${r.stable_version}`,
        r.completed_version ? ` · completed as version ${r.completed_version}` : ""),
      h("h2", {}, "Stages"),
      h("ol", { class: "stages", "aria-label": "Stages" }, r.stages.map((s) =>
        h("li", { class: stageClass(s), "aria-current": s.stage === r.stage && r.status === "in_progress" ? "step" : null },
          `Stage ${s.stage}`, h("br"), `${s.percent} %`))),
      h("label", { for: "rollout-progress" }, `Applied by ${Number(r.progress).toFixed(0)} % of ${r.matching} matching instance(s)`),
      h("progress", { id: "rollout-progress", max: "100", value: String(r.progress) }),
      h("dl", { class: "meta" },
        [["Members", r.members], ["Acknowledged", r.acked], ["Pending", r.pending], ["NACKed", r.nacked],
          ["Disconnected", r.disconnected], ["Next stage at", r.next_stage_at ? time(r.next_stage_at) : "by hand"],
          ["Halted", r.halted ? JSON.stringify(r.halted) : "—"]]
          .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      actions.length
        ? h("div", { class: "row actions" }, actions.map((a) =>
          h("button", { type: "button", class: a === "rollback" ? "danger" : a === "advance" ? null : "secondary", onclick: () => steer(a) },
            a[0].toUpperCase() + a.slice(1))))
        : null),
    h("section", { "aria-label": "Candidate" }, h("h2", {}, "Candidate value"), code(r.value)),
    h("section", { "aria-label": "Transitions" }, h("h2", {}, "Transitions"),
      table("Every transition, oldest first", [
        { label: "When", cell: (t) => time(t.at) },
        { label: "Status", cell: (t) => badge(t.status) },
        { label: "Stage", cell: (t) => t.stage },
        { label: "By", cell: (t) => t.by || "—" },
        { label: "Reason", cell: (t) => t.reason || "—" },
      ], r.transitions)),
  ];
}
