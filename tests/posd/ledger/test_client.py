"""The ledger client against the reference ledger, over real sockets with real mutual TLS."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest

from posd.ledger import (
    LedgerBadResponse,
    LedgerClient,
    LedgerLinkLost,
    LedgerSecurityError,
    LedgerTimeout,
    LedgerTimings,
    LedgerTls,
    LedgerUnavailable,
)
from posd.sim.ledger import LedgerSimulator, Seen, server_ssl_context
from posd.sim.ledger_accounts import (
    EXPIRED_CARD,
    GOOD_CARD,
    GOOD_QR_ACCOUNT,
    POOR_CARD,
)
from protocols.ledger_fields import offline_auth_code
from protocols.ledger_messages import (
    LedgerRequest,
    LedgerResponse,
    OriginalData,
    QrPayer,
    build_advice,
    build_purchase,
    build_refund,
    build_reversal,
    repeat_of,
)
from tests.helpers.ledger import (
    FAST,
    MAC_KEY,
    MERCHANT,
    STANS,
    TERMINAL,
    WAIT_S,
    Stans,
    now,
    purchase,
    wait_until,
)
from tests.helpers.tls import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def rogue(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("rogue"), "rogue CA")


@asynccontextmanager
async def ledger(pki: Pki | None, server: Pki | None = None) -> AsyncIterator[LedgerSimulator]:
    """The simulator; with TLS its certificate comes from `server` (default: `pki`)."""
    context = None
    if pki is not None:
        own = server or pki
        context = server_ssl_context(own.server_cert, own.server_key, pki.ca_file)
    async with LedgerSimulator(mac_key=MAC_KEY, ssl_context=context) as sim:
        yield sim


@asynccontextmanager
async def client_for(
    sim: LedgerSimulator,
    tls: LedgerTls | None,
    timings: LedgerTimings = FAST,
    wait_up: bool = True,
) -> AsyncIterator[LedgerClient]:
    client = LedgerClient(
        host="127.0.0.1" if tls is None else "localhost",
        port=sim.port,
        terminal_id=TERMINAL,
        mac_key=MAC_KEY,
        stan_source=Stans(),
        tls=tls,
        timings=timings,
    )
    started = asyncio.Event()
    task = asyncio.create_task(client.run(started.set))
    try:
        async with asyncio.timeout(WAIT_S):
            await started.wait()
            if wait_up:
                await client.wait_up()
        yield client
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def tls_of(pki: Pki, client: Pki | None = None) -> LedgerTls:
    """Trust `pki`'s CA; present `client`'s certificate (default: `pki`'s)."""
    own = client or pki
    return LedgerTls(pki.ca_file, own.client_cert, own.client_key)


@asynccontextmanager
async def linked(pki: Pki, timings: LedgerTimings = FAST) -> AsyncIterator[
    tuple[LedgerSimulator, LedgerClient]
]:  # fmt: skip
    async with ledger(pki) as sim, client_for(sim, tls_of(pki), timings) as client:
        yield sim, client


def reversal_of(original: LedgerRequest) -> LedgerRequest:
    return build_reversal(original, stan=next(STANS), transmitted_at=now(), local_now=now())


def financial(seen: list[Seen]) -> list[Seen]:
    return [s for s in seen if s.network_code is None]


# ---- link life ---------------------------------------------------------------------------


async def test_sign_on_over_mutual_tls_before_anything_else(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        assert client.link == "up" and client.is_up()
        assert sim.seen[0].mti == "0800" and sim.seen[0].network_code == "001"
        assert client.last_rtt_ms is not None and client.last_error is None
        response = await client.send(purchase(), 5)
        assert response.approved
        assert [s.network_code for s in sim.seen] == ["001", None]


async def test_send_before_sign_on_is_unavailable_and_sends_nothing(pki: Pki) -> None:
    async with ledger(pki) as sim:
        sim.faults.no_network_answer = True  # sign-on never answered
        async with client_for(sim, tls_of(pki), wait_up=False) as client:
            await sim.wait_seen(lambda s: s.network_code == "001")
            assert client.link in ("connecting", "down")
            with pytest.raises(LedgerUnavailable):
                await client.send(purchase(), 5)
            assert financial(sim.seen) == []


async def test_plain_tcp_when_tls_is_off() -> None:
    async with ledger(None) as sim, client_for(sim, None) as client:
        assert (await client.send(purchase(), 5)).approved


async def test_sign_off_on_orderly_stop(pki: Pki) -> None:
    async with ledger(pki) as sim:
        async with client_for(sim, tls_of(pki)):
            pass
        await sim.wait_seen(lambda s: s.network_code == "002")


async def test_sign_off_needs_no_stan_source_at_stop(pki: Pki) -> None:
    class ClosingStans(Stans):
        closed = False

        async def __call__(self) -> int:
            if self.closed:
                raise RuntimeError("the journal is closed")
            return await super().__call__()

    stans = ClosingStans()
    async with ledger(pki) as sim:
        client = LedgerClient(
            host="localhost", port=sim.port, terminal_id=TERMINAL, mac_key=MAC_KEY,
            stan_source=stans, tls=tls_of(pki), timings=FAST,
        )  # fmt: skip
        task = asyncio.create_task(client.run(lambda: None))
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()
        stans.closed = True  # components stop together: the journal may go first
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        signed_off = await sim.wait_seen(lambda s: s.network_code == "002")
        assert signed_off.stan == 2  # taken at sign-on, after the sign-on's own 1


async def test_echo_after_idle(pki: Pki) -> None:
    async with linked(pki, replace(FAST, echo_idle_s=0.2)) as (sim, client):
        await sim.wait_seen(lambda s: s.network_code == "301")
        assert client.is_up()
        assert sim.connections_accepted == 1


async def test_unanswered_echo_takes_the_link_down_then_it_comes_back(pki: Pki) -> None:
    async with linked(pki, replace(FAST, echo_idle_s=0.2)) as (sim, client):
        sim.faults.no_network_answer = True
        await wait_until(lambda: not client.is_up())
        assert client.last_error is not None and "0800/301" in client.last_error
        sim.faults.no_network_answer = False
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()
        assert sim.connections_accepted >= 2


async def test_link_drop_is_seen_at_once_and_the_link_rebuilt(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.drop_connections()
        await wait_until(lambda: not client.is_up())
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()
        assert sim.connections_accepted == 2
        assert (await client.send(purchase(), 5)).approved


async def test_refused_connections_make_send_unavailable_before_anything_goes_out(
    pki: Pki,
) -> None:
    async with linked(pki) as (sim, client):
        await sim.refuse_connections(True)
        await wait_until(lambda: client.last_error is not None and "cannot connect" in
                         client.last_error)  # fmt: skip
        assert not client.is_up()
        before = len(sim.seen)
        with pytest.raises(LedgerUnavailable):
            await client.send(purchase(), 5)
        assert len(sim.seen) == before
        await sim.refuse_connections(False)
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()


async def test_ledger_with_a_certificate_from_another_ca_is_refused(pki: Pki, rogue: Pki) -> None:
    async with ledger(pki, server=rogue) as sim:
        async with client_for(sim, tls_of(pki), wait_up=False) as client:
            await wait_until(lambda: client.last_error is not None)
            assert "certificate" in (client.last_error or "")
            assert not client.is_up()
        assert sim.seen == []


async def test_terminal_with_a_certificate_from_another_ca_is_refused(pki: Pki, rogue: Pki) -> None:
    async with ledger(pki) as sim:
        async with client_for(sim, tls_of(pki, client=rogue), wait_up=False) as client:
            await wait_until(lambda: client.last_error is not None)
            assert not client.is_up()
        assert sim.seen == []


async def test_ledger_certificate_for_another_host_name_is_refused(
    pki: Pki, tmp_path: Path
) -> None:
    other = make_pki(tmp_path / "other-name", server_names=("ledger.example",))
    async with ledger(other) as sim:
        async with client_for(sim, tls_of(other), wait_up=False) as client:
            await wait_until(lambda: client.last_error is not None)
            assert "certificate" in (client.last_error or "")
            assert not client.is_up()
        assert sim.seen == []


# ---- payments ----------------------------------------------------------------------------


async def test_purchase_approved_moves_the_money(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        request = purchase(amount=12_000)
        response = await client.send(request, 5)
        assert response.approved and response.stan == request.stan
        assert response.rrn is not None and response.auth_code is not None
        assert sim.rules.balance(GOOD_CARD) == 1_000_000 - 12_000


async def test_qr_purchase(pki: Pki) -> None:
    async with linked(pki) as (_sim, client):
        request = build_purchase(
            stan=next(STANS), transmitted_at=now(), local_now=now(), amount=3000,
            terminal_id=TERMINAL, merchant_id=MERCHANT,
            payer=QrPayer(GOOD_QR_ACCOUNT, "hQVDUFYwMWEA"),
        )  # fmt: skip
        assert (await client.send(request, 5)).approved


@pytest.mark.parametrize(
    ("pan", "amount", "code", "reason"),
    [
        (POOR_CARD, 10_000, "51", "insufficient_funds"),
        ("9410999999999999", 1_000, "14", "invalid_card"),
        (EXPIRED_CARD, 1_000, "54", "card_expired"),
    ],
)
async def test_declines(pki: Pki, pan: str, amount: int, code: str, reason: str) -> None:
    async with linked(pki) as (_sim, client):
        response = await client.send(purchase(pan, amount), 5)
        assert not response.approved
        assert response.response_code == code and response.decline_reason == reason


async def test_refund_with_37_and_90_and_the_over_refund(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        original = purchase(amount=20_000)
        approved = await client.send(original, 5)
        assert approved.rrn is not None

        def refund(amount: int) -> LedgerRequest:
            return build_refund(
                stan=next(STANS), transmitted_at=now(), local_now=now(), amount=amount,
                terminal_id=TERMINAL, merchant_id=MERCHANT,
                original=OriginalData.of(original), rrn=approved.rrn or "",
            )  # fmt: skip

        assert (await client.send(refund(15_000), 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000 - 5_000
        over = await client.send(refund(5_001), 5)
        assert over.response_code == "13" and over.decline_reason == "invalid_amount"
        assert (await client.send(refund(5_000), 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000


async def test_reversal_undoes_and_a_reversal_of_an_unseen_payment_is_00(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        original = purchase(amount=7_000)
        assert (await client.send(original, 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 993_000
        reversal = reversal_of(original)
        answer = await client.send(reversal, 5)
        assert answer.mti == "0410" and answer.approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
        # The repeat gets the first answer and does not move money again.
        assert (await client.send(repeat_of(reversal), 5)) == answer
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
        never_sent = purchase(amount=1_000)
        assert (await client.send(reversal_of(never_sent), 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000


async def test_advice_and_its_repeat_book_once(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        advice = build_advice(purchase(amount=4_000), offline_auth_code(7))
        first = await client.send(advice, 5)
        assert first.mti == "0230" and first.approved and first.auth_code == "Y10007"
        again = await client.send(repeat_of(advice), 5)
        assert again == first
        assert sim.rules.balance(GOOD_CARD) == 996_000
        assert [s.mti for s in financial(sim.seen)] == ["0220", "0221"]


async def test_resent_request_gets_the_first_answer_and_moves_money_once(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        request = purchase(amount=2_500)
        first = await client.send(request, 5)
        assert await client.send(request, 5) == first
        assert sim.rules.balance(GOOD_CARD) == 997_500


async def test_out_of_order_answers_are_matched_by_stan(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.reverse_order = 3
        requests = [purchase(amount=1_000 * (i + 1)) for i in range(3)]
        answers = await asyncio.gather(*(client.send(r, 5) for r in requests))
        assert [a.stan for a in answers] == [r.stan for r in requests]
        assert [a.amount for a in answers] == [1_000, 2_000, 3_000]


# ---- faults ------------------------------------------------------------------------------


async def test_no_answer_is_a_timeout_and_the_reversal_repairs_it(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.no_answer = True
        request = purchase(amount=9_000)
        with pytest.raises(LedgerTimeout):
            await client.send(request, 0.3)
        assert client.is_up()
        assert sim.rules.balance(GOOD_CARD) == 991_000  # the ledger did act on it
        sim.faults.no_answer = False
        assert (await client.send(reversal_of(request), 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000


async def test_a_timeout_makes_the_link_probe_at_once(pki: Pki) -> None:
    async with linked(pki) as (sim, client):  # echo_idle_s is 30 s here
        sim.faults.no_answer = True
        with pytest.raises(LedgerTimeout):
            await client.send(purchase(), 0.2)
        await sim.wait_seen(lambda s: s.network_code == "301")
        assert client.is_up()  # the echo was answered: only that request was lost


async def test_a_link_that_swallows_everything_is_down_after_one_timeout(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.no_answer = sim.faults.no_network_answer = True
        with pytest.raises(LedgerTimeout):
            await client.send(purchase(), 0.2)
        await wait_until(lambda: not client.is_up())
        assert "0800/301" in (client.last_error or "")
        with pytest.raises(LedgerUnavailable):
            await client.send(purchase(), 5)


async def test_slow_answer_times_out_and_the_late_answer_is_dropped(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="posd.ledger")
    async with linked(pki) as (sim, client):
        sim.faults.delay_s = 0.4
        request = purchase()
        with pytest.raises(LedgerTimeout):
            await client.send(request, 0.1)
        sim.faults.delay_s = 0.0
        late = f"answer 0210 stan {request.stan:06d} matches no waiting request"
        await wait_until(lambda: any(late in r.getMessage() for r in caplog.records))
        assert client.is_up()
        assert (await client.send(purchase(), 5)).approved


@pytest.mark.parametrize("code", ["91", "96"])
async def test_forced_answer_code_is_passed_on_and_nothing_moves(pki: Pki, code: str) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.respond_with = code
        answer = await client.send(purchase(), 5)
        assert answer.response_code == code and answer.decline_reason == "ledger_unavailable"
        assert sim.rules.balance(GOOD_CARD) == 1_000_000


async def test_a_rules_failure_is_answered_96(pki: Pki) -> None:
    async with linked(pki) as (sim, client):

        def broken(request: LedgerRequest, mac_valid: bool) -> LedgerResponse:
            raise RuntimeError("rules bug")

        sim.rules.process = broken  # type: ignore[method-assign]
        assert (await client.send(purchase(), 5)).response_code == "96"
        assert client.is_up()


async def test_wrong_mac_on_the_answer_is_a_security_error(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.wrong_mac = True
        with pytest.raises(LedgerSecurityError):
            await client.send(purchase(), 5)
        assert client.last_error is not None and "MAC" in client.last_error


async def test_wrong_mac_on_the_request_is_answered_63_and_not_acted_on(pki: Pki) -> None:
    async with ledger(pki) as sim:
        client = LedgerClient(
            host="localhost", port=sim.port, terminal_id=TERMINAL, mac_key=bytes(32),
            stan_source=Stans(), tls=tls_of(pki), timings=FAST,
        )  # fmt: skip
        task = asyncio.create_task(client.run(lambda: None))
        try:
            async with asyncio.timeout(WAIT_S):
                await client.wait_up()
            # The ledger MACs its 63 with the real key, which this terminal does not hold.
            with pytest.raises(LedgerSecurityError):
                await client.send(purchase(), 5)
            assert sim.rules.balance(GOOD_CARD) == 1_000_000
            assert financial(sim.seen)[0].mac_valid is False
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task


async def test_connection_cut_mid_answer_is_link_lost(pki: Pki) -> None:
    async with linked(pki) as (sim, client):
        sim.faults.drop_mid_message = True
        with pytest.raises(LedgerLinkLost):
            await client.send(purchase(), 5)
        async with asyncio.timeout(WAIT_S):
            await client.wait_up()


async def test_an_answer_echoing_the_card_data_is_taken_and_shows_none_of_it(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with linked(pki) as (_sim, client):
        request = purchase(amount=3_000)
        answer = await client.send(request, 5)
        assert answer.approved and answer.amount == 3_000
        assert dict(answer.echoed)[2] == GOOD_CARD  # the reference ledger echoes 2
        assert answer.icc is not None
        for shown in (repr(answer), str(answer), caplog.text):
            assert GOOD_CARD not in shown and answer.icc.hex() not in shown.lower()


@pytest.mark.parametrize(
    ("tamper", "field"), [({4: f"{10_001:012d}"}, "field 4"), ({41: "T9999999"}, "field 41")]
)
async def test_an_answer_that_contradicts_its_request_is_no_answer(
    pki: Pki, caplog: pytest.LogCaptureFixture, tamper: dict[int, str], field: str
) -> None:
    caplog.set_level(logging.DEBUG, logger="posd.ledger")
    async with linked(pki) as (sim, client):
        sim.faults.tamper = tamper
        request = purchase(amount=10_000)
        with pytest.raises(LedgerBadResponse) as caught:
            await client.send(request, 5)
        assert field in str(caught.value)
        told = f"answer 0210 stan {request.stan:06d} contradicts its request ({field}"
        assert any(told in r.getMessage() for r in caplog.records)
        assert GOOD_CARD not in caplog.text and "10001" not in caplog.text
        assert sim.rules.balance(GOOD_CARD) == 990_000  # the ledger did act on it
        assert client.is_up()  # one bad answer is no reason to drop the link
        sim.faults.tamper = {}
        assert (await client.send(reversal_of(request), 5)).approved
        assert sim.rules.balance(GOOD_CARD) == 1_000_000
