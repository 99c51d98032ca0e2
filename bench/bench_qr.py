"""QR token checks, chip CARD_DATA TLV decoding and HID report decoding: throughput, one core."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bench.bench_srl import chip_card_data
from bench.timing import calls_per_second
from protocols.ber_tlv import decode_tlv, find_tag
from protocols.hid_keyboard import HidKeyboardDecoder, reports_for_text
from protocols.qr_token import QrToken, make_qr, verify_qr

NOW = 1_764_000_000


def main() -> None:
    key = Ed25519PrivateKey.generate()
    keys = {1: key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)}
    token = make_qr("9410000012345678", NOW, NOW + 180, bytes(8), 1, key)
    assert isinstance(verify_qr(token, keys, NOW), QrToken)
    print(f"qr: verify/s: {calls_per_second(lambda: verify_qr(token, keys, NOW)):.0f}")

    card = chip_card_data().tlv

    def decode_card() -> None:
        # The whole list is walked: the looked-for tag is the last one.
        find_tag(decode_tlv(card), 0x9F34)

    decodes = calls_per_second(decode_card)
    print(f"qr: tlv decode/s: {decodes:.0f} (chip CARD_DATA, {len(card)} bytes)")

    reports = reports_for_text(token, rollover=True)
    decoder = HidKeyboardDecoder()

    def type_token() -> None:
        for report in reports:
            decoder.feed(report)

    scans = calls_per_second(type_token)
    per_report = scans * len(reports)
    print(f"qr: hid codes/s: {scans:.0f} ({len(token)} chars, {per_report:.0f} reports/s)")


if __name__ == "__main__":
    main()
