"""The operator's web page in a real browser (headless Chromium) against a real plant
under ``petra run``: log in, a live value changes, an operator writes a setpoint and
sees the value read back, a viewer is refused, an alarm is acknowledged, a trend opens
from the history store, and the page survives the API being killed (the banner shows
at once, the supervisor restarts the API, the page reconnects by itself).

Screenshots of every page go to the directory printed at the start (artefacts).
"""

from __future__ import annotations

import json
import os
import signal
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .web_peers import PASSWORD, Plant, wait_for

TIMEOUT_MS = 30_000


@pytest.fixture
def page(browser: Any, plant: Plant) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1024, "height": 768})  # a tablet
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    yield pg
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def login(page: Any, plant: Plant, user: str) -> None:
    page.goto(plant.url + "/")
    page.fill("#login-user", user)
    page.fill("#login-pass", PASSWORD)
    page.click("#login button[type=submit]")
    page.wait_for_selector("#whoami:has-text('" + user + "')")
    page.wait_for_selector("#live-state:text-is('live')")


def shot(page: Any, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)


def api(plant: Plant, method: str, path: str, body: object = None, user: str = "operator"
        ) -> tuple[int, Any]:
    def call(m: str, p: str, b: object, token: str = "") -> tuple[int, Any]:
        req = urllib.request.Request(plant.url + "/api/v1" + p, method=m,
                                     data=None if b is None else json.dumps(b).encode())
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    status, tok = call("POST", "/auth/login", {"username": user, "password": PASSWORD})
    assert status == 200, tok
    return call(method, path, body, tok["access_token"])


def test_login_overview_and_a_live_value_changes(page: Any, plant: Plant,
                                                 artifacts: Path) -> None:
    page.goto(plant.url + "/")
    page.wait_for_selector("#login-user")
    shot(page, artifacts, "login")
    page.fill("#login-user", "viewer")
    page.fill("#login-pass", "wrong password")
    page.click("#login button[type=submit]")
    page.wait_for_selector("#login-error:has-text('Not logged in')")
    login(page, plant, "viewer")
    page.wait_for_selector("#ov-procs tbody tr th:text-is('scan')")
    assert page.locator("#ov-scan dt:text-is('Period') + dd").text_content() == "10.00 ms"
    # the device nobody answers for: not up, and the page says why
    dev = page.locator("#ov-devices tr:has(th:text-is('rtu1'))")
    dev.wait_for()
    conn = dev.locator("td").nth(0).text_content()
    assert conn in ("disconnected", "connecting", "backoff"), conn
    assert "connection" in (dev.locator("td").nth(3).text_content() or "")
    assert page.text_content("#ov-plant") == "degraded"
    assert "rtu1" in (page.text_content("#ov-reasons") or "")
    shot(page, artifacts, "overview")
    page.click("nav a[data-page=signals]")
    cell = page.locator("tr[data-signal='clock.wave'] td.value")
    first = wait_for("a value for clock.wave", lambda: cell.text_content() or None)
    # the square wave flips every 0.5 s: the page must show it changing
    page.wait_for_function(
        "v => document.querySelector(\"tr[data-signal='clock.wave'] td.value\").textContent !== v",
        arg=first)
    quality = page.locator("tr[data-signal='clock.wave'] td.quality")
    assert quality.text_content() == "GOOD"
    assert "q-GOOD" in (quality.get_attribute("class") or "")
    # a BAD value looks different from a good one, in colour and in words
    bad = page.locator("tr[data-signal='remote.level']")
    assert bad.get_attribute("class") == "row-BAD"
    assert (bad.locator("td.quality").text_content() or "").startswith("BAD")
    assert "q-BAD" in (bad.locator("td.quality").get_attribute("class") or "")
    shot(page, artifacts, "signals")


def test_an_operator_writes_a_setpoint_and_sees_it_read_back(page: Any, plant: Plant,
                                                             artifacts: Path) -> None:
    login(page, plant, "operator")
    page.click("nav a[data-page=signals]")
    page.fill("#sg-filter", "tank.level_sp")
    page.click("button[aria-label='Set tank.level_sp']")
    assert "Minimum: 0" in page.text_content("#dw-limits")
    assert "Maximum: 5" in page.text_content("#dw-limits")
    page.fill("#dw-value", "7")  # above max: refused before anything is sent
    page.click("#dw-review")
    assert "above the maximum 5" in page.text_content("#dw-result")
    page.fill("#dw-value", "3.75")
    page.click("#dw-review")
    assert "Write 3.75" in page.text_content("#dw-confirm-text")
    shot(page, artifacts, "write-confirm")
    page.click("#dw-confirm")
    page.wait_for_selector("#dw-result:has-text('Read back from the plant: 3.75')")
    assert page.get_attribute("#dw-result", "data-readback") == "3.75"
    shot(page, artifacts, "write-read-back")
    page.click("#dw-close")
    status, sig = api(plant, "GET", "/signals/tank.level_sp", user="viewer")
    assert status == 200 and sig["value"] == 3.75


def test_a_viewer_is_refused(page: Any, plant: Plant) -> None:
    login(page, plant, "viewer")
    page.click("nav a[data-page=signals]")
    page.fill("#sg-filter", "tank.level_sp")
    row = page.locator("tr[data-signal='tank.level_sp']")
    assert row.locator("button").is_disabled()
    assert "needs the operator role" in (row.text_content() or "")
    # and the server refuses it too, whatever the page shows
    status = page.evaluate("petra.auth.put('/signals/tank.level_sp', {value: 1})"
                           ".then(() => 200, e => e.status)")
    assert status == 403


def test_an_operator_acknowledges_an_alarm(page: Any, plant: Plant, artifacts: Path) -> None:
    status, _ = api(plant, "PUT", "/signals/tank.level_sp", {"value": 4.0})
    assert status == 200
    login(page, plant, "operator")
    page.click("nav a[data-page=alarms]")
    row = page.locator("tr[data-alarm='sp.high']")
    row.locator("text=unack").wait_for()
    assert "high" in (row.text_content() or "")
    shot(page, artifacts, "alarms-unack")
    row.locator("button[aria-label='Acknowledge sp.high']").click()
    row.locator("text=acked").wait_for()
    page.locator("#al-events td:text-is('sp.high')").first.wait_for()
    shot(page, artifacts, "alarms-acked")
    status, body = api(plant, "GET", "/alarms", user="viewer")
    assert status == 200
    rec = next(a for a in body["alarms"] if a["name"] == "sp.high")
    assert rec["state"] == "acked" and rec["acked_by"] == "operator"
    # a comment, then shelving with a reason, each through its dialog
    row.locator("button[aria-label='Comment sp.high']").click()
    page.fill("#da-text", "checked on site")
    page.click("#da-ok")
    page.locator("#al-events td:text-is('checked on site')").first.wait_for()
    row.locator("button[aria-label='Shelve sp.high']").click()
    page.click("#da-ok")  # no reason: refused by the page, nothing sent
    assert "give a reason" in page.text_content("#da-result")
    page.fill("#da-reason", "sensor being replaced")
    page.select_option("#da-duration", "900")
    page.click("#da-ok")
    row.locator("text=shelved").wait_for()
    row.locator("button[aria-label='Unshelve sp.high']").click()
    # ISA-18.2: an unshelved alarm is evaluated afresh; its condition holds: raised again
    row.locator("text=unack").wait_for()
    api(plant, "PUT", "/signals/tank.level_sp", {"value": 2.5})


def test_a_viewer_may_not_act_on_alarms(page: Any, plant: Plant) -> None:
    status, _ = api(plant, "PUT", "/signals/tank.level_sp", {"value": 4.0})
    assert status == 200
    login(page, plant, "viewer")
    page.click("nav a[data-page=alarms]")
    row = page.locator("tr[data-alarm='sp.high']")
    row.locator("text=unack").wait_for()
    assert row.locator("button[aria-label='Acknowledge sp.high']").is_disabled()
    assert page.locator("#al-ack-all").is_disabled()
    status = page.evaluate("petra.auth.post('/alarms/ack', {alarms: ['sp.high']})"
                           ".then(() => 200, e => e.status)")
    assert status == 403
    api(plant, "PUT", "/signals/tank.level_sp", {"value": 2.5})


def test_a_trend_from_the_history_store(page: Any, plant: Plant, artifacts: Path) -> None:
    login(page, plant, "viewer")
    page.click("nav a[data-page=trends]")
    page.select_option("#tr-window", "300")
    page.fill("#tr-signal", "clock.wave")
    page.click("#tr-form button[type=submit]")
    info = page.locator("[data-trend='clock.wave'] h2 span.muted").nth(1)

    def samples() -> int | None:
        text = info.text_content() or ""
        if "samples from history" in text and not text.startswith("0 "):
            return int(text.split()[0])
        page.click("#tr-reset")  # the Parquet files appear after a flush: read again
        page.wait_for_timeout(1000)
        return None

    n = wait_for("history samples of clock.wave", samples, timeout=60)
    assert n > 2
    page.wait_for_selector("[data-trend='clock.wave'] h2:has-text('now ')")  # live tail
    shot(page, artifacts, "trends")
    box = page.locator("[data-trend='clock.wave'] canvas").bounding_box()
    assert box is not None
    with page.expect_response(lambda r: "/api/v1/history" in r.url) as resp:
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + 50)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + 60, steps=5)
        page.mouse.up()
    assert resp.value.status == 200
    shot(page, artifacts, "trends-zoomed")


def test_the_page_survives_losing_the_api(page: Any, plant: Plant, artifacts: Path) -> None:
    login(page, plant, "viewer")
    page.click("nav a[data-page=signals]")
    page.wait_for_selector("tr[data-signal='clock.wave'] td.value")
    old = plant.api_pid()
    os.kill(old, signal.SIGKILL)
    page.wait_for_selector("#banner:has-text('Connection to the plant lost')", timeout=5000)
    assert page.text_content("#live-state") == "not live"
    assert not page.is_hidden("#sg-stale")
    assert "stale" in (page.get_attribute("#sg-table", "class") or "")
    shot(page, artifacts, "connection-lost")
    wait_for("the api restarted", lambda: plant.api_pid() != old or None, timeout=60)
    page.wait_for_selector("#live-state:text-is('live')", timeout=60_000)
    assert page.is_hidden("#banner")
    first = page.text_content("tr[data-signal='clock.wave'] td.value")
    page.wait_for_function(
        "v => document.querySelector(\"tr[data-signal='clock.wave'] td.value\").textContent !== v",
        arg=first)
    shot(page, artifacts, "reconnected")


def test_tokens_are_refreshed_without_a_gap(page: Any, plant: Plant) -> None:
    """Access tokens last 10 s here: the page refreshes them before they expire, hands
    the new one to the WebSocket, and neither the REST calls nor the live feed notice."""
    login(page, plant, "viewer")
    page.click("nav a[data-page=signals]")
    page.evaluate("window.downs = 0; petra.feed.stateListeners.add(l => { if (!l) downs++; });"
                  "window.first = petra.auth.tokens.access_token;")
    page.wait_for_timeout(25_000)  # two and a half token lifetimes
    assert page.evaluate("petra.auth.tokens.access_token !== first")
    assert page.evaluate("downs") == 0, "the live feed dropped while tokens were refreshed"
    assert page.evaluate("petra.auth.get('/me').then(m => m.user)") == "viewer"
    first = page.text_content("tr[data-signal='clock.wave'] td.value")
    page.wait_for_function(
        "v => document.querySelector(\"tr[data-signal='clock.wave'] td.value\").textContent !== v",
        arg=first)


def test_keyboard_only_at_tablet_portrait_width(browser: Any, plant: Plant,
                                                artifacts: Path) -> None:
    ctx = browser.new_context(viewport={"width": 768, "height": 1024})
    page = ctx.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    try:
        resp = page.goto(plant.url + "/")
        assert resp is not None and resp.status == 200
        csp = resp.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        page.focus("#login-user")
        page.keyboard.type("operator")
        page.keyboard.press("Tab")
        page.keyboard.type(PASSWORD)
        page.keyboard.press("Enter")
        page.wait_for_selector("#live-state:text-is('live')")
        page.focus("nav a[data-page=signals]")
        page.keyboard.press("Enter")
        page.wait_for_selector("tr[data-signal='tank.level_sp']")
        page.focus("button[aria-label='Set tank.level_sp']")
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "dw-value"
        page.keyboard.type("2.5")
        page.keyboard.press("Enter")  # review
        assert page.evaluate("document.activeElement.id") == "dw-confirm"
        page.keyboard.press("Enter")  # confirm
        page.wait_for_selector("#dw-result:has-text('Read back from the plant: 2.5')")
        page.keyboard.press("Escape")
        assert not page.is_visible("#dlg-write")
        # nothing wider than the screen but the tables, which scroll inside their box
        assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        for name in ("overview", "alarms", "trends"):
            page.focus(f"nav a[data-page={name}]")
            page.keyboard.press("Enter")
            page.wait_for_selector(f"#page-{name}:not([hidden])")
            assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
        page.keyboard.press("Tab")
        shot(page, artifacts, "tablet-portrait")
    finally:
        ctx.close()
