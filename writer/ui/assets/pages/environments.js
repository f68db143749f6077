// Environments: every environment with its parent and variables (created and edited here with
// `PUT /api/environments/{name}`), and for a path its effective value in each environment with
// provenance — which layer (base or an environment's override) each key came from — as
// `GET /api/config/{path}?env=E&explain=true` answers it.
//
// URL: /ui/environments[?path=/myapp/db][&edit=NAME | &edit=]   (edit= alone: a new one)

import { api, ApiError, configUrl, get, query } from "../api.js";
import { navigate } from "../app.js";
import { badge, code, errorBox, field, fill, h, heading, setFieldError, table, time } from "../dom.js";

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
  const editing = params.has("edit") ? params.get("edit") : null;
  const here = (extra) => "/ui/environments" + query({ path, ...extra });
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
        { label: "", cell: (e) => h("a", { href: here({ edit: e.name }), "aria-label": `Edit ${e.name}` }, "Edit") },
      ], environments),
      editing === null
        ? h("p", {}, h("a", { href: here({ edit: "" }), class: "button secondary" }, "New environment"))
        : editor(environments.find((e) => e.name === editing) || null, environments, here)),
    h("section", { "aria-label": "Effective values" }, h("h2", {}, "Effective value per environment"), form, effective),
  );
  if (path) await showEffective(effective, path, environments, ctx);
}

// The form for one environment (`env` null: a new one). Variables are NAME=value lines.
function editor(env, environments, here) {
  const name = field("Name", h("input", { name: "name", value: env ? env.name : "", spellcheck: "false", autocomplete: "off" }));
  if (env) name.control.readOnly = true;
  const parent = field("Parent", h("select", { name: "parent" },
    h("option", { value: "" }, "none"),
    environments.filter((e) => !env || e.name !== env.name).map((e) =>
      h("option", { value: e.name, selected: env && env.parent === e.name }, e.name))));
  const description = field("Description", h("input", { name: "description", value: env?.description ?? "" }));
  const vars = field("Variables", h("textarea", { name: "variables", rows: "5", class: "mono", spellcheck: "false" }),
    "One NAME=value a line; ${NAME} in values resolves to it with resolve=true.");
  vars.control.value = Object.entries(env?.variables || {}).map(([k, v]) => `${k}=${v}`).join("\n");
  const formError = h("div");
  const form = h("form", { class: "editor panel", novalidate: true, "aria-label": env ? `Edit ${env.name}` : "New environment" },
    h("h3", {}, env ? `Edit ${env.name}` : "New environment"),
    name.wrapper, parent.wrapper, description.wrapper, vars.wrapper, formError,
    h("div", { class: "row" }, h("button", { type: "submit" }, env ? `Save ${env.name}` : "Create environment"),
      h("a", { href: here({}), class: "button secondary" }, "Cancel")));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    [name, parent, description, vars].forEach((f) => setFieldError(f, null));
    fill(formError);
    const envName = name.control.value.trim();
    if (!envName) {
      setFieldError(name, "Give the environment a name.");
      return name.control.focus();
    }
    const variables = {};
    for (const [i, line] of vars.control.value.split("\n").entries()) {
      if (!line.trim()) continue;
      const at = line.indexOf("=");
      if (at <= 0) {
        setFieldError(vars, `Line ${i + 1} is not NAME=value.`);
        return vars.control.focus();
      }
      variables[line.slice(0, at).trim()] = line.slice(at + 1);
    }
    const body = { variables };
    if (parent.control.value) body.parent = parent.control.value;
    if (description.control.value.trim()) body.description = description.control.value.trim();
    try {
      await api("PUT", `/api/environments/${encodeURIComponent(envName)}`, body);
      navigate(here({}));
    } catch (error) {
      const message = (error.message || "").toLowerCase();
      const target = !(error instanceof ApiError) || ![400, 422].includes(error.status) ? null
        : message.includes("parent") || message.includes("ancestor") || message.includes("cycle") ? parent
        : message.includes("variable") ? vars
        : message.includes("description") ? description
        : name;
      if (target) {
        setFieldError(target, error.message);
        target.control.focus();
      } else {
        fill(formError, errorBox(error));
      }
    }
  });
  return form;
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
