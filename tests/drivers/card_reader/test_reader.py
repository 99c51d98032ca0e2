"""The card reader driver against the simulated SRL/1 reader, through real ptys."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from drivers.card_reader import (
    CardDataError,
    CardRead,
    CardReader,
    ReaderState,
    ReaderUnavailable,
    ReadFailed,
    card_read_from,
    ping_port,
)
from drivers.card_reader.session import INBOX_LIMIT, Throttle
from posd.sim import SimulatedCardReader
from posd.sim.cards import CARDS, FOREIGN_CARD, card_data
from posd.sim.cards import TestCard as Card
from posd.sim.ledger_accounts import GOOD_CARD
from posd.sim.pty import SimulatedLine
from protocols import srl_messages as srl
from protocols.ber_tlv import decode_tlv
from protocols.srl_frame import encode_frame
from tests.helpers.components import running, wait_until

ALL = 0b111
WAIT_S = 5.0


@pytest.fixture
async def sim(tmp_path: Path) -> AsyncIterator[SimulatedCardReader]:
    async with SimulatedCardReader(tmp_path / "posd-reader") as reader:
        yield reader


async def wait_state(reader: CardReader, state: ReaderState) -> None:
    async with asyncio.timeout(WAIT_S):
        await reader.wait_for_state(state)


def sent_start_read(sim: SimulatedCardReader) -> bool:
    return any(isinstance(m, srl.StartRead) for m in sim.received)


def make_reader(port: str | None, **kwargs: object) -> CardReader:
    return CardReader(port, reconnect_initial_s=0.02, reconnect_max_s=0.1, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def ready_reader(sim: SimulatedCardReader, **kwargs: object) -> AsyncIterator[CardReader]:
    reader = make_reader(sim.port, **kwargs)
    async with running(reader):
        await wait_state(reader, "ready")
        yield reader


@pytest.fixture
def silent_ptys() -> Iterator[list[str]]:
    """Serial ports with nothing behind them: opened fine, never answer."""
    lines = [SimulatedLine(device="silent port") for _ in range(2)]
    for line in lines:
        line.plug()
    yield [line.path for line in lines]
    for line in lines:
        line.unplug()


async def test_ping_pong_gives_reader_info(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        assert reader.info is not None
        assert (reader.info.model, reader.info.firmware, reader.info.serial) == (
            "SIM-R1",
            "1.0.0",
            "SIM00001",
        )
        assert reader.port == sim.port
        info = await reader.ping()
        assert info == reader.info
        assert reader.stats.frames_out == 2 and reader.stats.frames_in == 2


async def test_chip_read_then_complete(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum")
        read = await reader.read_card(12000, ALL, 30)
        assert isinstance(read, CardRead)
        assert read.entry_mode == "chip"
        assert read.pan == GOOD_CARD
        assert read.expiry == "3012"
        assert read.pan_sequence == 1
        assert read.track2 is not None and read.track2.startswith(GOOD_CARD + "=3012201")
        assert b"\x9f\x26\x08" in read.tlv
        # The first read on a link is preceded by a CANCEL (reader-link.md).
        assert sim.received == [srl.Ping(), srl.Cancel(), srl.StartRead(12000, 410, ALL, 30)]
        assert reader.state == "ready"
        result = await reader.complete("00", bytes.fromhex("910a00112233445566773030"))
        assert result.approved
        assert sim.received[3:] == [srl.Complete("00", bytes.fromhex("910a00112233445566773030"))]


async def test_card_declines_at_complete(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("declines-at-complete")
        assert isinstance(await reader.read_card(5000, ALL, 30), CardRead)
        assert not (await reader.complete("00", b"")).approved


async def test_ledger_not_reached_is_declined_by_the_card(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum")
        await reader.read_card(5000, ALL, 30)
        assert not (await reader.complete("Z3", b"")).approved


async def test_a_card_that_approves_offline_answers_z3_with_tc(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("approves-offline")
        assert isinstance(await reader.read_card(5000, ALL, 30), CardRead)
        result = await reader.complete("Z3", b"")
        assert result.approved
        items = {item.tag: item.value for item in decode_tlv(result.tlv)}
        assert items[0x9F27] == b"\x40"  # CID: TC
        # The ledger's own decline still binds it.
        sim.present("approves-offline")
        await reader.read_card(5000, ALL, 30)
        assert not (await reader.complete("51", b"")).approved


async def test_contactless_read(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum-contactless")
        read = await reader.read_card(3000, ALL, 30)
        assert isinstance(read, CardRead)
        assert (read.entry_mode, read.pan, read.expiry) == ("contactless", GOOD_CARD, "3012")


async def test_magstripe_read(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum-magstripe")
        read = await reader.read_card(3000, ALL, 30)
        assert isinstance(read, CardRead)
        assert read.entry_mode == "magstripe"
        assert read.pan == GOOD_CARD and read.expiry == "3012" and read.pan_sequence is None
        assert read.track2 == f"{GOOD_CARD}=301210100000"


async def test_card_not_in_the_requested_modes(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum-magstripe")
        assert await reader.read_card(3000, int(srl.Modes.CHIP), 30) == ReadFailed(
            "unsupported_card"
        )


@pytest.mark.parametrize("reason", ["use_chip", "card_removed", "card_error", "unsupported_card"])
async def test_read_failures_are_named(sim: SimulatedCardReader, reason: str) -> None:
    async with ready_reader(sim) as reader:
        sim.fail_next_read(reason)
        assert await reader.read_card(1000, ALL, 30) == ReadFailed(reason)
        assert reader.state == "ready"


async def test_reader_timeout(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        assert await reader.read_card(1000, ALL, 1) == ReadFailed("timeout")
        assert reader.state == "ready"


async def test_cancel_while_waiting_sends_cancel_and_waits_for_cancelled(
    sim: SimulatedCardReader,
) -> None:
    async with ready_reader(sim) as reader:
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_until(lambda: sent_start_read(sim), "START_READ")
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await read
        assert sim.received[-1] == srl.Cancel()
        assert reader.state == "ready"
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)


@pytest.mark.parametrize("arriving", ["READ_STARTED", "CARD_INSERTED"])
async def test_a_cancel_that_lands_as_a_reply_arrives_still_cancels_the_read(
    sim: SimulatedCardReader, arriving: str
) -> None:
    # The cancel runs in the loop turn right after the reply is queued for the waiting read:
    # Python 3.11's wait_for returned the reply then and dropped the cancellation, and the
    # read went on waiting for a card, no CANCEL sent.
    reads: list[asyncio.Task[CardRead | ReadFailed]] = []

    def cancel_on(line: str) -> None:
        if line == f"rx {arriving}" and reads:
            asyncio.get_running_loop().call_soon(reads[0].cancel)

    async with ready_reader(sim, trace=cancel_on) as reader:
        sim.present("declines-at-complete")
        await reader.read_card(1000, ALL, 30)
        await reader.complete("00", b"")
        sim.present("seoroeum")  # CARD_INSERTED comes just before its CARD_DATA
        reads.append(asyncio.create_task(reader.read_card(1000, ALL, 30)))
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(WAIT_S):
                await asyncio.shield(reads[0])
        assert sim.received[-1] == srl.Cancel()
        assert reader.state == "ready"
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)


async def test_second_operation_while_busy_is_refused(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_state(reader, "busy")
        with pytest.raises(ReaderUnavailable, match="busy"):
            await reader.read_card(1000, ALL, 30)
        sim.present("seoroeum")
        assert isinstance(await read, CardRead)


async def test_not_connected_is_unavailable(tmp_path: Path) -> None:
    reader = make_reader(str(tmp_path / "nothing-here"))
    async with running(reader):
        with pytest.raises(ReaderUnavailable, match="disconnected"):
            await reader.read_card(1000, ALL, 30)
        await wait_until(lambda: reader.last_error is not None, "an open error")
        assert reader.last_error is not None and "not there" in reader.last_error


async def test_a_file_that_is_not_a_tty_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "not-a-tty"
    path.write_bytes(b"")
    reader = make_reader(str(path))
    async with running(reader):
        await wait_state(reader, "error")
        assert reader.last_error is not None and str(path) in reader.last_error


async def test_bad_request_values_are_refused_before_sending(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sent = len(sim.received)
        with pytest.raises(srl.SrlMessageError):
            await reader.read_card(-5, ALL, 30)
        with pytest.raises(srl.SrlMessageError):
            await reader.read_card(1000, 0, 30)
        with pytest.raises(srl.SrlMessageError):
            await reader.complete("0", b"")
        assert len(sim.received) == sent and reader.state == "ready"


async def test_unplug_mid_read_then_replug(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_state(reader, "busy")
        await wait_until(lambda: sent_start_read(sim), "START_READ")
        sim.unplug()
        with pytest.raises(ReaderUnavailable, match="lost"):
            await read
        await wait_state(reader, "disconnected")
        with pytest.raises(ReaderUnavailable):
            await reader.read_card(1000, ALL, 30)
        sim.replug()
        await wait_state(reader, "ready")
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)


async def test_link_down_after_retransmissions_and_recovery(
    sim: SimulatedCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    # The driver's own logger at WARNING: a root level another test in this worker left
    # (posd.logs.handler.set_level, a reload) cannot hide the record from caplog.
    caplog.set_level(logging.WARNING, logger="drivers.card_reader")
    trace: list[str] = []
    async with ready_reader(sim, trace=trace.append) as reader:
        sim.go_silent()
        with pytest.raises(ReaderUnavailable, match="link lost"):
            await reader.read_card(1000, ALL, 30)
        # Told "link lost", the caller finds the reader disconnected and the loss logged.
        assert reader.state == "disconnected" and trace[-1] == "state disconnected"
        assert reader.stats.retransmits == 3 and reader.stats.link_downs == 1
        (down,) = [r for r in caplog.records if "link stats" in r.getMessage()]
        assert down.name == "drivers.card_reader" and down.levelno == logging.WARNING
        assert "no ACK after retransmissions" in down.getMessage()
        assert "'retransmits': 3" in down.getMessage()
        sim.wake()
        await wait_state(reader, "ready")
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)


async def test_noise_between_frames_is_skipped(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.inject(b"\x00\xff\x41garbage")
        sim.present("seoroeum")
        read = await reader.read_card(1000, ALL, 30)
        assert isinstance(read, CardRead) and read.pan == GOOD_CARD
        assert reader.stats.noise_bytes == 10


async def test_corrupted_frame_is_naked_and_repeated(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        sim.corrupt_next_frame()  # READ_STARTED arrives damaged
        sim.present("seoroeum")
        read = await reader.read_card(1000, ALL, 30)
        assert isinstance(read, CardRead) and read.pan == GOOD_CARD
        assert reader.stats.bad_crc == 1 and reader.stats.naks_sent == 1
        assert sim.link.stats.naks_received == 1 and sim.link.stats.retransmits == 1


async def test_lost_ack_makes_a_repeat_that_is_not_delivered_twice(
    sim: SimulatedCardReader,
) -> None:
    async with ready_reader(sim) as reader:
        sim.drop_next_ack()
        await reader.ping()  # the PONG comes; the ACK of the PING did not
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        assert reader.stats.retransmits == 1
        assert sim.link.stats.duplicates == 1
        assert sim.received.count(srl.Ping()) == 2  # the handshake's and ours, not the repeat


async def test_reader_error_during_a_read_is_unavailable(sim: SimulatedCardReader) -> None:
    async with ready_reader(sim) as reader:
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_state(reader, "busy")
        await wait_until(lambda: sent_start_read(sim), "START_READ")
        cmd, data = srl.encode_message(srl.ReaderError(0x42, "antenna fault"))
        sim.inject(encode_frame(200, cmd, data))
        with pytest.raises(ReaderUnavailable, match=r"0x42.*antenna fault"):
            await read
        assert sim.received[-1] == srl.Cancel(), "the reader is told to stop the read"
        assert reader.state == "ready"


def unsolicited_frames(sim: SimulatedCardReader, messages: list[srl.Message]) -> bytes:
    """Hand-made frames carrying `messages`, numbered so the last is not a SEQ the simulated
    reader will use next (the link would take its next frame for a repeat)."""
    last = (sim.link.next_seq + 128) % 256
    first = (last - len(messages) + 1) % 256
    return b"".join(
        encode_frame((first + i) % 256, *srl.encode_message(msg)) for i, msg in enumerate(messages)
    )


async def test_unsolicited_messages_while_idle_are_dropped_and_counted(
    sim: SimulatedCardReader,
) -> None:
    flood = 3 * INBOX_LIMIT
    async with ready_reader(sim) as reader:
        frames_before = reader.stats.frames_in
        sim.inject(unsolicited_frames(sim, [srl.CardInserted()] * flood))
        await wait_until(lambda: reader.stats.frames_in >= frames_before + flood, "the flood")
        assert reader.dropped_messages == flood
        assert reader.state == "ready"
        sim.present("seoroeum")
        read = await asyncio.wait_for(reader.read_card(1000, ALL, 30), WAIT_S)
        assert isinstance(read, CardRead)
        assert reader.dropped_messages == flood


async def test_a_flood_during_a_read_is_bounded_and_the_answer_still_arrives(
    sim: SimulatedCardReader,
) -> None:
    flood = 2000
    async with ready_reader(sim) as reader:
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_until(lambda: sent_start_read(sim), "START_READ")
        await wait_state(reader, "busy")
        frames_before = reader.stats.frames_in
        sim.inject(unsolicited_frames(sim, [srl.CardRemoved()] * flood))
        await wait_until(lambda: reader.stats.frames_in >= frames_before + flood, "the flood")
        # Delivered in chunks of many frames each, faster than the read takes them: the inbox
        # drops its oldest rather than grow.
        assert reader.dropped_messages > 0
        sim.present("seoroeum")
        assert isinstance(await asyncio.wait_for(read, WAIT_S), CardRead)


async def test_reader_errors_are_warned_about_once_per_interval(
    sim: SimulatedCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.card_reader")
    errors: list[srl.Message] = [srl.ReaderError(0x42, "antenna fault")] * 50
    async with ready_reader(sim) as reader:
        frames_before = reader.stats.frames_in
        sim.inject(unsolicited_frames(sim, errors))
        await wait_until(lambda: reader.stats.frames_in >= frames_before + 50, "the errors")
        assert reader.state == "ready"
    warned = [r.getMessage() for r in caplog.records if "reports ERROR" in r.getMessage()]
    assert len(warned) == 1 and "antenna fault" in warned[0]


def test_throttle_lets_one_line_through_per_interval_and_counts_the_rest() -> None:
    throttle = Throttle(60.0)
    assert throttle.allow(1000.0) == 0
    assert [throttle.allow(1000.0 + t) for t in (1.0, 30.0, 59.9)] == [None, None, None]
    assert throttle.allow(1060.0) == 3
    assert throttle.allow(1061.0) is None
    assert throttle.allow(1200.0) == 1


async def test_unusable_card_data_is_a_card_error_without_the_pan(
    sim: SimulatedCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    broken = Card("broken", "94100000000000A1", "3012", "chip")
    async with ready_reader(sim) as reader:
        sim.present(broken)
        assert await reader.read_card(1000, ALL, 30) == ReadFailed("card_error")
    assert "unusable card data" in caplog.text
    assert "94100000000000A1" not in caplog.text and "9410000000" not in caplog.text


async def test_no_pan_in_logs_traces_or_reprs(
    sim: SimulatedCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    trace: list[str] = []
    async with ready_reader(sim, trace=trace.append) as reader:
        sim.present("seoroeum")
        read = await reader.read_card(1000, ALL, 30)
        await reader.complete("00", b"")
        sim.present("seoroeum-magstripe")
        swipe = await reader.read_card(1000, ALL, 30)
    text = caplog.text + "\n".join(trace) + repr(read) + str(read) + repr(swipe)
    assert GOOD_CARD not in text
    assert "941000******0001" in "\n".join(trace)


def test_card_read_from_refuses_card_data_without_a_pan() -> None:
    with pytest.raises(CardDataError, match="without a PAN"):
        card_read_from(srl.CardData(srl.EntryMode.CHIP, bytes.fromhex("9f360200 01")))
    with pytest.raises(CardDataError, match="track 2"):
        card_read_from(srl.CardData(srl.EntryMode.MAGSTRIPE, bytes.fromhex("5a021234")))
    with pytest.raises(CardDataError, match="offset"):
        card_read_from(srl.CardData(srl.EntryMode.CHIP, bytes.fromhex("5a09941000")))


def test_foreign_card_reads_like_any_other() -> None:
    # The reader does not judge BINs; posd declines the card after reading it.
    msg = card_data(CARDS["foreign"], 1000, datetime.date(2026, 11, 25), 1)
    assert card_read_from(msg).pan == FOREIGN_CARD


async def test_auto_probes_candidates_and_takes_the_one_that_pongs(
    sim: SimulatedCardReader, silent_ptys: list[str]
) -> None:
    candidates = [silent_ptys[0], sim.port, silent_ptys[1]]
    reader = make_reader("auto", candidates=lambda: candidates)
    async with running(reader):
        await wait_state(reader, "ready")
        assert reader.port == sim.port
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)


async def test_auto_with_no_reader_anywhere_stays_disconnected(silent_ptys: list[str]) -> None:
    reader = make_reader(None, candidates=lambda: silent_ptys)
    async with running(reader):
        await wait_until(lambda: reader.last_error is not None, "a probe error")
        assert reader.state == "disconnected"
        assert "no card reader answered" in (reader.last_error or "")


async def test_ping_port_for_posd_devices(sim: SimulatedCardReader, silent_ptys: list[str]) -> None:
    info = await ping_port(sim.port)
    assert info.model == "SIM-R1"
    with pytest.raises(ReaderUnavailable, match="PONG"):
        await ping_port(silent_ptys[0])


def test_simulator_refuses_unknown_cards_and_reasons() -> None:
    sim = SimulatedCardReader()
    try:
        with pytest.raises(ValueError, match="no test card 'gold'"):
            sim.present("gold")
        with pytest.raises(ValueError, match="no READ_FAILED reason 'bored'"):
            sim.fail_next_read("bored")
    finally:
        sim.close()


@pytest.mark.parametrize("name", ["seoroeum", "seoroeum-contactless", "expired", "foreign"])
def test_simulated_chip_data_carries_every_tag_reader_link_md_lists(name: str) -> None:
    msg = card_data(CARDS[name], 12000, datetime.date(2026, 11, 25), 7)
    tags = {item.tag for item in decode_tlv(msg.tlv)}
    required = {
        0x5A,
        0x5F24,
        0x5F34,
        0x9F26,
        0x9F27,
        0x9F10,
        0x9F37,
        0x9F36,
        0x95,
        0x9A,
        0x9C,
        0x9F02,
        0x5F2A,
        0x82,
        0x84,
    }
    assert required <= tags
    read = card_read_from(msg)
    assert read.pan == CARDS[name].pan and read.expiry == CARDS[name].expiry


def test_simulated_magstripe_data_is_track_2_alone() -> None:
    msg = card_data(CARDS["seoroeum-magstripe"], 1, datetime.date(2026, 11, 25), 1)
    assert [item.tag for item in decode_tlv(msg.tlv)] == [0x57]


# ---- after (re)connecting, a busy reader, vendor text ---------------------------------------


def commands(sim: SimulatedCardReader, since: int = 0) -> list[str]:
    return [type(m).__name__ for m in sim.received[since:]]


async def test_a_read_left_running_before_posd_came_is_cancelled_before_the_first_read(
    sim: SimulatedCardReader,
) -> None:
    sim.read_left_running()
    async with ready_reader(sim) as reader:
        sim.present("seoroeum")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        assert commands(sim) == ["Ping", "Cancel", "StartRead"]
        # Only the first read of a link: the reader is known idle after it.
        sim.present("seoroeum-contactless")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        assert commands(sim)[3:] == ["StartRead"]


async def test_every_new_link_cancels_again_before_its_first_read(
    sim: SimulatedCardReader,
) -> None:
    async with ready_reader(sim) as reader:
        sim.present("seoroeum-contactless")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        sim.read_left_running()
        sim.unplug()
        await wait_state(reader, "disconnected")
        sim.replug()
        sim.read_left_running()  # a replug does not reset it here: a hub power-cycles, or not
        await wait_state(reader, "ready")
        since = len(sim.received)
        sim.present("seoroeum-contactless")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        assert commands(sim, since) == ["Cancel", "StartRead"]


async def test_a_busy_answer_to_start_read_gets_cancel_and_one_retry(
    sim: SimulatedCardReader, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="drivers.card_reader")
    async with ready_reader(sim) as reader:
        sim.present("seoroeum-contactless")
        assert isinstance(await reader.read_card(1000, ALL, 30), CardRead)
        # A read posd did not start, after its CANCEL of this link.
        sim.read_left_running()
        since = len(sim.received)
        read = asyncio.create_task(reader.read_card(2000, ALL, 30))
        await wait_until(
            lambda: commands(sim, since) == ["StartRead", "Cancel", "StartRead"], "the retry"
        )
        sim.present("seoroeum")
        assert isinstance(await asyncio.wait_for(read, WAIT_S), CardRead)
        assert reader.state == "ready"
    assert "busy with a read posd did not start" in caplog.text


async def test_vendor_text_is_cleaned_before_it_is_kept_logged_or_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drivers.card_reader")
    # No ";" in it: PONG's fields are split on it.
    evil = "SR\x1b[2J\x1b[1m-200 \u202e9410123456789012"
    async with (
        SimulatedCardReader(tmp_path / "r", model=evil, firmware="1.0\r\nOK") as sim,
        ready_reader(sim) as reader,
    ):
        assert reader.info is not None
        assert reader.info.model == "SR-200 941012******9012"
        assert reader.info.firmware == "1.0 OK"
        read = asyncio.create_task(reader.read_card(1000, ALL, 30))
        await wait_until(lambda: sent_start_read(sim), "START_READ")
        text = "fault \x1b[31mcard 9410123456789012\x00 \x9b2J"
        sim.inject(encode_frame(200, *srl.encode_message(srl.ReaderError(0x42, text))))
        with pytest.raises(ReaderUnavailable) as refused:
            await read
    message = str(refused.value)
    assert message.endswith("fault card 941012******9012")
    for text in [message] + [r.getMessage() for r in caplog.records]:
        assert "\x1b" not in text and "\u202e" not in text and "\x9b" not in text
        assert "9410123456789012" not in text and "\x00" not in text
