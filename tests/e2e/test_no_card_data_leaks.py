"""No full PAN, track 2, account number, QR token or card data in any log line, API answer or
unencrypted file in state_dir, across approved, offline, reversed and declined payments."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import aiohttp
import pytest

from posd.logs import RedactingFormatter
from posd.sim.ledger_accounts import GOOD_CARD, GOOD_QR_ACCOUNT
from tests.helpers.daemon import WAIT_S, running_daemon, sse_lines

pytestmark = pytest.mark.timeout(60)


def forbidden(account: str, tokens: list[str]) -> list[bytes]:
    needles = [account.encode(), bytes.fromhex(account), bytes.fromhex(account).hex().encode()]
    needles += [bytes.fromhex(account).hex().upper().encode()]
    for separator in ("D", "="):  # track 2 as read and as field 35 carries it
        needles.append(f"{GOOD_CARD}{separator}3012".encode())
    for token in tokens:
        needles += [token.encode(), base64.b64decode(token)]
    return needles


def log_output(records: list[logging.LogRecord]) -> bytes:
    """Every record as posd's code made it (message and traceback) and as the journal gets
    it, in both line formats."""
    plain = logging.Formatter()
    formats = [RedactingFormatter("text"), RedactingFormatter("json")]
    out: list[str] = []
    for record in records:
        out.append(record.getMessage())
        if record.exc_info is not None:
            out.append(plain.formatException(record.exc_info))
        out.append(record.exc_text or "")
        out += [formatter.format(record) for formatter in formats]
    return "\n".join(out).encode()


async def read_until(
    stream: aiohttp.ClientResponse, body: bytearray, payment_id: str, state: str
) -> None:
    """Read the /v1/events stream into `body` until it has told `state` for `payment_id`."""

    def told() -> bool:
        return any(
            e.get("payment", {}).get("payment_id") == payment_id and e["payment"]["state"] == state
            for e in sse_lines(bytes(body))
        )

    async with asyncio.timeout(WAIT_S):
        while not told():
            chunk = await stream.content.readany()
            assert chunk, "the event stream ended"
            body += chunk


async def test_no_account_or_token_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    answers: list[object] = []
    events = bytearray()
    unbounded = aiohttp.ClientTimeout(total=None)  # read_until bounds each wait
    async with (
        running_daemon(tmp_path, card_reader=True, ledger={"timeout_s": 0.5}) as d,
        d.session.get("http://posd/v1/events", timeout=unbounded) as stream,
    ):
        assert stream.status == 200

        async def pay(amount: int) -> dict[str, object]:
            token = d.issuer.valid(GOOD_QR_ACCOUNT)
            tokens.append(token)
            created = await d.create(amount, "qr")
            answers.append(created)
            await d.scanner.scan(token)
            return await d.wait_final(str(created["payment_id"]))

        async def card(amount: int, name: str) -> dict[str, object]:
            created = await d.create(amount, "card")
            answers.append(created)
            assert d.reader is not None
            d.reader.present(name)
            return await d.wait_final(str(created["payment_id"]))

        for name in ("seoroeum", "seoroeum-magstripe", "seoroeum-contactless"):
            answers.append(await card(1_000, name))  # approved
        answers.append(await card(1_000, "declines-at-complete"))  # reversed
        answers.append(await pay(1_000))  # approved
        d.ledger.faults.no_answer = True
        answers.append(await pay(2_000))  # reversing
        d.ledger.faults.no_answer = False
        await d.ledger.refuse_connections(True)
        await d.wait_status(lambda s: s["ledger"]["link"] != "up")
        answers.append(await pay(3_000))  # approved offline, advice queued
        answers.append(await card(2_000, "seoroeum-magstripe"))  # offline, advice queued
        declined = await pay(900_000)  # declined beyond the offline limit
        answers.append(declined)
        # Events come in order: once the last one is in, so are all before it.
        await read_until(stream, events, str(declined["payment_id"]), "declined")
        for api_path in ("/v1/status", "/v1/saf", "/v1/totals?date=2026-01-01"):
            answers.append((await d.request("GET", api_path))[1])
        for payment in list(answers):
            if isinstance(payment, dict) and "payment_id" in payment:
                answers.append(await d.payment(str(payment["payment_id"])))
        state_files = {p: p.read_bytes() for p in d.state_dir.rglob("*") if p.is_file()}
    needles = forbidden(GOOD_QR_ACCOUNT, tokens) + forbidden(GOOD_CARD, [])
    assert any("posd" in r.name for r in caplog.records)  # the daemon's logs were captured
    logged = log_output(caplog.records)
    assert {e["payment"]["state"] for e in sse_lines(bytes(events))} >= {
        "approved", "approved_offline", "reversing", "declined"
    }  # fmt: skip
    api = json.dumps(answers).encode() + bytes(events)
    for needle in needles:
        assert needle not in logged
        assert needle not in api
        for path, data in state_files.items():
            if path.name != "journal.key":
                assert needle not in data, path
    assert b'"account_last4": "0001"' in api and b'"card_last4": "0001"' in api
