"""Method `any` when the card side fails, a chip card read but not used, and cancels that
answer at once whatever the reader does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from posd.api import ApiClient
from posd.payments import ALL_MODES
from posd.sim import GOOD_QR_ACCOUNT
from protocols import srl_messages as srl
from tests.helpers.daemon import WAIT_S, RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


async def reader_state(d: RunningDaemon, state: str) -> None:
    await d.wait_status(lambda s: s["devices"]["card_reader"]["state"] == state)


async def test_any_keeps_waiting_for_a_qr_when_the_reader_is_unplugged(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        created = await d.create(1_500, "any")
        await reader_state(d, "busy")
        d.reader.unplug()
        await reader_state(d, "disconnected")
        assert (await d.payment(created["payment_id"]))["state"] == "waiting_for_card"
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(created["payment_id"])
        assert (done["state"], done["method"]) == ("approved", "qr"), done


async def test_any_keeps_waiting_for_a_qr_after_a_failed_card_read(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        created = await d.create(1_500, "any")
        await reader_state(d, "busy")
        d.reader.fail_next_read("card_error")
        await reader_state(d, "ready")  # the card side has ended
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        done = await d.wait_final(created["payment_id"])
        assert (done["state"], done["method"]) == ("approved", "qr"), done


async def test_any_declined_with_the_card_sides_reason_when_no_qr_comes(tmp_path: Path) -> None:
    async with running_daemon(tmp_path, card_reader=True, read_timeout_s=1) as d:
        assert d.reader is not None
        created = await d.create(1_500, "any")
        await reader_state(d, "busy")
        d.reader.fail_next_read("card_error")
        done = await d.wait_final(created["payment_id"])
        assert (done["state"], done["decline_reason"]) == ("declined", "card_error")


async def test_a_chip_card_read_but_not_used_is_told_z1(tmp_path: Path) -> None:
    """What the engine does with a read it does not take (a QR or a cancel came first while
    the card's CARD_DATA was on its way): the card's transaction is ended."""
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        reader = d.engine.counter.reader
        assert reader is not None
        read = asyncio.create_task(reader.read_card(1_000, ALL_MODES, 5))
        d.reader.present("seoroeum")
        await asyncio.wait_for(asyncio.shield(read), 5)
        await d.engine.counter.stop_read(read)
        assert d.reader.received[-1] == srl.Complete("Z1")


async def test_cancel_right_after_a_declined_chip_payment_answers_at_once(tmp_path: Path) -> None:
    """H-api's race: a cancel that lands as READ_STARTED arrives used to be lost in the driver
    (Python 3.11 wait_for), and the cancel waited for the reader's own read timeout: a read
    timeout far beyond the wait here makes that regression a clear failure."""
    async with (
        running_daemon(tmp_path, card_reader=True, read_timeout_s=60) as d,
        ApiClient(d.config.api.socket, WAIT_S) as api,
    ):
        assert d.reader is not None
        for i in range(20):
            poor = await api.create_payment(50_000, "card", f"poor{i}")
            d.reader.present("insufficient-funds")
            assert (await d.wait_final(poor["payment_id"]))["state"] == "declined"
            created = await api.create_payment(1_000, "card", f"k{i}")
            cancelled = await asyncio.wait_for(api.cancel(created["payment_id"]), WAIT_S)
            assert cancelled["state"] == "cancelled", (i, cancelled)


async def test_cancel_while_the_reader_is_silent_answers_and_frees_the_reader(
    tmp_path: Path,
) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        assert d.reader is not None
        created = await d.create(1_000, "card")
        await reader_state(d, "busy")
        d.reader.go_silent()
        status, body = await d.request("POST", f"/v1/payments/{created['payment_id']}/cancel")
        assert (status, body["state"]) == (200, "cancelled")
        # The driver gives the link up (CANCEL never acknowledged) and looks for the reader
        # again; once it answers, it serves the next payment.
        await reader_state(d, "disconnected")
        d.reader.wake()
        await reader_state(d, "ready")
        again = await d.create(1_000, "card")
        await reader_state(d, "busy")
        d.reader.present("seoroeum")
        done = await d.wait_final(again["payment_id"])
        assert done["state"] == "approved", done


@pytest.mark.parametrize("method", ["qr", "card", "any"])
async def test_five_parallel_cancels_all_answer_the_cancelled_payment(
    tmp_path: Path, method: str
) -> None:
    async with running_daemon(tmp_path, card_reader=True) as d:
        created = await d.create(1_500, method)
        if method != "qr":
            await reader_state(d, "busy")
        path = f"/v1/payments/{created['payment_id']}/cancel"
        answers = await asyncio.gather(*(d.request("POST", path) for _ in range(5)))
        assert [status for status, _ in answers] == [200] * 5, answers
        assert {body["state"] for _, body in answers} == {"cancelled"}
        assert (await d.payment(created["payment_id"]))["state"] == "cancelled"
        # Later too: a cancel of a cancelled payment is answered with it, never "too late".
        status, body = await d.request("POST", path)
        assert (status, body["state"]) == (200, "cancelled")
