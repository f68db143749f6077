// Environments: every environment with its parent and variables, and for a path its effective
// value in each environment with provenance — which layer (base or an environment's override)
// each key came from — as `GET /api/config/{path}?env=E&explain=true` answers it.
//
// URL: /ui/environments[?path=/myapp/db]

import { ApiError, configUrl, get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, code, errorBox, field, fill, h, heading, table, time } from "../dom.js";

export async function render(main, { params, ctx }) {
  const typed = params.get("path") || "";
  const path = typed ? "/" + typed.split("/").filter((s) => s !== "").join("/") : "";
  const { environments } = await get("/api/environments");
  if (ctx.gone) return;

  const pathField = field("Config path", h("input", { name: "path", value: path, spellcheck: "false", placeholder: "/myapp/database" }));
  const form = h("form", { class: "filters", role: "search" }, pathField.wrapper,
    h("button", { type: "submit" }, "Show effective values"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    navigate("/ui/environments" + query({ path: pathField.control.value.trim() }));
  });
  const effective = h("div", { class: "effective" });
  fill(
    main,
    heading("Environments"),
    h("section", { "aria-label": "Environments and variables" },
      h("h2", {}, "Environments"),
      table("Environments, their parents and variables", [
        { label: "Name", cell: (e) => h("strong", {}, e.name) },
        { label: "Parent", cell: (e) => e.parent || "—" },
        { label: "Description", cell: (e) => e.description || "—" },
        { label: "Variables", cell: (e) => variables(e.variables) },
        { label: "Version", cell: (e) => e.version },
        { label: "Updated", cell: (e) => time(e.updated_at) },
      ], environments)),
    h("section", { "aria-label": "Effective values" }, h("h2", {}, "Effective value per environment"), form, effective),
  );
  if (path) await showEffective(effective, path, environments, ctx);
}

function variables(vars) {
  const names = Object.keys(vars || {});
  if (!names.length) return h("span", { class: "hint" }, "none");
  return h("dl", { class: "meta" }, names.map((n) => [h("dt", {}, h("code", {}, n)), h("dd", {}, h("code", {}, vars[n]))]));
}

// Environments ordered parents first, so the chain reads top-down.
function ordered(environments) {
  const depth = (e, seen = new Set()) => {
    if (!e.parent || seen.has(e.name)) return 0;
    seen.add(e.name);
    const parent = environments.find((p) => p.name === e.parent);
    return parent ? 1 + depth(parent, seen) : 1;
  };
  return [...environments].sort((a, b) => depth(a) - depth(b) || a.name.localeCompare(b.name));
}

async function read(path, env) {
  try {
    return { body: await get(configUrl(path, query({ env, explain: env ? "true" : undefined }))) };
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) return { absent: true };
    return { error };
  }
}

async function showEffective(box, path, environments, ctx) {
  const envs = ordered(environments);
  const reads = await Promise.all([read(path, ""), ...envs.map((e) => read(path, e.name))]);
  if (ctx.gone) return;
  const cards = [card("Base value (no environment)", path, null, reads[0])];
  envs.forEach((e, i) => cards.push(card(e.name + (e.parent ? ` (inherits ${e.parent})` : ""), path, e.name, reads[i + 1])));
  fill(box, h("div", { class: "grid2" }, cards));
}

function card(title, path, env, result) {
  const parts = [h("h3", {}, title)];
  if (result.error) {
    parts.push(errorBox(result.error));
  } else if (result.absent) {
    parts.push(h("p", {}, badge("absent", "deleted"), ` No value at ${path}` + (env ? ` in ${env}.` : ".")));
    if (env) parts.push(overrideLink(path, env, false));
  } else if (result.body && "children" in result.body && !("value" in result.body)) {
    parts.push(h("p", { class: "hint" }, `${path} is a prefix: ${result.body.children.join(", ") || "nothing"} below it.`));
  } else {
    const body = result.body;
    parts.push(code(body.value));
    if (env) {
      parts.push(h("p", { class: "hint" }, "Decided by ", h("code", {}, body.source || path), `, version ${body.version}.`));
      parts.push(provenance(env, body.provenance || {}));
      parts.push(overrideLink(path, env, body.source === `/env/${env}${path}`));
    } else {
      parts.push(h("p", { class: "hint" }, `Version ${body.version}, updated `, time(body.updated_at), "."));
    }
  }
  return h("div", { class: "panel", "data-env": env || "" }, parts);
}

// Where this environment's own layer of the path is edited: its override, or a new one.
function overrideLink(path, env, exists) {
  const target = `/ui/config/env/${encodeURIComponent(env)}${path}`;
  return h("p", {}, exists
    ? h("a", { href: target }, `Edit ${env}'s override`)
    : h("a", { href: target + "?view=new" }, `Override in ${env}`));
}

function provenance(env, keys) {
  const rows = Object.entries(keys).map(([pointer, from]) => ({ pointer, ...from }));
  return table(`Where each key of ${env} comes from`, [
    { label: "Key", cell: (r) => h("code", {}, r.pointer || "(whole value)") },
    { label: "Layer", cell: (r) => (r.environment ? badge(r.environment, "env") : badge("base", "base")) },
    { label: "From", cell: (r) => h("a", { href: "/ui/config" + r.path }, r.path) },
    { label: "Version", cell: (r) => r.version },
  ], rows);
}
