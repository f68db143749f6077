// Small DOM helpers: elements built from data (text is always set as text, never as HTML, so
// nothing a config value holds can run in the page), tables, errors, and formatting.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

// Replaces the children of `el`.
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

let ids = 0;
export function uid(prefix) {
  ids += 1;
  return `${prefix}-${ids}`;
}

// A labelled form control: {id, label, control, error}. `control` is an input, select or
// textarea; its error slot sits right under it and is what aria-describedby names.
export function field(label, control, hint) {
  const id = control.id || uid("f");
  control.id = id;
  const errorId = id + "-error";
  const hintId = hint ? id + "-hint" : null;
  const error = h("p", { class: "field-error", id: errorId, role: "alert", hidden: true });
  control.setAttribute("aria-describedby", [hintId, errorId].filter(Boolean).join(" "));
  const wrapper = h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    hint ? h("p", { class: "hint", id: hintId }, hint) : null,
    control,
    error,
  );
  return { wrapper, control, error };
}

export function setFieldError(f, message) {
  if (message) {
    fill(f.error, message);
    f.error.hidden = false;
    f.control.setAttribute("aria-invalid", "true");
  } else {
    fill(f.error);
    f.error.hidden = true;
    f.control.removeAttribute("aria-invalid");
  }
}

// A table in a horizontally scrolling, focusable region (narrow screens scroll it rather than
// squeeze it). columns: [{label, cell(row) → node|text, class?}]; rowClass(row) optional.
export function table(caption, columns, rows, rowClass) {
  const t = h(
    "table",
    {},
    h("caption", {}, caption),
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { class: rowClass ? rowClass(row) : null },
          columns.map((c) => h("td", { class: c.class }, c.cell(row))),
        ),
      ),
    ),
  );
  return h("div", { class: "table-wrap", tabindex: "0", role: "region", "aria-label": caption }, t);
}

// How an ApiError (or any error) is shown: what happened, and for 401/403 what to do.
export function errorBox(error) {
  const status = error.status;
  let title;
  let advice = null;
  if (status === 401) {
    title = "401 Unauthenticated";
    advice = "This writer needs an API key: enter one under “API key” at the top.";
  } else if (status === 403) {
    title = "403 Forbidden";
    advice = "Your key has no right to this. Ask an admin for a grant.";
  } else if (status === 429) {
    title = "429 Too many failed attempts";
    advice = "Wait a minute, then try again with a valid key.";
  } else if (status) {
    title = `${status} ${error.code || ""}`.trim();
  } else {
    title = "Error";
  }
  return h(
    "div",
    { class: "error-box", role: "alert", dataset: { status: String(status || 0) } },
    h("strong", {}, title),
    h("p", {}, error.message),
    advice ? h("p", {}, advice) : null,
  );
}

export function pretty(value) {
  if (typeof value === "string") return value;
  return JSON.stringify(value, null, 2);
}

export function code(value) {
  return h("pre", { class: "value" }, pretty(value));
}

export function time(text) {
  if (!text) return "—";
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return h("time", { datetime: text, title: text }, date.toLocaleString());
}

export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind || text}` }, text);
}

export function heading(title, ...rest) {
  return h("h1", { tabindex: "-1" }, title, ...rest);
}

// JSON.parse turns integers beyond 2^53 into other numbers; such a value cannot be edited
// here without changing it.
export function hasUnsafeNumber(value) {
  if (typeof value === "number") return Number.isInteger(value) && !Number.isSafeInteger(value);
  if (Array.isArray(value)) return value.some(hasUnsafeNumber);
  if (value && typeof value === "object") return Object.values(value).some(hasUnsafeNumber);
  return false;
}
