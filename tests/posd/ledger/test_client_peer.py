"""The ledger client against scripted peers that break the profile, and built from a config."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import fields, replace
from pathlib import Path

import pytest

from posd.config import load_config
from posd.ledger import LedgerBadResponse, LedgerClient, LedgerTimeout, LedgerTimings
from posd.sim import LedgerSimulator, server_ssl_context
from protocols.iso8583_profile import encode_message
from protocols.ledger_messages import (
    LedgerRequest,
    NetworkRequest,
    decode_request,
    encode,
    respond,
    respond_network,
)
from protocols.length_prefix import LengthPrefixDecoder, frame
from tests.helpers.configs import MAC_KEY_HEX, write_config
from tests.helpers.ledger import (
    FAST,
    MAC_KEY,
    WAIT_S,
    Stans,
    plain_client,
    purchase,
    running,
    wait_until,
)
from tests.helpers.tls import make_pki

Answer = Callable[[LedgerRequest], bytes]


class ScriptedLedger:
    """Plain TCP: answers 0800 with `network_code`, and a financial request with `answer`'s
    bytes (written as they are, so they can be anything)."""

    def __init__(self, answer: Answer, network_code: str = "00") -> None:
        self.answer = answer
        self.network_code = network_code
        self.connections = 0
        self.connected = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def __aenter__(self) -> ScriptedLedger:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.connected.set()
        self._writers.append(writer)
        decoder = LengthPrefixDecoder()
        while data := await reader.read(4096):
            for message in decoder.feed(data):
                request = decode_request(message, MAC_KEY).message
                if isinstance(request, NetworkRequest):
                    reply = respond_network(request, self.network_code)
                    writer.write(frame(encode(reply, MAC_KEY)))
                else:
                    writer.write(self.answer(request))


@asynccontextmanager
async def client_of(port: int, wait_up: bool = True) -> AsyncIterator[LedgerClient]:
    async with running(plain_client(port), wait_up) as client:
        yield client


def good(request: LedgerRequest) -> bytes:
    return frame(encode(respond(request, "00", rrn="000000000001"), MAC_KEY))


async def test_refused_sign_on_keeps_the_link_down_and_retries() -> None:
    async with ScriptedLedger(good, network_code="91") as peer, client_of(peer.port, False) as c:
        await wait_until(lambda: peer.connections >= 2)
        assert not c.is_up()
        assert c.last_error is not None and "sign-on refused" in c.last_error
        assert "39=91" in c.last_error


async def test_malformed_answer_is_a_bad_response() -> None:
    def missing_39(request: LedgerRequest) -> bytes:
        fields = respond(request, "00").fields()
        del fields[39]
        return frame(encode_message("0210", fields, MAC_KEY))

    async with ScriptedLedger(missing_39) as peer, client_of(peer.port) as client:
        with pytest.raises(LedgerBadResponse, match="field 39"):
            await client.send(purchase(), 5)
        assert client.is_up()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda answer: answer[:-3], "field 64"),  # truncated inside the MAC
        (lambda answer: answer + b"\x00junk", "Extra data"),  # bytes after the last field
    ],
    ids=["truncated", "trailing-garbage"],
)
async def test_a_broken_answer_fails_its_request_at_once(
    damage: Callable[[bytes], bytes], problem: str
) -> None:
    def broken(request: LedgerRequest) -> bytes:
        return frame(damage(encode(respond(request, "00", rrn="000000000001"), MAC_KEY)))

    async with ScriptedLedger(broken) as peer, client_of(peer.port) as client:
        # The request's own timeout is far past the test's bound: only a request failed on
        # the answer's arrival can pass, one left to time out fails the test.
        async with asyncio.timeout(WAIT_S):
            with pytest.raises(LedgerBadResponse, match=problem):
                await client.send(purchase(), 600)
        assert client.is_up()


async def test_answer_for_another_terminal_is_a_bad_response() -> None:
    def elsewhere(request: LedgerRequest) -> bytes:
        return frame(encode(replace(respond(request, "00"), terminal_id="T0000002"), MAC_KEY))

    async with ScriptedLedger(elsewhere) as peer, client_of(peer.port) as client:
        with pytest.raises(LedgerBadResponse, match="field 41"):
            await client.send(purchase(), 5)


async def test_a_stray_answer_is_ignored_and_the_right_one_taken() -> None:
    def stray_first(request: LedgerRequest) -> bytes:
        stray = respond(replace(request, stan=request.stan % 999_999 + 1), "05")
        return frame(encode(stray, MAC_KEY)) + good(request)

    async with ScriptedLedger(stray_first) as peer, client_of(peer.port) as client:
        assert (await client.send(purchase(), 5)).approved


async def test_zero_length_frame_takes_the_link_down() -> None:
    async with ScriptedLedger(lambda _: b"\x00\x00") as peer, client_of(peer.port) as client:
        with pytest.raises(LedgerTimeout):  # LedgerLinkLost: it went out, then the link broke
            await client.send(purchase(), 5)
        await wait_until(lambda: (client.last_error or "").startswith("framing error"))


def test_timings_are_checked() -> None:
    with pytest.raises(ValueError, match="echo_idle_s"):
        LedgerTimings(echo_idle_s=0)
    with pytest.raises(ValueError, match="backoff_initial_s"):
        LedgerTimings(backoff_initial_s=5, backoff_max_s=1)


def test_the_backoff_is_drawn_over_its_whole_interval_above_a_floor() -> None:
    timings = LedgerTimings(backoff_initial_s=1, backoff_max_s=8)
    assert timings.backoff_floor_s == 0.1
    for failures, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (50, 8)]:
        delays = [timings.backoff(failures) for _ in range(2_000)]
        assert all(0.1 <= delay <= ceiling for delay in delays)
        # Full jitter: both ends of the interval are reached and the mean is its middle
        # (2 000 draws: each bound below fails with a chance under 1e-80).
        assert min(delays) < 0.1 + ceiling / 10 and max(delays) > ceiling * 0.9
        assert abs(statistics.fmean(delays) - (0.1 + ceiling) / 2) < ceiling / 10


class RecordedTimings(LedgerTimings):
    """The client's real timings, noting the failure count each reconnect waits for."""

    def backoff(self, failures: int) -> float:
        ASKED.append(failures)
        return super().backoff(failures)


ASKED: list[int] = []


def recorded(timings: LedgerTimings) -> RecordedTimings:
    ASKED.clear()
    return RecordedTimings(**{f.name: getattr(timings, f.name) for f in fields(timings)})


async def test_a_refused_sign_on_backs_off_like_a_refused_connect() -> None:
    async with ScriptedLedger(good, network_code="91") as peer:
        client = plain_client(peer.port, timings=recorded(FAST))
        task = asyncio.create_task(client.run(lambda: None))
        try:
            await wait_until(lambda: len(ASKED) >= 4)
        finally:
            task.cancel()
            await asyncio.wait({task})
        # Each refusal is one more failure: the wait doubles towards backoff_max_s, it does
        # not restart from the shortest as after a link that was up.
        assert ASKED[:4] == [1, 2, 3, 4]
        assert peer.connections >= 4


def sign_ons(sim: LedgerSimulator) -> int:
    return sum(1 for seen in sim.seen if seen.network_code == "001")


async def test_after_a_link_that_was_up_the_wait_starts_again_from_the_shortest() -> None:
    async with LedgerSimulator(mac_key=MAC_KEY) as sim:
        client = plain_client(sim.port, timings=recorded(FAST))
        task = asyncio.create_task(client.run(lambda: None))
        try:
            async with asyncio.timeout(WAIT_S):
                await client.wait_up()
            for _ in range(3):
                before = sign_ons(sim)
                sim.drop_connections()
                # A new sign-on seen is a new session (the old one ended); up, it answered.
                await wait_until(lambda: sign_ons(sim) > before and client.is_up())  # noqa: B023
        finally:
            task.cancel()
            await asyncio.wait({task})
        assert ASKED == [1, 1, 1]


async def test_from_config_over_tls(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    context = server_ssl_context(pki.server_cert, pki.server_key, pki.ca_file)
    async with LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX), ssl_context=context) as sim:
        path = write_config(
            tmp_path,
            ledger={
                "host": "localhost",
                "port": sim.port,
                "tls": True,
                "ca_file": str(pki.ca_file),
                "cert_file": str(pki.client_cert),
                "key_file": str(pki.client_key),
            },
        )
        client = LedgerClient.from_config(load_config(path), Stans(), FAST)
        task = asyncio.create_task(client.run(lambda: None))
        try:
            async with asyncio.timeout(WAIT_S):
                await client.wait_up()
            assert (await client.send(purchase(), 5)).approved
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


@pytest.mark.parametrize("turns", range(12))
async def test_a_stop_during_a_refused_sign_on_is_never_lost(turns: int) -> None:
    # The client's stop is a cancellation; one landing while a refused session is torn down
    # was swallowed once, and the client reconnected forever. The sweep of loop turns after
    # the connect puts the cancellation at each step of that teardown.
    async with ScriptedLedger(good, network_code="91") as peer:
        for _ in range(10):
            client = plain_client(peer.port)
            peer.connected.clear()
            task = asyncio.create_task(client.run(lambda: None))
            async with asyncio.timeout(WAIT_S):
                await peer.connected.wait()
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=WAIT_S)
            assert done, f"the client did not stop when cancelled {turns} turns after connecting"
