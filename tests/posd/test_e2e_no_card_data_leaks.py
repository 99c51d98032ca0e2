"""No full PAN, track 2, account number, QR token or card data in any log line, API answer or
unencrypted file in state_dir, across approved, offline, reversed and declined payments."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from posd.sim.ledger_accounts import GOOD_CARD, GOOD_QR_ACCOUNT
from tests.helpers.daemon import running_daemon

pytestmark = pytest.mark.timeout(60)


def forbidden(account: str, tokens: list[str]) -> list[bytes]:
    needles = [account.encode(), bytes.fromhex(account), bytes.fromhex(account).hex().encode()]
    needles += [bytes.fromhex(account).hex().upper().encode()]
    for separator in ("D", "="):  # track 2 as read and as field 35 carries it
        needles.append(f"{GOOD_CARD}{separator}3012".encode())
    for token in tokens:
        needles += [token.encode(), base64.b64decode(token)]
    return needles


async def test_no_account_or_token_anywhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []
    answers: list[object] = []
    async with running_daemon(tmp_path, card_reader=True) as d:

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
        answers.append(await pay(900_000))  # declined beyond the offline limit
        for path in ("/v1/status", "/v1/saf", "/v1/totals?date=2026-01-01"):
            answers.append((await d.request("GET", path))[1])
        for payment in list(answers):
            if isinstance(payment, dict) and "payment_id" in payment:
                answers.append(await d.payment(str(payment["payment_id"])))
        state_files = {p: p.read_bytes() for p in d.state_dir.rglob("*") if p.is_file()}
    needles = forbidden(GOOD_QR_ACCOUNT, tokens) + forbidden(GOOD_CARD, [])
    assert any("posd" in r.name for r in caplog.records)  # the daemon's logs were captured
    logged = "\n".join(r.getMessage() for r in caplog.records).encode()
    api = json.dumps(answers).encode()
    for needle in needles:
        assert needle not in logged
        assert needle not in api
        for path, data in state_files.items():
            if path.name != "journal.key":
                assert needle not in data, path
    assert b'"account_last4": "0001"' in api and b'"card_last4": "0001"' in api
