"""The console in a real browser (issue 14): headless system Chromium driven by Selenium against `hub serve` in a
subprocess, its webhook targets loopback receivers. Each test saves a screenshot of its page and fails on any
browser console error (a CSP violation, a script error, a missing asset).

Screenshots go to $HUB_BROWSER_SCREENSHOTS (``.ci/run`` sets it), else to pytest's tmp_path. With
$HUB_DOCS_SCREENSHOTS set, the trace tests also write docs/console.md's pictures there at 1280x800.

No browser: skipped outside CI (with how to get one), a failure with CI set."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.cli import main
from hub.store import deliveries as outbox
from tests.fakes.webhook import receiver
from tests.support import EVERY, HubProcess, LoopbackServer, scanner_source, store_at, write_config

pytestmark = pytest.mark.slow

OUT_SECRET = "whsec_c2VjcmV0LWZvci1vdXRib3VuZC1ob29rcw=="
SIZE = (1280, 800)  # a laptop screen
WAIT = 15.0


def on_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def browser_binaries() -> tuple[str, str] | None:
    """The system Chromium (or Chrome) and its chromedriver, found on PATH."""
    found = [next((p for p in map(shutil.which, names) if p), None) for names in
             (("chromium", "chromium-browser", "google-chrome"), ("chromedriver",))]
    return (found[0], found[1]) if found[0] and found[1] else None


def refusing() -> Starlette:
    """A target that answers ``app.state.status[0]``: 400 (a permanent failure, its deliveries die at once) until a
    test mends it."""

    async def hook(request: Request) -> JSONResponse:
        status = app.state.status[0]
        return JSONResponse({"error": "schema"} if status >= 400 else {"ok": True}, status_code=status)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    app.state.status = [400]
    return app


@dataclass
class Running:
    config: Path
    url: str
    dead: list[int]  # what the `dead` target answers

    def token(self, scope: str, name: str) -> str:
        result = CliRunner().invoke(main, ["tokens", "create", "--config", str(self.config), "--name", name,
                                           "--scope", scope])
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[0]

    def send(self, source: str, findings: list[dict[str, str]]) -> str:
        """A signed event through `hub send-test`; its id."""
        body = self.config.parent / f"body-{time.monotonic_ns()}.json"
        body.write_text(json.dumps({"findings": findings}))
        result = CliRunner().invoke(main, ["send-test", "--config", str(self.config), "--source", source,
                                           "--body", str(body), "--url", f"{self.url}/hooks/{source}"])
        assert result.exit_code == 0 and "-> 202" in result.output, result.output
        return str(json.loads(result.output.splitlines()[1])["id"])

    def deliveries(self, event_id: str, until: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """The event's deliveries once ``until`` holds for them (bounded)."""
        deadline = time.monotonic() + WAIT
        while True:
            with store_at(self.config.parent / "hub.db") as conn:
                rows = outbox.listing(conn, event=event_id, limit=EVERY)
            if until(rows) or time.monotonic() > deadline:
                assert until(rows), rows
                return rows
            time.sleep(0.1)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    tmp = tmp_path_factory.mktemp("console-browser")
    hook = {"type": "webhook", "secret": OUT_SECRET}
    fields = {"title": "item.title", "tool_id": "item.id", "severity": "item.sev", "asset.identifier": "item.host"}
    gate = refusing()
    with LoopbackServer(receiver(OUT_SECRET)) as ok, LoopbackServer(gate) as dead:
        config = write_config(tmp / "hub.yaml", {
            "storage": {"path": str(tmp / "hub.db")},
            "sources": {"scanner": scanner_source(fields), "other": scanner_source(fields)},
            "routes": [{"name": "all", "on": ["finding.created"], "from": ["scanner"], "to": ["ok", "dead"]},
                       {"name": "crit", "on": ["finding.created"], "from": ["other"],
                        "when": 'finding.severity == "critical"', "to": ["ok"]}],
            "targets": {"ok": {**hook, "url": ok.url + "/hook"},
                        "dead": {**hook, "url": dead.url + "/hook", "retry": {"schedule_secs": []}}},
            "console": {"session_secret": "console-browser-session-key-0123456789abcdef"},
        })
        with HubProcess(config) as process:
            yield Running(config, process.url, gate.state.status)


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    found = browser_binaries()
    if found is None:
        message = ("no Chromium and chromedriver on PATH: `apt-get install chromium chromium-driver` "
                   "(Debian/Ubuntu) or put google-chrome and a matching chromedriver on PATH")
        if on_ci():
            pytest.fail(f"CI is set and {message}")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={SIZE[0]},{SIZE[1]}", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
    browser.set_page_load_timeout(WAIT)
    chrome = SIZE[1] - browser.execute_script("return window.innerHeight")  # the window's own bars, if any
    browser.set_window_size(SIZE[0], SIZE[1] + chrome)
    try:
        yield browser
    finally:
        browser.quit()


class Page:
    """The browser on the hub: navigation, lookups, a screenshot, and the console errors seen so far."""

    def __init__(self, driver: Any, hub: Running, shots: Path):
        self.driver, self.hub, self.shots = driver, hub, shots

    def open(self, path: str) -> None:
        self.driver.get(self.hub.url + path)

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.driver.find_elements(By.CSS_SELECTOR, css))

    def link(self, text: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.LINK_TEXT, text)

    def follow(self, element: Any) -> None:
        """Click ``element`` and wait for the page it leads to (a click returns before the navigation ends): until the
        window holds a new, loaded document. (Waiting for the old ``<html>`` to go stale asked the browser about a
        node mid-navigation, which Chromium 156 sometimes answers with an inspector error instead of "stale".)"""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.wait import WebDriverWait

        self.driver.execute_script("window.hubOldPage = true")
        element.click()
        WebDriverWait(self.driver, WAIT, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script("return !window.hubOldPage && document.readyState === 'complete'"))

    def text(self) -> str:
        return str(self.find("main").text)

    def login(self, token: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/ui/login")
        self.find("#token").send_keys(token)
        self.follow(self.find("form[action='/ui/login'] button[type=submit]"))
        assert self.driver.current_url == self.hub.url + "/ui/", self.driver.current_url

    def errors(self) -> list[str]:
        return [str(e["message"]) for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def shot(self, name: str, docs: str | None = None) -> None:
        """The page's first screen under ``name``; also as the docs' picture ``docs`` when $HUB_DOCS_SCREENSHOTS
        is set."""
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        folder = os.environ.get("HUB_DOCS_SCREENSHOTS")
        if docs and folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(folder) / f"{docs}.png"))


@pytest.fixture
def page(driver: Any, hub: Running, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Page]:
    folder = os.environ.get("HUB_BROWSER_SCREENSHOTS")
    shots = Path(folder) if folder else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    p = Page(driver, hub, shots)
    p.errors()  # what an earlier test left in the log is that test's
    yield p
    assert p.errors() == [], "browser console errors"


@pytest.fixture(scope="module")
def admin(hub: Running) -> str:
    return hub.token("admin", "browser-admin")


def test_log_in_with_an_admin_token(page, admin):
    page.login(admin)
    assert "browser-admin · admin" in page.find("header.top").text
    assert page.find("nav a[aria-current=page]").text == "Overview"
    page.shot("login")


def test_a_signed_event_followed_to_its_delivery_and_rendered_request(page, hub, admin):
    event = hub.send("scanner", [{"id": "A", "title": "TLS certificate expired", "sev": "high", "host": "web-1"}])
    done = hub.deliveries(event, lambda rows: any(d["target"] == "ok" and d["state"] == "done" for d in rows))
    delivery = next(d["id"] for d in done if d["target"] == "ok")
    page.login(admin)
    page.shot("overview", docs="overview")
    page.follow(page.link("Events"))
    page.follow(page.link(event))
    assert page.driver.current_url == f"{hub.url}/ui/events/{event}"
    assert "standard-webhooks" in page.text() and "[redacted]" in page.text()
    page.shot("event", docs="event")
    page.follow(page.link(delivery))
    assert page.find("h1").text == f"Delivery {delivery}"
    request = page.find("pre.request").text
    assert request.startswith("POST http://127.0.0.1:") and "TLS certificate expired" in request
    assert OUT_SECRET not in page.driver.page_source
    page.shot("delivery", docs="delivery")


def test_a_dead_letter_replayed(page, hub, admin):
    event = hub.send("scanner", [{"id": "D", "title": "Open S3 bucket", "sev": "critical", "host": "bucket-1"}])
    [dead] = [d["id"] for d in hub.deliveries(event, lambda rows: any(d["state"] == "dead" for d in rows))
              if d["state"] == "dead"]
    page.login(admin)
    page.open("/ui/deliveries?target=dead&state=dead")
    page.follow(page.link(dead))
    assert page.find("dd.state-dead").text == "dead" and "400" in page.text()
    hub.dead[0] = 200  # the vendor fixed its side
    try:
        page.follow(page.find("form[action$='/replay'] button"))
        assert page.find("p.notice").text.startswith("Queued again")
        hub.deliveries(event, lambda rows: any(d["id"] == dead and d["state"] == "done" for d in rows))
    finally:
        hub.dead[0] = 400
    page.open(f"/ui/deliveries/{dead}")
    assert page.find("dd.state-done").text == "done"
    statuses = [row.find_elements("css selector", "td")[2].text for row in page.all("h2 + table tbody tr")]
    assert "200" in statuses, statuses
    page.shot("replayed")


def test_explain_a_finding_that_no_route_took(page, hub, admin):
    event = hub.send("other", [{"id": "L", "title": "Verbose banner", "sev": "low", "host": "web-3"}])
    page.login(admin)
    page.open(f"/ui/events/{event}")
    page.follow(page.link("Explain its routing"))
    finding = next(a.text for a in page.all("section.step h2 a") if a.text.startswith("fnd_"))
    page.find("#explain-id").clear()
    page.find("#explain-id").send_keys(finding)
    page.follow(page.find("form.filters button"))
    assert page.driver.current_url == f"{hub.url}/ui/explain?id={finding}"
    rows = {r.find_elements("css selector", "td")[0].text: r.text for r in page.all("section.step tbody tr")}
    assert "no" in rows["crit"] and 'finding.severity = "low"' in rows["crit"]
    assert "Source other; delivered to: no target" in page.text()
    page.shot("explain")


def test_a_read_only_token_finds_no_replay_button(page, hub):
    event = hub.send("scanner", [{"id": "R", "title": "Weak cipher", "sev": "medium", "host": "web-5"}])
    [dead] = [d for d in hub.deliveries(event, lambda rows: any(d["state"] == "dead" for d in rows))
              if d["state"] == "dead"]
    delivery, finding = dead["id"], dead["finding_id"]
    page.login(hub.token("read", "browser-reader"))
    assert "browser-reader · read-only" in page.find("header.top").text
    page.open(f"/ui/deliveries/{delivery}")
    assert page.find("h1").text == f"Delivery {delivery}"
    assert page.all("form[action$='/replay']") == [] and "Replay" not in page.text()
    page.open(f"/ui/events/{event}")
    assert page.find("h1").text == f"Event {event}" and page.all("form[action$='/reprocess']") == []
    page.open(f"/ui/findings/{finding}")
    page.shot("read-only")


def test_keyboard_navigation_and_labelled_controls(page, hub, admin):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    for n in range(3):
        hub.send("other", [{"id": f"K{n}", "title": f"Keyboard {n}", "sev": "low", "host": "web-4"}])
    page.login(admin)
    page.open("/ui/events")
    ids = [a.text for a in page.all("table.list tbody td.c-id a")]
    assert len(ids) >= 3
    keys = ActionChains(page.driver)
    keys.send_keys("/").perform()
    assert page.driver.switch_to.active_element.get_attribute("id") == "q"
    page.driver.execute_script("document.activeElement.blur()")
    keys.send_keys("j").send_keys("j").send_keys("j").send_keys("k").perform()
    current = page.all("table.list tbody tr.current")
    assert len(current) == 1 and current[0].find_element("css selector", "td.c-id a").text == ids[1]
    page.shot("keyboard")
    old = page.find("html")
    keys.send_keys(Keys.ENTER).perform()
    WebDriverWait(page.driver, WAIT).until(expected_conditions.staleness_of(old))
    assert page.find("h1").text == f"Event {ids[1]}"
    for path in ("/ui/", "/ui/events", "/ui/findings", "/ui/deliveries", "/ui/explain", f"/ui/events/{ids[0]}"):
        page.open(path)
        unlabelled = page.driver.execute_script("""
            return Array.from(document.querySelectorAll("input, select, textarea"))
              .filter(el => el.type !== "hidden")
              .filter(el => !el.getAttribute("aria-label"))
              .filter(el => !(el.id && document.querySelector(`label[for="${el.id}"]`)))
              .map(el => el.outerHTML);""")
        assert unlabelled == [], (path, unlabelled)


def test_a_stored_finding_rendered_in_the_playground_then_edited(page, hub, admin):
    from selenium.webdriver.support.select import Select

    event = hub.send("scanner", [{"id": "P", "title": "Playground finding", "sev": "high", "host": "web-6"}])
    [finding] = {d["finding_id"] for d in hub.deliveries(event, lambda rows: any(
        d["target"] == "ok" and d["state"] == "done" for d in rows))}
    page.login(admin)
    page.follow(page.link("Playground"))
    Select(page.find("#pg-target")).select_by_value("ok")
    page.find("#pg-id").send_keys(finding)
    page.follow(page.find("form.filters button[type=submit]"))
    [request] = [r.text for r in page.all("pre.request")]
    assert request.startswith("POST http://127.0.0.1:") and '"title": "Playground finding"' in request
    assert "3 of 3 pass" in page.text()
    text = page.find("#pg-text")
    text.clear()
    text.send_keys('{"edited": {{ finding.title|upper|tojson }}, "host": {{ finding.asset.identifier|tojson }}}')
    page.follow(page.find("form.playground button[type=submit]"))
    assert page.find("label[for=pg-text]").text.endswith("(edited, not saved)")
    [request] = [r.text for r in page.all("pre.request")]
    assert request.endswith('{\n  "edited": "PLAYGROUND FINDING",\n  "host": "web-6"\n}'), request
    assert "0 of 3 pass" in page.text()
    page.shot("playground")
