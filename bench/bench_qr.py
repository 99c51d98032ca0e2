"""QR token verification and chip CARD_DATA TLV decoding throughput, single core."""

from __future__ import annotations

import time
from collections.abc import Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from protocols.ber_tlv import Tlv, decode_tlv, encode_tlv, find_tag
from protocols.hid_keyboard import HidKeyboardDecoder, reports_for_text
from protocols.qr_token import QrToken, make_qr, verify_qr

NOW = 1_764_000_000
SECONDS = 1.0


def _rate(fn: Callable[[], object], seconds: float = SECONDS) -> float:
    """Calls per second of `fn`, timed over batches until `seconds` have passed."""
    calls = 0
    batch = 100
    start = time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(batch):
            fn()
        calls += batch
    return calls / elapsed


def chip_card_data() -> bytes:
    """A contact chip CARD_DATA TLV with the elements reader-link.md lists, plus 57 and 9F10."""
    return encode_tlv(
        [
            Tlv(0x5A, bytes.fromhex("9410123456789012")),
            Tlv(0x5F24, bytes.fromhex("281231")),
            Tlv(0x5F34, b"\x01"),
            Tlv(0x57, bytes.fromhex("9410123456789012D2812201123456789F")),
            Tlv(0x9F26, bytes(8)),
            Tlv(0x9F27, b"\x80"),
            Tlv(0x9F10, bytes(32)),
            Tlv(0x9F37, bytes(4)),
            Tlv(0x9F36, b"\x00\x42"),
            Tlv(0x95, bytes(5)),
            Tlv(0x9A, bytes.fromhex("251125")),
            Tlv(0x9C, b"\x00"),
            Tlv(0x9F02, bytes.fromhex("000000012000")),
            Tlv(0x5F2A, bytes.fromhex("0410")),
            Tlv(0x82, bytes.fromhex("1980")),
            Tlv(0x84, bytes.fromhex("D4100000014601")),
            Tlv(0x9F33, bytes.fromhex("E0F8C8")),
            Tlv(0x9F34, bytes.fromhex("1E0300")),
            Tlv(0x9F1A, bytes.fromhex("0410")),
            Tlv(0x70, encode_tlv([Tlv(0x9F4C, bytes(8)), Tlv(0xDF8101, bytes(16))])),
        ]
    )


def main() -> None:
    key = Ed25519PrivateKey.generate()
    keys = {1: key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
    token = make_qr("9410000012345678", NOW, NOW + 180, bytes(8), 1, key)
    assert isinstance(verify_qr(token, keys, NOW), QrToken)
    print(f"qr: verify/s: {_rate(lambda: verify_qr(token, keys, NOW)):.0f}")

    card = chip_card_data()

    def decode_card() -> None:
        items = decode_tlv(card)
        find_tag(items, 0xDF8101)

    print(f"qr: tlv decode/s: {_rate(decode_card):.0f} (chip CARD_DATA, {len(card)} bytes)")

    reports = reports_for_text(token, rollover=True)
    decoder = HidKeyboardDecoder()

    def type_token() -> None:
        for report in reports:
            decoder.feed(report)

    scans = _rate(type_token)
    per_report = scans * len(reports)
    print(f"qr: hid codes/s: {scans:.0f} ({len(token)} chars, {per_report:.0f} reports/s)")


if __name__ == "__main__":
    main()
