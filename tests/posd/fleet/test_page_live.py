"""The page in the real browser on a live broker: a simulated box's process is SIGKILLed, the
broker fires its will, and the page shows it offline without a reload."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from playwright.async_api import expect

from posd.fleet import SimFleet
from tests.helpers.mosquitto import Mosquitto
from tests.posd.fleet.live import live_console
from tests.posd.fleet.test_page import WAIT_MS, browser, status_cell

ROOT = Path(__file__).resolve().parents[3]


def box_process(broker: Mosquitto, first: int) -> subprocess.Popen[str]:
    """`posd fleet sim 1 --first K` as its own process, once its box is connected."""
    child = subprocess.Popen(
        [sys.executable, "-m", "posd", "fleet", "sim", "1", "--first", str(first),
         "--broker", f"{broker.host}:{broker.port}"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    assert child.stdout is not None
    line = child.stdout.readline()
    assert "1 boxes" in line and "connected" in line, line
    return child


async def test_a_killed_box_goes_offline_on_the_page(tmp_path: Path, mosquitto: Mosquitto) -> None:
    child = box_process(mosquitto, 21)
    try:
        async with (
            SimFleet(mosquitto.host, mosquitto.port, 20, schedule=False) as fleet,
            live_console(tmp_path / "c.db", mosquitto) as live,
            browser(tmp_path) as context,
        ):
            fleet.act("S0000004", lambda box, now: box.go_deaf("no working audio output", now))
            await live.until(lambda: live.shown(21))
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(live.served.url + "/")
            await expect(page.locator("#link")).to_contain_text("브로커 연결됨", timeout=WAIT_MS)
            await expect(page.locator("#shown")).to_contain_text("21대 중 21대", timeout=WAIT_MS)
            await expect(page.locator("#n-offline")).to_have_text("0")
            await expect(page.locator("#n-deaf")).to_have_text("1", timeout=WAIT_MS)

            os.kill(child.pid, signal.SIGKILL)  # its socket dies with it: the will fires
            child.wait(10)
            await expect(page.locator("#n-offline")).to_have_text("1", timeout=WAIT_MS)
            await expect(status_cell(page, "S0000021")).to_have_text(  # type: ignore[arg-type]
                "오프라인 Offline", timeout=WAIT_MS
            )
            await expect(page.locator("#box-rows tr.row").first).to_have_attribute(
                "data-tid", "S0000021"
            )
            await page.screenshot(path=str(tmp_path / "console-live.png"), full_page=True)
            assert errors == []
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        assert child.stdout is not None
        child.stdout.close()
