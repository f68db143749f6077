// The console's shell: routes /ui/… paths to pages (in the browser, with the History API; the
// writer answers index.html for every such path so a deep link or a reload lands here), keeps
// the API key, and gives pages a context for the refresh timers they start.

import { apiKey, get, setApiKey } from "./api.js";
import { errorBox, fill, h } from "./dom.js";

const routes = [
  { prefix: "/ui/config", page: "config", nav: "/ui/config/" },
  { prefix: "/ui/environments", page: "environments", nav: "/ui/environments" },
  { prefix: "/ui/clients", page: "fleet", nav: "/ui/clients" },
  { prefix: "/ui/rollouts", page: "rollouts", nav: "/ui/rollouts" },
  { prefix: "/ui/audit", page: "audit", nav: "/ui/audit" },
  { prefix: "/ui/approvals", page: "approvals", nav: "/ui/approvals" },
  { prefix: "/ui/alerts", page: "alerts", nav: "/ui/alerts" },
];

const main = document.getElementById("main");
let current = null; // the context of the page on screen: its timers stop when it goes

function route(pathname) {
  return routes.find((r) => pathname === r.prefix || pathname.startsWith(r.prefix + "/"));
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  render();
}

async function render() {
  if (current) current.leave();
  const ctx = context();
  current = ctx;
  const url = new URL(location.href);
  const found = route(url.pathname);
  if (!found) {
    navigate("/ui/config/", { replace: true });
    return;
  }
  for (const link of document.querySelectorAll("#nav a")) {
    if (link.getAttribute("href") === found.nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  closeMenu();
  const rest = decodeURIComponent(url.pathname.slice(found.prefix.length)) || "/";
  try {
    const module = await import(`./pages/${found.page}.js`);
    if (ctx.gone) return;
    await module.render(main, { rest, params: url.searchParams, ctx });
  } catch (error) {
    if (ctx.gone) return;
    fill(main, errorBox(error));
  }
  if (ctx.gone) return;
  const title = main.querySelector("h1");
  document.title = (title ? title.textContent + " · " : "") + "Setpoint console";
  if (ctx.focus && title) title.focus();
  refreshAlertCount();
}

let firstRender = true;

function context() {
  const timers = [];
  const ctx = {
    gone: false,
    // Moving focus to the new page's heading tells a screen reader the page changed; not on
    // the first load, where the browser's own focus is right.
    focus: !firstRender,
    every(ms, fn) {
      timers.push(setInterval(() => {
        if (!ctx.gone && !document.hidden) fn();
      }, ms));
    },
    leave() {
      ctx.gone = true;
      timers.forEach(clearInterval);
    },
    rerender: () => render(),
  };
  firstRender = false;
  return ctx;
}

// The nav shows how many alerts fire, whatever page is open.
async function refreshAlertCount() {
  const link = document.getElementById("nav-alerts");
  try {
    const body = await get("/api/alerts");
    const n = body.alerts.length;
    fill(link, "Alerts", n ? h("span", { class: "count", "aria-label": `${n} firing` }, String(n)) : null);
  } catch {
    fill(link, "Alerts");
  }
}

function showKeyState() {
  const key = apiKey();
  const summary = document.getElementById("auth-summary");
  // Only the key's id part (spk_<id>_<secret>) is ever shown.
  const id = key.startsWith("spk_") ? key.split("_")[1] : null;
  fill(summary, key ? `API key: ${id ? id : "set"}` : "API key: none");
}

function closeMenu() {
  const toggle = document.getElementById("menu-toggle");
  toggle.setAttribute("aria-expanded", "false");
  document.getElementById("nav").classList.remove("open");
}

function setup() {
  document.addEventListener("click", (event) => {
    if (event.defaultPrevented || event.button !== 0) return;
    if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
    const link = event.target.closest("a[href]");
    if (!link || link.target) return;
    const url = new URL(link.href, location.href);
    if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
    event.preventDefault();
    navigate(url.pathname + url.search);
  });
  window.addEventListener("popstate", render);

  const toggle = document.getElementById("menu-toggle");
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") !== "true";
    toggle.setAttribute("aria-expanded", String(open));
    document.getElementById("nav").classList.toggle("open", open);
  });

  const form = document.getElementById("auth-form");
  const input = document.getElementById("api-key");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setApiKey(input.value.trim());
    input.value = "";
    document.getElementById("auth").open = false;
    showKeyState();
    render();
  });
  document.getElementById("forget-key").addEventListener("click", () => {
    setApiKey("");
    input.value = "";
    document.getElementById("auth").open = false;
    showKeyState();
    render();
  });
  showKeyState();
  render();
}

setup();
