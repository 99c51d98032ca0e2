"""The page in a real browser: Debian's headless Chromium driven by Playwright.

The console app is the real one on a loopback port; the fleet is fed through `Console.feed`,
the entry point the MQTT wiring calls. Few tests, each one browser start (about a second).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path

from playwright.async_api import BrowserContext, Page, async_playwright, expect

from posd.fleet.console import Console
from tests.posd.fleet.fleetdata import order_event, state, terminal, topic
from tests.posd.fleet.support import running_console

CHROMIUM = "/usr/bin/chromium"
# As python-svc.md says Chromium needs here: no sandbox as root, no GPU, and no background
# connections (this machine's closed network refuses them).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 10_000
HOSTILE = '<img src=x onerror="window.__xss=1">'


@contextlib.asynccontextmanager
async def browser(tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh --user-data-dir
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
            locale="ko-KR",
        )
        try:
            yield context
        finally:
            await context.close()


def small_fleet(console: Console, count: int) -> float:
    now = time.time()
    for n in range(1, count + 1):
        tid = terminal(n)
        console.feed(topic(tid, "availability"), b"online", True, now)
        payload = state(
            tid,
            now - (n % 7) * 5,
            merchant_id=HOSTILE if n == 4 else f"M{n:014d}",
            can_alert=n != 6,
            reason="orders link down for more than 60 s" if n == 6 else None,
            reader="disconnected" if n == 9 else "ready",
            saf_pending=3 if n == 11 else 0,
            saf_oldest_age_s=93_000.0 if n == 11 else None,
            alerting=1 if n == 12 else 0,
            missed_today=1 if n == 5 else 0,
        )
        console.feed(topic(tid, "state"), payload, True, now)
    console.set_broker(True)
    return now


def status_cell(page: Page, terminal_id: str) -> object:
    return page.locator(f'#box-rows tr[data-tid="{terminal_id}"] td').nth(2)


async def test_a_box_goes_offline_live_and_a_call_is_marked_called(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, browser(tmp_path) as context:
        console = served.console
        now = small_fleet(console, 40)
        console.feed(
            topic(terminal(5), "event/order"),
            order_event(now, "B-20261202-0042", "missed", placed_at=now - 420),
            False,
            now,
        )
        await console.settle()
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await page.goto(served.url + "/")
        await expect(page.locator("#link")).to_contain_text("브로커 연결됨", timeout=WAIT_MS)
        await expect(page.locator("#n-offline")).to_have_text("0", timeout=WAIT_MS)
        await expect(page.locator("#n-deaf")).to_have_text("1")
        await expect(page.locator("#n-missed_uncalled")).to_have_text("1")
        await expect(page.locator("#n-saf_old")).to_have_text("1")
        await expect(page.locator("#n-readers_disconnected")).to_have_text("1")

        # The box's process dies: its will arrives; the count and the row change, no reload.
        console.feed(topic(terminal(2), "availability"), b"offline", False, time.time())
        await expect(page.locator("#n-offline")).to_have_text("1", timeout=WAIT_MS)
        await expect(status_cell(page, terminal(2))).to_have_text(  # type: ignore[arg-type]
            "오프라인 Offline", timeout=WAIT_MS
        )
        # Offline boxes come first in the table.
        await expect(page.locator("#box-rows tr.row").first).to_have_attribute(
            "data-tid", terminal(2)
        )

        # An untrusted merchant id is shown as text and runs nothing.
        cell = page.locator(f'#box-rows tr[data-tid="{terminal(4)}"] td').nth(1)
        await expect(cell).to_have_text(HOSTILE)
        assert await page.evaluate("window.__xss") is None
        assert await page.locator("#box-rows img").count() == 0

        # The call centre: two calls (the missed order, the deaf shop), oldest first.
        rows = page.locator("#call-rows tr")
        await expect(rows).to_have_count(2)
        missed = rows.filter(has_text="B-20261202-0042")
        await expect(missed).to_contain_text("놓친 주문")
        await expect(missed).to_contain_text("7분 전")
        await missed.locator("input").fill("사장님과 통화, 늦게 접수함")
        await page.screenshot(path=str(tmp_path / "console-before-called.png"), full_page=True)
        await missed.get_by_role("button", name="연락 완료 Called").click()
        await expect(missed).to_have_class("called", timeout=WAIT_MS)
        await expect(missed).to_contain_text("사장님과 통화, 늦게 접수함")
        await expect(page.locator("#n-missed_uncalled")).to_have_text("0", timeout=WAIT_MS)
        called = [call for call in console.call_list() if call.kind == "missed_order"]
        assert [(c.called, c.note) for c in called] == [(True, "사장님과 통화, 늦게 접수함")]

        # Filters: deaf only, then a text search.
        await page.locator("#f-deaf").check()
        await expect(page.locator("#box-rows tr.row")).to_have_count(1)
        await page.locator("#f-deaf").uncheck()
        await page.locator("#f-q").fill("T0000033")
        await expect(page.locator("#box-rows tr.row")).to_have_count(1)
        await page.locator("#f-q").fill("")

        # A row opens the box's detail with its state and events.
        await page.locator(f'#box-rows tr[data-tid="{terminal(5)}"]').click()
        await expect(page.locator("#detail")).to_be_visible()
        await expect(page.locator("#d-events li")).to_have_count(1)
        await expect(page.locator("#d-state")).to_contain_text('"terminal_id": "T0000005"')
        await page.keyboard.press("Escape")

        await page.screenshot(path=str(tmp_path / "console.png"), full_page=True)
        await expect(page.locator("#link")).to_contain_text("브로커 연결됨")  # never lost
        assert errors == []


async def test_ten_thousand_boxes_keep_a_small_dom_and_filter_at_once(tmp_path: Path) -> None:
    async with running_console(tmp_path / "c.db") as served, browser(tmp_path) as context:
        console = served.console
        small_fleet(console, 10_000)
        page = await context.new_page()
        started = time.perf_counter()
        await page.goto(served.url + "/")
        shown = page.locator("#shown")
        await expect(shown).to_contain_text("10000대 중 10000대", timeout=WAIT_MS)
        loaded_s = time.perf_counter() - started
        rendered = await page.locator("#box-rows tr.row").count()
        assert 0 < rendered < 200, "only the rows in sight are in the DOM"
        # Scrolled to the end, the last rows are there.
        await page.locator("#table-scroll").evaluate("e => { e.scrollTop = e.scrollHeight; }")
        await expect(page.locator(f'#box-rows tr[data-tid="{terminal(10_000)}"]')).to_have_count(
            1, timeout=WAIT_MS
        )
        started = time.perf_counter()
        await page.locator("#f-status").select_option("offline")
        await expect(shown).to_contain_text("10000대 중 0대")
        console.feed(topic(terminal(7777), "availability"), b"offline", False, time.time())
        await expect(page.locator("#box-rows tr.row")).to_have_count(1, timeout=WAIT_MS)
        live_s = time.perf_counter() - started
        print(f"10,000 boxes: page shown in {loaded_s:.2f} s, live filter+update {live_s:.2f} s")


async def test_with_a_token_the_page_asks_for_it(tmp_path: Path) -> None:
    token = "correct-horse-battery-staple"
    async with (
        running_console(tmp_path / "c.db", token=token) as served,
        browser(tmp_path) as context,
    ):
        small_fleet(served.console, 3)
        page = await context.new_page()
        await page.goto(served.url + "/")
        await expect(page.locator("#token-form")).to_be_visible(timeout=WAIT_MS)
        await page.locator("#token").fill(token)
        await page.locator("#token-form button").click()
        await expect(page.locator("#shown")).to_contain_text("3대 중 3대", timeout=WAIT_MS)
        await expect(page.locator("#token-form")).to_be_hidden()
