"""The web console in a real browser: Debian's Chromium driven by Playwright, against a real
`setpoint dev` (and a real `setpoint writer` with API keys for the 401), both started from the
built binary ($SETPOINT_BIN) on free loopback ports with data in a temporary directory and
stopped by PID. A connected client is a real Python SDK session (sdk/python/.venv).

Run with scripts/console-test. Screenshots of the main pages at 1280×800 and at phone width go
to tests/console/screenshots/ (gitignored), or $SETPOINT_CONSOLE_SCREENSHOTS.

The tests in this file run in order and share one server: each builds on what the one before
made (the value edited, then its override, its client, its rollout).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SETPOINT_CHROMIUM", "/usr/bin/chromium")
SHOTS = Path(os.environ.get("SETPOINT_CONSOLE_SCREENSHOTS", ROOT / "tests/console/screenshots"))
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
# Generous: two loaded cores run this next to other builds.
WAIT_MS = 30_000
expect.set_options(timeout=WAIT_MS)

SCHEMA = {"type": "object", "properties": {"host": {"type": "string", "minLength": 1}}}


def binary() -> str:
    path = os.environ.get("SETPOINT_BIN") or str(ROOT / "target/debug/setpoint")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"no setpoint binary at {path}: build it (cargo build -p setpoint-cli) or set SETPOINT_BIN")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: object | None = None, key: str | None = None) -> tuple[int, object]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
            return response.status, json.loads(text) if text else None
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, json.loads(text) if text else None


class Process:
    """A child process stopped by its PID: SIGTERM, then SIGKILL if it lingers."""

    def __init__(self, args: list[str], log: Path, **kwargs: object) -> None:
        self.log = log
        self.handle = open(log, "wb")
        self.proc = subprocess.Popen(args, stdout=self.handle, stderr=subprocess.STDOUT, **kwargs)  # type: ignore[call-overload]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
        self.handle.close()

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


def await_ready(base: str, process: Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({process.proc.returncode}):\n{process.tail()}")
        try:
            with urllib.request.urlopen(base + "/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} not ready in 60 s:\n{process.tail()}")


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="setpoint-console-") as d:
        yield Path(d)


@pytest.fixture(scope="module")
def dev(workdir: Path) -> Iterator[str]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = Process([binary(), "dev", "--listen", f"127.0.0.1:{port}", "--data-dir", str(workdir / "dev"), "--log", "warn"],
                      workdir / "dev.log")
    try:
        await_ready(base, process)
        yield base
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


class Problems:
    """What the page reported that it should not: script errors and refused policy."""

    def __init__(self, page: Page) -> None:
        self.seen: list[str] = []
        page.on("pageerror", lambda e: self.seen.append(f"page error: {e}"))
        page.on("console", self.console)

    def console(self, message: object) -> None:
        text = getattr(message, "text", "")
        if "Content Security Policy" in text or "Refused to" in text:
            self.seen.append(f"console: {text}")


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport=DESKTOP)
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    problems = Problems(page)
    yield page
    context.close()
    assert not problems.seen, problems.seen


def shoot(page: Page, name: str) -> None:
    """The page as it is, at desktop size and at phone width."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(DESKTOP)
    page.screenshot(path=str(SHOTS / f"{name}-1280x800.png"), full_page=True)
    page.set_viewport_size(PHONE)
    page.screenshot(path=str(SHOTS / f"{name}-390.png"), full_page=True)
    page.set_viewport_size(DESKTOP)


def notice(page: Page):  # type: ignore[no-untyped-def]
    return page.locator("p.notice")


def field_error(page: Page, label: str):  # type: ignore[no-untyped-def]
    """The error slot of the field labelled `label`: the one right under its control."""
    control = page.get_by_label(label, exact=True)
    return page.locator(".field", has=control).locator(".field-error")


def test_create_edit_and_see_the_new_version(dev: str, page: Page) -> None:
    page.goto(dev + "/ui/")
    expect(page).to_have_url(re.compile(r"/ui/config/$"))
    page.get_by_role("link", name="New value").first.click()
    page.get_by_label("Path", exact=True).fill("/shop/db")
    page.get_by_label("Value", exact=True).fill('{"host": "db-a", "pool": 5}')
    page.get_by_label("Description", exact=True).fill("The shop's database")
    page.get_by_label("Schema (JSON Schema)", exact=True).fill(json.dumps(SCHEMA))
    page.get_by_role("button", name="Create").click()
    expect(notice(page)).to_contain_text("Saved /shop/db: version 1")
    expect(page).to_have_url(re.compile(r"/ui/config/shop/db$"))
    expect(page.locator("pre.value").first).to_contain_text('"db-a"')

    # Edit with the keyboard alone: type the value, Tab to the save button, press Enter.
    page.get_by_role("link", name="Edit", exact=True).first.click()
    value = page.get_by_label("Value", exact=True)
    value.fill('{"host": "db-b", "pool": 5}')
    value.focus()
    save = page.get_by_role("button", name="Save version 2")
    for _ in range(15):
        if save.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    assert save.evaluate("el => el === document.activeElement"), "Tab never reached the save button"
    page.keyboard.press("Enter")
    expect(notice(page)).to_contain_text("Saved /shop/db: version 2")
    meta = page.locator("dl.meta")
    expect(meta).to_contain_text("Version2")
    expect(meta).to_contain_text("The shop's database")
    expect(page.locator("pre.value").first).to_contain_text('"db-b"')
    # The schema and the tree are there too.
    expect(page.locator("pre.value").nth(1)).to_contain_text('"minLength": 1')
    page.get_by_role("link", name="shop", exact=True).click()
    expect(page.locator("aside.tree")).to_contain_text("db/")
    shoot(page, "config-tree")
    page.get_by_role("link", name="db/").click()
    shoot(page, "config-value")


def test_a_validation_error_is_shown_next_to_the_field(dev: str, page: Page) -> None:
    page.goto(dev + "/ui/config/shop/db?view=edit")
    page.get_by_label("Value", exact=True).fill('{"host": ""}')
    page.get_by_role("button", name="Save version 3").click()
    error = field_error(page, "Value")
    expect(error).to_be_visible()
    expect(error).to_contain_text("/host")
    expect(error).to_contain_text("shorter than 1 character")
    expect(page.get_by_label("Value", exact=True)).to_have_attribute("aria-invalid", "true")
    shoot(page, "config-edit-error")
    # A schema that is not JSON is caught at its own field before anything is sent.
    page.get_by_label("Schema (JSON Schema)", exact=True).fill("{not json")
    page.get_by_role("button", name="Save version 3").click()
    expect(field_error(page, "Schema (JSON Schema)")).to_contain_text("Not JSON")
    status, entry = http("GET", dev + "/api/config/shop/db")
    assert status == 200 and isinstance(entry, dict) and entry["version"] == 2, entry


def test_a_diff_between_two_versions(dev: str, page: Page) -> None:
    page.goto(dev + "/ui/config/shop/db")
    page.get_by_role("link", name="History", exact=True).click()
    page.get_by_label("from version 1", exact=True).check()
    page.get_by_label("to version 2", exact=True).check()
    page.get_by_role("button", name="Show diff").click()
    expect(page).to_have_url(re.compile(r"view=history&from=1&to=2"))
    diff = page.locator("section.diff")
    expect(diff.get_by_role("heading")).to_have_text("Diff v1 → v2")
    row = diff.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("replace")
    expect(row).to_contain_text("/host")
    expect(row).to_contain_text("db-b")
    shoot(page, "config-history-diff")


def test_delete_a_value(dev: str, page: Page) -> None:
    page.goto(dev + "/ui/config/shop/scratch?view=new")
    page.get_by_label("Value", exact=True).fill("1")
    page.get_by_role("button", name="Create").click()
    expect(notice(page)).to_contain_text("Saved /shop/scratch: version 1")
    page.get_by_role("button", name="Delete…").click()
    page.get_by_role("button", name="Delete /shop/scratch").click()
    expect(notice(page)).to_contain_text("Deleted /shop/scratch (version 2")
    expect(page).to_have_url(re.compile(r"/ui/config/shop$"))
    status, _ = http("GET", dev + "/api/config/shop/scratch")
    assert status == 404


def test_an_environment_shows_its_effective_value_with_provenance(dev: str, page: Page) -> None:
    status, _ = http("PUT", dev + "/api/config/env/prod/shop/db", {"value": {"host": "prod-db"}})
    assert status in (200, 201)
    status, _ = http("PUT", dev + "/api/environments/prod-eu", {"parent": "prod", "variables": {"REGION": "eu"}})
    assert status in (200, 201)
    page.goto(dev + "/ui/config/shop/db")
    page.get_by_role("link", name="Per environment").click()
    expect(page).to_have_url(re.compile(r"/ui/environments\?path=%2Fshop%2Fdb"))
    envs = page.get_by_role("region", name="Environments, their parents and variables")
    expect(envs.locator("tr", has_text="prod-eu")).to_contain_text("REGION")
    for env in ["prod", "prod-eu"]:
        card = page.locator(f'[data-env="{env}"]')
        expect(card.locator("pre.value")).to_contain_text('"prod-db"')
        expect(card.locator("pre.value")).to_contain_text('"pool": 5')
        host = card.locator("tbody tr", has_text="/host")
        expect(host).to_contain_text("prod")
        expect(host).to_contain_text("/env/prod/shop/db")
        pool = card.locator("tbody tr", has_text="/pool")
        expect(pool).to_contain_text("base")
        expect(pool).to_contain_text("/shop/db")
    dev_card = page.locator('[data-env="dev"]')
    expect(dev_card.locator("pre.value")).to_contain_text('"db-b"')
    # Each environment's own layer is one click away: prod's override, or a new one for dev.
    expect(page.locator('[data-env="prod"]').get_by_role("link", name="Edit prod's override")).to_have_attribute(
        "href", "/ui/config/env/prod/shop/db")
    dev_card.get_by_role("link", name="Override in dev").click()
    expect(page.get_by_label("Path", exact=True)).to_have_value("/env/dev/shop/db")
    page.go_back()
    # Variables are edited here; a parent that would make a cycle is refused at its field.
    page.get_by_role("link", name="Edit prod-eu").click()
    page.get_by_label("Variables", exact=True).fill("REGION=eu\nTIER=gold")
    page.get_by_role("button", name="Save prod-eu").click()
    expect(envs.locator("tr", has_text="prod-eu")).to_contain_text("TIER")
    page.get_by_role("link", name="Edit prod", exact=True).click()
    page.get_by_label("Parent", exact=True).select_option("prod-eu")
    page.get_by_role("button", name="Save prod", exact=True).click()
    expect(field_error(page, "Parent")).to_contain_text("would be its own ancestor")
    page.get_by_role("link", name="Cancel").click()
    shoot(page, "environments")


@pytest.fixture(scope="module")
def sdk_client(dev: str, workdir: Path) -> Iterator[Process]:
    """A real Python SDK session (environment dev, watching /shop) held open until stopped."""
    subprocess.run([str(ROOT / "sdk/python/install.sh")], check=True)
    python = ROOT / "sdk/python/.venv/bin/python"
    address = dev.removeprefix("http://")
    log = workdir / "sdk-client.log"
    client = Process([str(python), str(ROOT / "tests/console/sdk_client.py"), address, "console-app-1", "dev", "/shop", "zone=eu-1"],
                     log, cwd=str(workdir))
    deadline = time.monotonic() + 60
    while "ready" not in log.read_text(errors="replace"):
        if client.proc.poll() is not None or time.monotonic() > deadline:
            client.stop()
            raise RuntimeError(f"the SDK client never became ready:\n{client.tail()}")
        time.sleep(0.1)
    try:
        yield client
    finally:
        client.stop()


def test_a_connected_client_and_the_edge(dev: str, page: Page, sdk_client: Process) -> None:
    page.goto(dev + "/ui/clients")
    row = page.locator("tr", has_text="console-app-1")
    expect(row).to_contain_text("connected")
    expect(row).to_contain_text("zone=eu-1")
    expect(row).to_contain_text("dev-edge")
    expect(row).to_contain_text("/shop")
    expect(row).not_to_have_class("disconnected")
    edges = page.get_by_role("region", name="Edges, their state and lag")
    expect(edges.locator("tr", has_text="dev-edge")).to_contain_text("connected")
    expect(edges.locator("tr", has_text="dev-edge")).to_contain_text("alive")
    # dev's edge follows the writer itself.
    expect(edges.locator("tr", has_text="dev-edge")).to_contain_text("writer-")
    # Filters go to the API: a matching label keeps the client, another status drops it.
    page.get_by_label("Label").fill("zone=eu-1")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(re.compile(r"label=zone%3Deu-1"))
    expect(page.locator("tr", has_text="console-app-1")).to_be_visible()
    page.get_by_label("Status").select_option("disconnected")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_text("No client matches.")).to_be_visible()
    page.goto(dev + "/ui/clients")
    expect(page.locator("tr", has_text="console-app-1")).to_be_visible()
    shoot(page, "clients")


def test_a_rollout_started_with_a_preview_and_rolled_back(dev: str, page: Page, sdk_client: Process) -> None:
    page.goto(dev + "/ui/config/shop/db")
    page.get_by_role("link", name="Roll out a change").click()
    candidate = page.get_by_label("Candidate value")
    expect(candidate).to_have_value(re.compile(r'"db-b"'))
    candidate.fill('{"host": "db-c", "pool": 5}')
    page.get_by_label("Stages (percent)").fill("50,100")
    start = page.get_by_role("button", name="Start rollout")
    expect(start).to_be_disabled()
    page.get_by_role("button", name="Preview impact").click()
    impact = page.locator('[data-testid="impact"]')
    expect(impact).to_contain_text("Valid: a PUT of this value would commit.")
    # The SDK client in dev sees the change; prod's override keeps prod's value as it is.
    expect(impact).to_contain_text("1 connected client(s)")
    changed = impact.locator("tbody tr")
    expect(changed.filter(has_text="dev")).to_contain_text('"db-c"')
    expect(changed.filter(has_text="prod")).to_have_count(0)
    # The dry run placed the one matching instance: in the last stage (100 %) it is a member.
    plan = page.locator('[data-testid="stage-plan"]')
    expect(plan).to_contain_text("1 connected instance(s) watch this path.")
    expect(plan.locator("tbody tr").last).to_contain_text("console-app-1")
    heading = plan.get_by_role("heading").inner_text()
    planned_id = heading.removeprefix("Stages of ")
    shoot(page, "rollout-preview")
    expect(start).to_be_enabled()
    start.click()
    expect(page).to_have_url(re.compile(r"/ui/rollouts/roll_"))
    rollout_id = page.url.rsplit("/", 1)[1]
    assert rollout_id == planned_id, "the rollout started is not the one previewed"
    expect(page.locator("section", has_text="Stages").locator(".badge").first).to_have_text("in_progress")
    expect(page.get_by_role("list", name="Stages").locator("li")).to_have_count(2)
    shoot(page, "rollout")
    page.get_by_role("button", name="Rollback").click()
    expect(page.locator("section", has_text="Stages").locator(".badge").first).to_have_text("rolled_back")
    expect(page.get_by_role("button", name="Rollback")).to_have_count(0)
    status, body = http("GET", f"{dev}/api/rollouts/{rollout_id}")
    assert status == 200 and isinstance(body, dict) and body["status"] == "rolled_back", body
    status, entry = http("GET", dev + "/api/config/shop/db")
    assert isinstance(entry, dict) and entry["version"] == 2 and entry["value"]["host"] == "db-b", entry
    page.goto(dev + "/ui/rollouts")
    expect(page.locator("tr", has_text=rollout_id)).to_contain_text("rolled_back")


def test_a_disconnected_client_is_highlighted(dev: str, page: Page, sdk_client: Process) -> None:
    sdk_client.stop()
    page.goto(dev + "/ui/clients")
    # The page refreshes by itself; the edge reports the session's end within seconds.
    row = page.locator("tr", has_text="console-app-1")
    expect(row).to_have_class("disconnected")
    expect(row).to_contain_text("disconnected")


def test_audit_approvals_and_alerts(dev: str, page: Page) -> None:
    status, _ = http("PUT", dev + "/api/policies/guarded", {"approvals_required": 1})
    assert status in (200, 201)
    status, body = http("PUT", dev + "/api/config/guarded/flag", {"value": True})
    assert status == 202, body
    page.goto(dev + "/ui/audit")
    expect(page.locator("[data-verified]")).to_have_attribute("data-verified", "true")
    page.get_by_label("Action").fill("config.put")
    page.get_by_role("button", name="Filter").click()
    records = page.get_by_role("region", name="Audit records, oldest first")
    expect(records.locator("tr", has_text="/shop/db").first).to_contain_text("config.put")
    shoot(page, "audit")
    page.get_by_role("link", name="Approvals").click()
    request = page.locator("section", has_text="/guarded/flag")
    expect(request).to_contain_text("pending")
    shoot(page, "approvals")
    request.get_by_role("button", name="Cancel request").click()
    expect(page.get_by_text("Nothing waits for approval.")).to_be_visible()
    page.get_by_role("link", name="Alerts").click()
    expect(page.get_by_role("heading", name="Alerts")).to_be_visible()
    expect(page.get_by_text("No alert is firing.").or_(page.locator("table"))).to_be_visible()
    shoot(page, "alerts")


def test_at_phone_width_the_sections_are_behind_the_menu_button(dev: str, page: Page) -> None:
    page.set_viewport_size(PHONE)
    page.goto(dev + "/ui/config/shop/db")
    menu = page.get_by_role("button", name="Menu")
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(page.get_by_role("link", name="Environments")).to_be_hidden()
    menu.focus()
    page.keyboard.press("Enter")
    expect(menu).to_have_attribute("aria-expanded", "true")
    page.get_by_role("link", name="Environments").click()
    expect(page.locator("h1")).to_have_text("Environments")
    expect(menu).to_have_attribute("aria-expanded", "false")
    # On every page nothing is wider than the screen but the tables, which scroll inside their
    # own box.
    for path in ["/ui/config/shop/db", "/ui/config/shop/db?view=edit", "/ui/config/shop/db?view=history",
                 "/ui/environments?path=/shop/db", "/ui/clients", "/ui/rollouts", "/ui/audit", "/ui/approvals",
                 "/ui/alerts"]:
        page.goto(dev + path)
        expect(page.locator("h1")).to_be_visible()
        expect(page.locator("main > p:first-child", has_text="Loading")).to_have_count(0)
        overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{path} scrolls sideways by {overflow} px at phone width"


def test_a_bad_key_is_shown_as_401_against_a_writer_with_keys(workdir: Path, page: Page) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    key_file = workdir / "admin.key"
    writer = Process([binary(), "writer", "--store", f"embedded://{workdir / 'writer'}", "--listen", f"127.0.0.1:{port}",
                      "--bootstrap-key-file", str(key_file), "--log", "warn"], workdir / "writer.log")
    try:
        await_ready(base, writer)
        page.goto(base + "/ui/config/")
        # No key: the writer refuses, and the page says so.
        error = page.locator(".error-box")
        expect(error).to_contain_text("401 Unauthenticated")
        expect(error).to_contain_text("enter one")
        page.get_by_text("API key: none").click()
        page.get_by_label("API key (kept for this tab only)").fill("spk_wrong_" + "x" * 43)
        page.get_by_role("button", name="Use key").click()
        expect(page.locator(".error-box")).to_contain_text("401 Unauthenticated")
        expect(page.locator("#auth-summary")).to_have_text("API key: wrong")
        shoot(page, "unauthenticated")
        # The right key: the tree shows.
        page.locator("#auth-summary").click()
        page.get_by_label("API key (kept for this tab only)").fill(key_file.read_text().strip())
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("aside.tree")).to_be_visible()
        expect(page.locator(".error-box")).to_have_count(0)
        # The key stays for this tab (sessionStorage), not in the page's URL or storage of others.
        admin_key = key_file.read_text().strip()
        assert page.evaluate("sessionStorage.getItem('setpoint.apiKey')") == admin_key
        assert page.evaluate("localStorage.length") == 0
        # A key without the right: the audit log (admin only) answers 403, shown as such.
        status, account = http("POST", base + "/api/accounts",
                               {"id": "viewer", "grants": [{"prefix": "/", "actions": ["read"]}]}, key=admin_key)
        assert status == 201 and isinstance(account, dict), account
        page.locator("#auth-summary").click()
        page.get_by_label("API key (kept for this tab only)").fill(account["key"])
        page.get_by_role("button", name="Use key").click()
        expect(page.locator("#auth-summary")).to_have_text(f"API key: {account['key_id']}")
        page.get_by_role("link", name="Audit").click()
        expect(page.locator(".error-box").first).to_contain_text("403 Forbidden")
        shoot(page, "forbidden")
    finally:
        writer.stop()
