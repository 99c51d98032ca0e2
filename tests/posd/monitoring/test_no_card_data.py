"""Every payload seen on the broker (`#`, the box's and everything else) during chip,
contactless, magstripe and QR payments, a decline and a diagnostics answer: no full PAN or
account number, no track 2, no ICC data the reader sent, no QR token, no key."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from posd.fleet.payloads import Bad, parse_event, parse_state, parse_topic
from posd.sim import GOOD_QR_ACCOUNT
from posd.sim.ledger_accounts import GOOD_CARD, POOR_CARD
from protocols.ber_tlv import decode_tlv
from protocols.srl_frame import Frame, FrameDecoder
from protocols.srl_messages import CardData, CompleteResult, decode_message
from tests.helpers.configs import MAC_KEY_HEX
from tests.helpers.mosquitto import Mosquitto
from tests.posd.monitoring.support import OPERATOR, box, watching

pytestmark = pytest.mark.timeout(60)

QR_TOKEN = re.compile(rb"hQVDUFYwM[A-Za-z0-9+/=]{20,}")


def forms(value: bytes) -> list[bytes]:
    return [value, value.hex().encode(), value.hex().upper().encode(), base64.b64encode(value)]


def icc_values(transcript: list[tuple[str, float, bytes]]) -> list[bytes]:
    """The TLV values (6 bytes and more) of every CARD_DATA and COMPLETE_RESULT the reader
    sent: the ICC data (and the track 2 and PAN in it) as posd received them; shorter
    values (flags, counters) would match any hex by chance."""
    decoder = FrameDecoder()
    values: list[bytes] = []
    for direction, _at, data in transcript:
        if direction != "<":
            continue
        for item in decoder.feed(data):
            if not isinstance(item, Frame):
                continue
            message = decode_message(item.cmd, item.data)
            if isinstance(message, CardData | CompleteResult):
                values += [t.value for t in decode_tlv(message.tlv) if len(t.value) >= 6]
    return values


async def test_no_card_data_token_or_key_in_any_payload(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    tokens: list[str] = []
    async with (
        watching(mosquitto, subscribe="#") as everything,
        box(tmp_path, mosquitto, card_reader=True) as d,
    ):
        await everything.state(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        assert d.reader is not None
        d.reader.record = True
        for card in (
            "seoroeum",
            "seoroeum-contactless",
            "seoroeum-magstripe",
            "insufficient-funds",
        ):
            created = await d.create(9_000, "card")
            d.reader.present(card)
            await d.wait_final(created["payment_id"])
        for _ in range(2):
            created = await d.create(4_000, "qr")
            tokens.append(d.issuer.valid(GOOD_QR_ACCOUNT))
            await d.scanner.scan(tokens[-1])
            await d.wait_final(created["payment_id"])
        answer = await everything.response("diagnostics", await everything.request("diagnostics"))
        assert answer["ok"] is True
        await everything.event(
            "payment",
            lambda e: e["payment_id"] == created["payment_id"] and e["state"] == "approved",
        )
        values = icc_values(d.reader.transcript)
    assert len(values) > 10
    kinds = {m.topic.rsplit("/", 1)[-1] for m in everything.seen}
    assert {"state", "payment", "diagnostics"} <= kinds
    # The masked forms the state and events do carry.
    assert any(e.get("card_last4") == "0001" for e in everything.events("payment"))
    assert any(e.get("account_last4") == GOOD_QR_ACCOUNT[-4:] for e in everything.events("payment"))

    needles = [
        n for account in (GOOD_CARD, POOR_CARD, GOOD_QR_ACCOUNT) for n in forms(account.encode())
    ]
    needles += [n for value in values for n in forms(value)]
    needles += [n for token in tokens for n in (token.encode(), base64.b64decode(token))]
    needles += forms(bytes.fromhex(MAC_KEY_HEX))
    needles += forms(OPERATOR.private_bytes_raw())
    for message in everything.seen:
        assert not QR_TOKEN.search(message.payload), message.topic
        for needle in needles:
            assert needle not in message.payload, (message.topic, len(needle))


async def test_the_operations_centre_console_takes_every_state_and_event(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    """The console (posd.fleet, a peer) refuses what is not mqtt.md's: nothing the box sends."""
    async with (
        watching(mosquitto) as ops,
        box(tmp_path, mosquitto, card_reader=True, saf_retry_interval_s=3600) as d,
    ):
        await ops.state(lambda s: s["devices"]["card_reader"]["state"] == "ready")
        await d.ledger.refuse_connections(True)
        await d.wait_status(lambda s: s["ledger"]["link"] != "up")
        created = await d.create(2_000, "qr")
        await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
        await d.wait_final(created["payment_id"])
        await ops.raw_request("diagnostics", b"not a request")
        await ops.event("security")
        await ops.state(lambda s: s["saf"]["pending"] == 1)
    kinds = set()
    for message in ops.seen:
        topic = parse_topic("posd/", message.topic)
        if isinstance(topic, Bad) or topic.kind == "availability":
            continue
        if topic.kind == "state":
            parsed: object = parse_state(topic.terminal_id, message.payload)
        else:
            assert topic.event_kind is not None
            kinds.add(topic.event_kind)
            parsed = parse_event(topic.event_kind, message.payload)
        assert not isinstance(parsed, Bad), (message.topic, parsed, message.payload[:300])
    assert {"payment", "device", "ledger", "security", "saf"} <= kinds, kinds
