// Config: browse the tree, a value with its metadata, schema and validators, create and edit
// (the API's validation errors shown at the field they are about), history with a diff between
// any two versions, delete.
//
// URLs: /ui/config/<path>                  the path: its value (if any) and its children
//       /ui/config/<path>?view=edit        edit it
//       /ui/config/<path>?view=new         a new value (the path is editable)
//       /ui/config/<path>?view=history[&from=A&to=B]   versions, and the diff of A → B

import { api, ApiError, configUrl, get, query } from "../api.js";
import { navigate } from "../app.js";
import {
  badge, code, errorBox, field, fill, h, hasUnsafeNumber, heading, pretty, setFieldError,
  table, time,
} from "../dom.js";

// A message shown once on the next render (after a save or a delete moved the page).
let flash = null;

function normalize(rest) {
  const segments = rest.split("/").filter((s) => s !== "");
  return "/" + segments.join("/");
}

const link = (path, params = {}) => "/ui/config" + (path === "/" ? "/" : path) + query(params);

function breadcrumbs(path) {
  const segments = path.split("/").filter((s) => s !== "");
  const items = [h("li", {}, h("a", { href: link("/") }, "/"))];
  segments.forEach((segment, i) => {
    const to = "/" + segments.slice(0, i + 1).join("/");
    items.push(h("li", {}, i === segments.length - 1
      ? h("span", { "aria-current": "location" }, segment)
      : h("a", { href: link(to) }, segment)));
  });
  return h("nav", { "aria-label": "Breadcrumb", class: "crumbs" }, h("ol", {}, items));
}

// The entry at `path` (null when there is none) and its children.
async function load(path) {
  const listing = get(configUrl(path, "?list=true")).catch((error) => {
    if (error instanceof ApiError && error.status === 404) return { children: [] };
    throw error;
  });
  const entry = path === "/" ? Promise.resolve(null) : get(configUrl(path)).catch((error) => {
    if (error instanceof ApiError && error.status === 404) return null;
    throw error;
  });
  const [l, e] = await Promise.all([listing, entry]);
  return { children: l.children || [], entry: e && "version" in e && "format" in e ? e : null };
}

export async function render(main, { rest, params, ctx }) {
  const path = normalize(rest);
  const view = params.get("view") || "";
  const { children, entry } = await load(path);
  if (ctx.gone) return;

  const notice = flash ? h("p", { class: "notice", role: "status" }, flash) : null;
  flash = null;
  const detail = h("section", { class: "detail", "aria-label": "Details" });
  fill(
    main,
    heading("Config ", h("span", { class: "path" }, path)),
    breadcrumbs(path),
    notice,
    h("div", { class: "split" }, tree(path, children, entry), detail),
  );

  if (view === "new" || (!entry && view === "edit")) {
    // Below a value or a prefix with children, the new path starts as a child of it.
    const start = path === "/" ? "/" : entry || children.length ? path + "/" : path;
    fill(detail, h("h2", {}, "New value"), editor(start, null, path));
  } else if (!entry) {
    fill(
      detail,
      h("p", {}, `No value at ${path}.`),
      h("p", {}, h("a", { href: link(path, { view: "new" }), class: "button" }, "New value here")),
    );
  } else if (view === "edit") {
    fill(detail, h("h2", {}, `Edit ${path}`), editor(path, entry, path));
  } else if (view === "history") {
    await history(detail, path, entry, params);
  } else {
    fill(detail, ...show(path, entry));
  }
}

function tree(path, children, entry) {
  const base = path === "/" ? "" : path;
  return h(
    "aside",
    { class: "tree", "aria-label": "Children" },
    h("h2", {}, entry ? "Below this value" : "Children"),
    children.length
      ? h("ul", {}, children.map((c) => h("li", {}, h("a", { href: link(`${base}/${c}`) }, c + "/"))))
      : h("p", { class: "hint" }, "Nothing below this path."),
    h("p", {}, h("a", { href: link(path, { view: "new" }), class: "button secondary" }, "New value")),
  );
}

function tabs(path, active) {
  const items = [
    ["", "Value"],
    ["edit", "Edit"],
    ["history", "History"],
  ];
  return h("nav", { class: "tabs", "aria-label": "Views" }, items.map(([view, label]) =>
    h("a", { href: link(path, view ? { view } : {}), "aria-current": view === active ? "page" : null }, label)));
}

function show(path, entry) {
  const meta = [
    ["Version", entry.version],
    ["Revision", entry.revision],
    ["Format", entry.format],
    ["Updated", time(entry.updated_at)],
    ["Updated by", entry.updated_by || "—"],
    ["Description", entry.description || "—"],
    ["Owner", entry.owner || "—"],
  ];
  const confirm = h("div", { class: "confirm", hidden: true });
  const remove = h("button", { type: "button", class: "danger" }, "Delete…");
  remove.addEventListener("click", () => {
    confirm.hidden = false;
    fill(
      confirm,
      h("p", {}, `Delete ${path}? This writes a tombstone as version ${entry.version + 1}; the history stays.`),
      h("div", { class: "row" },
        h("button", { type: "button", class: "danger", onclick: () => doDelete(path, entry, confirm) },
          `Delete ${path}`),
        h("button", { type: "button", onclick: () => { confirm.hidden = true; remove.focus(); } }, "Cancel")),
    );
    confirm.querySelector("button").focus();
  });
  return [
    tabs(path, ""),
    h("h2", {}, "Value"),
    code(entry.value),
    h("dl", { class: "meta" }, meta.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    h("div", { class: "row actions" },
      h("a", { href: link(path, { view: "edit" }), class: "button" }, "Edit"),
      h("a", { href: "/ui/environments" + query({ path }), class: "button secondary" }, "Per environment"),
      h("a", { href: "/ui/rollouts" + query({ path }), class: "button secondary" }, "Roll out a change"),
      remove),
    confirm,
    h("h3", {}, "Schema"),
    entry.schema ? code(entry.schema) : h("p", { class: "hint" }, "No schema."),
    h("h3", {}, "Validators"),
    entry.validators ? code(entry.validators) : h("p", { class: "hint" }, "No validators."),
  ];
}

async function doDelete(path, entry, confirm) {
  try {
    const result = await api("DELETE", configUrl(path), undefined, { "If-Match": String(entry.version) });
    flash = result.status === 202
      ? "The delete waits for approval (a change request was made)."
      : `Deleted ${path} (version ${result.body.version}, revision ${result.body.revision}).`;
    navigate(link(parent(path)));
  } catch (error) {
    fill(confirm, errorBox(error));
  }
}

function parent(path) {
  const segments = path.split("/").filter((s) => s !== "");
  return "/" + segments.slice(0, -1).join("/");
}

// The create/edit form. `entry` null: a new value at a path the user types. Cancel goes back
// to `back`.
function editor(path, entry, back) {
  const isNew = !entry;
  const pathField = field("Path", h("input", {
    name: "path", value: path, required: true, spellcheck: "false", autocomplete: "off",
  }), "Segments of letters, digits, “.”, “_” and “-”; /env/<environment>/… is an override.");
  const format = entry ? entry.format : "json";
  const valueText = entry ? (format === "json" ? JSON.stringify(entry.value, null, 2) : entry.value) : "";
  const valueField = field("Value", h("textarea", { name: "value", rows: "8", spellcheck: "false", class: "mono" }),
    "JSON for the json format; YAML or plain text for the others.");
  valueField.control.value = valueText;
  const formatField = field("Format", h("select", { name: "format" },
    ["json", "yaml", "text"].map((f) => h("option", { value: f, selected: f === format }, f))));
  const description = field("Description", h("input", { name: "description", value: entry?.description ?? "" }));
  const owner = field("Owner", h("input", { name: "owner", value: entry?.owner ?? "" }));
  const schema = field("Schema (JSON Schema)", h("textarea", { name: "schema", rows: "5", spellcheck: "false", class: "mono" }),
    isNew ? "Optional." : "Empty removes it.");
  schema.control.value = entry?.schema ? JSON.stringify(entry.schema, null, 2) : "";
  const validators = field("Validators", h("textarea", { name: "validators", rows: "3", spellcheck: "false", class: "mono" }),
    'A JSON array such as [{"regex": "^db-"}, {"enum": ["a", "b"]}].' + (isNew ? "" : " Empty removes them."));
  validators.control.value = entry?.validators ? JSON.stringify(entry.validators, null, 2) : "";
  const fields = { path: pathField, value: valueField, format: formatField, description, owner, schema, validators };
  const formError = h("div", { class: "form-error" });
  const save = h("button", { type: "submit" }, isNew ? "Create" : `Save version ${entry.version + 1}`);
  const unsafe = entry && format === "json" && hasUnsafeNumber(entry.value);
  if (unsafe) save.disabled = true;
  if (!isNew) pathField.control.readOnly = true;

  const form = h("form", { class: "editor", novalidate: true },
    pathField.wrapper, valueField.wrapper, formatField.wrapper, description.wrapper, owner.wrapper,
    schema.wrapper, validators.wrapper,
    unsafe ? h("p", { class: "field-error" }, "This value holds integers beyond 2^53, which a browser cannot edit exactly: use the CLI.") : null,
    formError,
    h("div", { class: "row" }, save,
      h("a", { href: link(back), class: "button secondary" }, "Cancel")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(fields, formError, entry, save);
  });
  return form;
}

function parseJsonField(f, emptyMeans) {
  const text = f.control.value.trim();
  if (text === "") return { ok: true, value: emptyMeans };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    setFieldError(f, "Not JSON: " + error.message);
    return { ok: false };
  }
}

async function submit(fields, formError, entry, save) {
  for (const f of Object.values(fields)) setFieldError(f, null);
  fill(formError);
  const path = "/" + fields.path.control.value.split("/").filter((s) => s !== "").join("/");
  if (path === "/") {
    setFieldError(fields.path, "Give the path of the value.");
    fields.path.control.focus();
    return;
  }
  const format = fields.format.control.value;
  const body = { format };
  if (format === "json") {
    const parsed = parseJsonField(fields.value, undefined);
    if (!parsed.ok) return fields.value.control.focus();
    if (parsed.value === undefined) {
      setFieldError(fields.value, "Give a JSON value (a string needs quotes).");
      return fields.value.control.focus();
    }
    body.value = parsed.value;
  } else {
    body.value = fields.value.control.value;
  }
  // Omitted metadata carries over on the server; on an edit, an emptied field clears it.
  const empty = entry ? null : undefined;
  const text = (f) => (f.control.value.trim() === "" ? empty : f.control.value.trim());
  body.description = text(fields.description);
  body.owner = text(fields.owner);
  const schema = parseJsonField(fields.schema, empty);
  if (!schema.ok) return fields.schema.control.focus();
  body.schema = schema.value;
  const validators = parseJsonField(fields.validators, empty);
  if (!validators.ok) return fields.validators.control.focus();
  if (validators.value !== undefined && validators.value !== null && !Array.isArray(validators.value)) {
    setFieldError(fields.validators, "Validators are a JSON array.");
    return fields.validators.control.focus();
  }
  body.validators = validators.value;
  for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];

  save.disabled = true;
  try {
    const headers = entry ? { "If-Match": String(entry.version) } : {};
    const result = await api("PUT", configUrl(path), body, headers);
    flash = result.status === 202
      ? `The change to ${path} waits for approval (change request ${result.body.change?.id ?? ""}).`
      : `Saved ${path}: version ${result.body.version} (revision ${result.body.revision}).`;
    navigate(link(path));
  } catch (error) {
    save.disabled = false;
    showSaveError(error, fields, formError);
  }
}

// Puts the API's refusal next to the field it is about.
function showSaveError(error, fields, formError) {
  if (!(error instanceof ApiError)) {
    fill(formError, errorBox(error));
    return;
  }
  const violations = error.details && Array.isArray(error.details.violations) ? error.details.violations : null;
  if (error.status === 422 && violations) {
    setFieldError(fields.value, h("span", {}, "The value is invalid:",
      h("ul", {}, violations.map((v) => h("li", {}, `${v.pointer || "(the whole value)"}: ${v.message}`)))));
    fields.value.control.focus();
    return;
  }
  if (error.status === 400) {
    const message = error.message.toLowerCase();
    const target = message.includes("validator") ? fields.validators
      : message.includes("schema") ? fields.schema
      : message.includes("path") ? fields.path
      : message.includes("format") ? fields.format
      : message.includes("description") ? fields.description
      : message.includes("owner") ? fields.owner
      : fields.value;
    setFieldError(target, error.message);
    target.control.focus();
    return;
  }
  if (error.status === 412) {
    fill(formError, errorBox(new ApiError(412, error.code,
      "Someone saved a newer version meanwhile. Reload the value, then edit again.")));
    return;
  }
  fill(formError, errorBox(error));
}

async function history(detail, path, entry, params) {
  const versions = await get(configUrl(path, "/history?limit=100"));
  const newest = versions.length ? versions[0].version : entry.version;
  const older = versions.length > 1 ? versions[1].version : newest;
  const from = Number(params.get("from") || older);
  const to = Number(params.get("to") || newest);
  const diffBox = h("section", { class: "diff", "aria-label": "Diff" });
  const radio = (name, version, checked) => h("input", {
    type: "radio", name, value: String(version), checked, "aria-label": `${name} version ${version}`,
  });
  const form = h("form", { class: "history" },
    table(`Versions of ${path}, newest first`, [
      { label: "From", cell: (v) => radio("from", v.version, v.version === from) },
      { label: "To", cell: (v) => radio("to", v.version, v.version === to) },
      { label: "Version", cell: (v) => h("a", { href: link(path, { view: "history", from: v.version, to: v.version }) }, `v${v.version}`) },
      { label: "Updated", cell: (v) => time(v.updated_at) },
      { label: "By", cell: (v) => v.updated_by || "—" },
      { label: "Value", cell: (v) => (v.deleted ? badge("deleted") : h("code", { class: "preview" }, preview(v.value))) },
    ], versions),
    h("div", { class: "row" }, h("button", { type: "submit" }, "Show diff")));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    navigate(link(path, { view: "history", from: data.get("from"), to: data.get("to") }));
  });
  fill(detail, tabs(path, "history"), h("h2", {}, "History"), form, diffBox);
  if (from !== to) await diff(diffBox, path, from, to);
}

function preview(value) {
  const text = pretty(value).replace(/\s+/g, " ");
  return text.length > 80 ? text.slice(0, 79) + "…" : text;
}

async function diff(box, path, from, to) {
  try {
    const d = await get(configUrl(path, `/diff${query({ from, to })}`));
    let body;
    if (d.kind === "json_patch") {
      body = d.patch.length
        ? table(`Changes from version ${from} to ${to} (JSON Patch)`, [
          { label: "Operation", cell: (op) => badge(op.op, op.op) },
          { label: "Pointer", cell: (op) => h("code", {}, op.path || "(whole value)") },
          { label: "Value", cell: (op) => ("value" in op ? code(op.value) : op.from ? `from ${op.from}` : "—") },
        ], d.patch)
        : h("p", {}, "The two versions are equal.");
    } else {
      body = h("pre", { class: "unified" }, (d.text || "").split("\n").map((line) =>
        h("span", { class: line.startsWith("+") ? "add" : line.startsWith("-") ? "del" : null }, line + "\n")));
    }
    fill(box, h("h3", {}, `Diff v${from} → v${to}`), body);
  } catch (error) {
    fill(box, errorBox(error));
  }
}
