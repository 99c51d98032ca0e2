"""A deaf shop is an alarm: the orders link away for longer than the threshold (1 s here,
60 s in the field), or no audio output that works; `hearing` once it is over. The audio
outputs fail for real: aplay on a sound card that does not exist, a printer port that is not
there, the console beeper's ioctl on a pseudo-terminal; the printer then appears."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

from drivers.audio import beep_command
from posd.sim import OrderFeed
from tests.drivers.audio.support import pty
from tests.helpers.mosquitto import Mosquitto
from tests.posd.orders.support import FAST, chimes, events, posd


async def test_deaf_when_the_orders_link_is_down_too_long_and_hearing_when_it_is_back(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with posd(tmp_path, mosquitto) as d, events(d) as hub:
        status = await d.wait_status(lambda s: s["orders"]["can_alert"] is True)
        assert status["orders"]["reason"] is None
        await asyncio.to_thread(mosquitto.stop)
        deaf = await hub.next("order", lambda e: e["state"] == "deaf")
        assert deaf["order_id"] is None and "orders link down for more than 1 s" in deaf["reason"]
        status = await d.wait_status(lambda s: s["orders"]["can_alert"] is False)
        assert status["orders"]["link"] == "down"
        assert status["orders"]["reason"].startswith("orders link down for more than 1 s")
        await asyncio.to_thread(mosquitto.start)
        hearing = await hub.next("order", lambda e: e["state"] == "hearing")
        assert hearing["reason"] is None
        status = await d.wait_status(lambda s: s["orders"]["can_alert"] is True)
        assert (status["orders"]["link"], status["orders"]["reason"]) == ("up", None)
        assert [e["state"] for e in hub.of("order")] == ["deaf", "hearing"]


async def test_deaf_when_every_audio_output_fails_and_hearing_when_one_works_again(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    printer_port = tmp_path / "lp0"
    command = beep_command("esc-paren-a", False).data
    with pty() as printer, pty() as not_a_console:
        os.symlink(printer.path, printer_port)
        tuning = replace(FAST, consoles=[not_a_console.path], find_printers=list)
        audio = {"output": "auto", "device": "plughw:99", "printer_port": str(printer_port)}
        timings = {"repeat_s": 0.5, "escalate_after_s": 30.0, "missed_after_s": 60.0}
        async with (
            posd(tmp_path, mosquitto, tuning=tuning, audio=audio, orders=timings) as d,
            events(d) as hub,
            OrderFeed(mosquitto.host, mosquitto.port) as platform,
        ):
            # ALSA has no card here: the chain falls back to the printer's buzzer.
            status = await d.wait_status(lambda s: s["devices"]["audio"]["output"] == "escpos")
            assert status["orders"]["can_alert"] is True
            await platform.send(platform.order("B-fallback"))
            await d.wait_orders(lambda b: chimes(b) >= 1 and b["alert"]["output"] == "escpos")
            assert await printer.read(len(command)) == command
            await d.request("POST", "/v1/orders/B-fallback/ack")

            printer_port.unlink()  # unplugged: now every output fails
            deaf = await hub.next("order", lambda e: e["state"] == "deaf")
            assert deaf["order_id"] is None
            assert deaf["reason"].startswith("no working audio output (alsa: ")
            assert "printer port" in deaf["reason"] and "no console beeper" in deaf["reason"]
            status = await d.wait_status(lambda s: s["orders"]["can_alert"] is False)
            assert status["devices"]["audio"] == {"state": "error", "output": "auto"}
            assert status["orders"]["reason"].startswith("no working audio output")
            assert any(e["device"] == "audio" and "escpos" in e["detail"] for e in hub.of("device"))

            # An order while deaf is taken (journaled, alerting); its chimes fail.
            await platform.send(platform.order("B-deaf"))
            failed = await d.wait_orders(lambda b: b["alerting"] == 1 and b["alert"]["failed"] >= 1)
            before = chimes(failed)

            os.symlink(printer.path, printer_port)
            hearing = await hub.next("order", lambda e: e["state"] == "hearing")
            assert hearing == {
                "order_id": None, "state": "hearing", "placed_at": None, "alerting_s": None,
                "reason": None,
            }  # fmt: skip
            await d.wait_orders(lambda b: chimes(b) > before and b["alert"]["output"] == "escpos")
            assert await printer.read(len(command)) == command
            status = await d.wait_status(lambda s: s["orders"]["can_alert"] is True)
            assert status["devices"]["audio"]["output"] == "escpos"
            assert status["devices"]["audio"]["state"] in ("ready", "busy")  # it may be beeping
            assert [e["state"] for e in hub.of("order") if e["order_id"] is None] == [
                "deaf",
                "hearing",
            ]
