"""The 서로e음 customer-presented QR token (spec/qr-token.md): verify, and make for tests.

`verify_qr` runs the checks in the order of the spec's table and returns the first
failure as a `QrRejected` with the reason the cashier sees; it never raises. The replay
check (`qr_replayed`) needs storage and is the caller's, on `QrToken.nonce`.

Where the spec is silent, this module decides:
- Surrounding whitespace is stripped: some scanners send a trailing space or tab.
  `QrToken.text` is the stripped text, and it is what goes to the ledger (field 48 QT).
- Text longer than MAX_TEXT_CHARS is `qr_unreadable`, like scanner input past the cap.
- So is text longer than MAX_QT_CHARS, which could not be sent: field 48 is ans..999 and
  holds `QT=` and, for a 혜택플러스 payment, `BP=<rate>;DA=<discount>;` before it. A token as
  the platform makes it is about 190 characters; only padding with extra tags gets near.
- A payload may hold several 61 application templates (EMVCo CPM allows it); the one
  with the 서로e음 AID is used. 85 `CPV01` but no 61 or no 4F at all is `qr_incomplete`;
  4F present but none of them ours is `qr_not_seoroeum`.
- A tag repeated in one template, or two 61 templates with our AID, is
  `qr_unreadable`: which copy counts would be ambiguous, and the ledger may read the
  other one.
- 50 (label) is required, 1 to 16 bytes as EMV allows; its text is not compared.
- 5A must be 8 bytes (`qr_incomplete` otherwise) of decimal BCD (`qr_unreadable`).
- expires_at before issued_at is `qr_expired`: the token was dead when issued.
"""

from __future__ import annotations

import base64
import binascii
import functools
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols.ber_tlv import Tlv, TlvError, decode_tlv, encode_tlv

__all__ = [
    "AID",
    "CLOCK_SKEW_S",
    "MAX_LIFETIME_S",
    "MAX_QT_CHARS",
    "MAX_TEXT_CHARS",
    "PAYLOAD_FORMAT",
    "QR_BAD_SIGNATURE",
    "QR_EXPIRED",
    "QR_INCOMPLETE",
    "QR_NOT_SEOROEUM",
    "QR_NOT_YET_VALID",
    "QR_REASONS",
    "QR_REPLAYED",
    "QR_TOO_LONG_LIVED",
    "QR_UNKNOWN_KEY",
    "QR_UNREADABLE",
    "SEOROEUM_ACCOUNT_PREFIX",
    "SIGNATURE_CONTEXT",
    "QrRejected",
    "QrToken",
    "make_qr",
    "signed_message",
    "verify_qr",
]

QR_NOT_SEOROEUM = "qr_not_seoroeum"
QR_UNREADABLE = "qr_unreadable"
QR_INCOMPLETE = "qr_incomplete"
QR_UNKNOWN_KEY = "qr_unknown_key"
QR_BAD_SIGNATURE = "qr_bad_signature"
QR_TOO_LONG_LIVED = "qr_too_long_lived"
QR_EXPIRED = "qr_expired"
QR_NOT_YET_VALID = "qr_not_yet_valid"
QR_REPLAYED = "qr_replayed"
QR_REASONS = (
    QR_NOT_SEOROEUM,
    QR_UNREADABLE,
    QR_INCOMPLETE,
    QR_UNKNOWN_KEY,
    QR_BAD_SIGNATURE,
    QR_TOO_LONG_LIVED,
    QR_EXPIRED,
    QR_NOT_YET_VALID,
    QR_REPLAYED,
)

PAYLOAD_FORMAT = b"CPV01"
AID = bytes.fromhex("D4100000014601")
LABEL = b"SEOROEUM"
SIGNATURE_CONTEXT = b"SEOROEUM-CPM/1"
MAX_LIFETIME_S = 300
CLOCK_SKEW_S = 30
MAX_TEXT_CHARS = 2048
# Field 48 (ans..999) less "QT=" and the longest BP/DA pair it may also carry (BP up to 10000
# basis points, DA up to 12 digits), rounded down to whole base64 quanta: 968.
_FIELD48_MAX = 999
_LONGEST_BENEFIT_PAIRS = len("BP=10000;DA=999999999999;")
MAX_QT_CHARS = (_FIELD48_MAX - len("QT=") - _LONGEST_BENEFIT_PAIRS) // 4 * 4
ACCOUNT_DIGITS = 16
# 서로e음 account numbers (5A) start with the 서로e음 card BIN. Not one of verify_qr's checks
# (qr-token.md has none on it): posd masks any digit run starting so, Luhn-valid or not.
SEOROEUM_ACCOUNT_PREFIX = "9410"

TAG_FORMAT = 0x85
TAG_APP_TEMPLATE = 0x61
TAG_AID = 0x4F
TAG_LABEL = 0x50
TAG_ACCOUNT = 0x5A
TAG_APP_SPECIFIC = 0x63
TAG_ISSUED_AT = 0xDF01
TAG_EXPIRES_AT = 0xDF02
TAG_NONCE = 0xDF03
TAG_KEY_ID = 0xDF04
TAG_SIGNATURE = 0xDF05

# Exact lengths of the fixed-size elements; 50 is checked as a range.
_LENGTHS_61 = {TAG_ACCOUNT: 8}
_LENGTHS_63 = {TAG_ISSUED_AT: 4, TAG_EXPIRES_AT: 4, TAG_NONCE: 8, TAG_KEY_ID: 1, TAG_SIGNATURE: 64}
_NAMES = {
    TAG_APP_TEMPLATE: "61 application template",
    TAG_AID: "4F AID",
    TAG_LABEL: "50 label",
    TAG_ACCOUNT: "5A account",
    TAG_APP_SPECIFIC: "63 application specific template",
    TAG_ISSUED_AT: "DF01 issued_at",
    TAG_EXPIRES_AT: "DF02 expires_at",
    TAG_NONCE: "DF03 nonce",
    TAG_KEY_ID: "DF04 key id",
    TAG_SIGNATURE: "DF05 signature",
}


@dataclass(frozen=True, slots=True)
class QrToken:
    account: str
    issued_at: int
    expires_at: int
    nonce: bytes
    key_id: int
    # The text as verified (surrounding whitespace stripped): what field 48 QT carries. Two
    # scans of one token differ at most in whitespace, so tokens compare by what is signed.
    text: str = field(default="", compare=False)

    def __repr__(self) -> str:
        return (
            f"QrToken(account='****{self.account[-4:]}', issued_at={self.issued_at}, "
            f"expires_at={self.expires_at}, nonce={self.nonce.hex()}, key_id={self.key_id})"
        )

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class QrRejected:
    reason: str
    # For logs: names the failing element, never quotes the token.
    detail: str = ""


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.rejected = QrRejected(reason, detail)


def signed_message(
    account_5a: bytes, issued_at: int, expires_at: int, nonce: bytes, key_id: int
) -> bytes:
    """The bytes the platform signs: context, 5A, issued_at, expires_at, nonce, key id."""
    return (
        SIGNATURE_CONTEXT
        + account_5a
        + struct.pack(">II", issued_at, expires_at)
        + nonce
        + bytes([key_id])
    )


@functools.lru_cache(maxsize=64)
def _public_key(raw: bytes) -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_qr(text: str, keys: Mapping[int, bytes], now: int) -> QrToken | QrRejected:
    """Check a scanned QR text against the platform keys at Unix time `now`."""
    try:
        return _verify(text, keys, now)
    except _Reject as reject:
        return reject.rejected


def _check_text(text: str) -> bytes:
    if text.startswith("000201"):
        raise _Reject(QR_NOT_SEOROEUM, "EMVCo merchant-presented QR")
    if text[:8].lower().startswith(("http://", "https://")):
        raise _Reject(QR_NOT_SEOROEUM, "a URL")
    if text.isascii() and text.isdigit():
        raise _Reject(QR_NOT_SEOROEUM, "digits only, a product barcode")
    if not text:
        raise _Reject(QR_UNREADABLE, "empty")
    if len(text) > MAX_TEXT_CHARS:
        raise _Reject(QR_UNREADABLE, f"longer than {MAX_TEXT_CHARS} characters")
    if len(text) > MAX_QT_CHARS:
        raise _Reject(QR_UNREADABLE, f"longer than the {MAX_QT_CHARS} characters field 48 holds")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _Reject(QR_UNREADABLE, "not padded standard base64") from None


def _index(items: list[Tlv], where: str) -> dict[int, Tlv]:
    found: dict[int, Tlv] = {}
    for item in items:
        if item.tag in found:
            raise _Reject(QR_UNREADABLE, f"tag {item.tag:X} repeated in {where}")
        found[item.tag] = item
    return found


def _children(item: Tlv) -> list[Tlv]:
    try:
        return item.children()
    except TlvError as e:
        raise _Reject(QR_UNREADABLE, f"template {item.tag:X}: {e}") from None


def _required(index: dict[int, Tlv], tag: int) -> Tlv:
    item = index.get(tag)
    if item is None:
        raise _Reject(QR_INCOMPLETE, f"{_NAMES[tag]} missing")
    return item


def _check_lengths(index: dict[int, Tlv], lengths: Mapping[int, int]) -> None:
    for tag, size in lengths.items():
        n = len(_required(index, tag).value)
        if n != size:
            raise _Reject(QR_INCOMPLETE, f"{_NAMES[tag]} has {n} bytes, {size} expected")


def _app_template(top: list[Tlv]) -> dict[int, Tlv]:
    """The children of the 61 template carrying the 서로e음 AID."""
    templates = [_index(_children(t), "61") for t in top if t.tag == TAG_APP_TEMPLATE]
    with_aid = [t for t in templates if TAG_AID in t]
    ours = [t for t in with_aid if t[TAG_AID].value == AID]
    if len(ours) > 1:
        raise _Reject(QR_UNREADABLE, "two 61 templates with the 서로e음 AID")
    if ours:
        return ours[0]
    if with_aid:
        raise _Reject(QR_NOT_SEOROEUM, "another application (AID)")
    missing = TAG_AID if templates else TAG_APP_TEMPLATE
    raise _Reject(QR_INCOMPLETE, f"{_NAMES[missing]} missing")


def _verify(text: str, keys: Mapping[int, bytes], now: int) -> QrToken:
    text = text.strip()
    raw = _check_text(text)
    try:
        top = decode_tlv(raw)
    except TlvError as e:
        raise _Reject(QR_UNREADABLE, str(e)) from None
    formats = [t for t in top if t.tag == TAG_FORMAT]
    if len(formats) > 1:
        raise _Reject(QR_UNREADABLE, "tag 85 repeated")
    if not formats or formats[0].value != PAYLOAD_FORMAT:
        raise _Reject(QR_NOT_SEOROEUM, "no payload format indicator 85 CPV01")
    app = _app_template(top)
    # Everything that can be unreadable is decoded before anything is found incomplete.
    specific_template = app.get(TAG_APP_SPECIFIC)
    specific = _index(_children(specific_template), "63") if specific_template else {}
    account_tlv = app.get(TAG_ACCOUNT)
    if account_tlv is not None and account_tlv.value.hex().strip("0123456789"):
        raise _Reject(QR_UNREADABLE, "5A account is not decimal BCD")

    label = _required(app, TAG_LABEL)
    if not 1 <= len(label.value) <= 16:
        raise _Reject(QR_INCOMPLETE, f"{_NAMES[TAG_LABEL]} has {len(label.value)} bytes, 1-16")
    _check_lengths(app, _LENGTHS_61)
    _required(app, TAG_APP_SPECIFIC)
    _check_lengths(specific, _LENGTHS_63)

    account_5a = app[TAG_ACCOUNT].value
    account = account_5a.hex()
    (issued_at,) = struct.unpack(">I", specific[TAG_ISSUED_AT].value)
    (expires_at,) = struct.unpack(">I", specific[TAG_EXPIRES_AT].value)
    nonce = specific[TAG_NONCE].value
    key_id = specific[TAG_KEY_ID].value[0]

    raw_key = keys.get(key_id)
    if raw_key is None:
        raise _Reject(QR_UNKNOWN_KEY, f"key id {key_id} not configured")
    try:
        public_key = _public_key(bytes(raw_key))
    except ValueError:
        raise _Reject(QR_UNKNOWN_KEY, f"key id {key_id} is not a usable Ed25519 key") from None
    try:
        public_key.verify(
            specific[TAG_SIGNATURE].value,
            signed_message(account_5a, issued_at, expires_at, nonce, key_id),
        )
    except InvalidSignature:
        raise _Reject(QR_BAD_SIGNATURE, f"signature does not verify with key id {key_id}") from None

    lifetime = expires_at - issued_at
    if lifetime > MAX_LIFETIME_S:
        raise _Reject(QR_TOO_LONG_LIVED, f"lifetime {lifetime} s, at most {MAX_LIFETIME_S}")
    if lifetime < 0:
        raise _Reject(QR_EXPIRED, "expires before it is issued")
    if now > expires_at:
        raise _Reject(QR_EXPIRED, f"expired {now - expires_at} s ago")
    if now < issued_at - CLOCK_SKEW_S:
        raise _Reject(QR_NOT_YET_VALID, f"issued {issued_at - now} s in the future")
    return QrToken(account, issued_at, expires_at, nonce, key_id, text)


def make_qr(
    account: str,
    issued_at: int,
    expires_at: int,
    nonce: bytes,
    key_id: int,
    private_key: Ed25519PrivateKey,
) -> str:
    """A signed token as the 서로e음 app shows it; ValueError on out-of-range fields."""
    if len(account) != ACCOUNT_DIGITS or not (account.isascii() and account.isdigit()):
        raise ValueError(f"account must be {ACCOUNT_DIGITS} decimal digits")
    if not (0 <= issued_at <= 0xFFFFFFFF and 0 <= expires_at <= 0xFFFFFFFF):
        raise ValueError("issued_at and expires_at must fit in u32")
    if len(nonce) != 8:
        raise ValueError("nonce must be 8 bytes")
    if not 0 <= key_id <= 0xFF:
        raise ValueError("key id must fit in u8")
    account_5a = bytes.fromhex(account)
    signature = private_key.sign(signed_message(account_5a, issued_at, expires_at, nonce, key_id))
    specific = encode_tlv(
        [
            Tlv(TAG_ISSUED_AT, issued_at.to_bytes(4, "big")),
            Tlv(TAG_EXPIRES_AT, expires_at.to_bytes(4, "big")),
            Tlv(TAG_NONCE, nonce),
            Tlv(TAG_KEY_ID, bytes([key_id])),
            Tlv(TAG_SIGNATURE, signature),
        ]
    )
    app = encode_tlv(
        [
            Tlv(TAG_AID, AID),
            Tlv(TAG_LABEL, LABEL),
            Tlv(TAG_ACCOUNT, account_5a),
            Tlv(TAG_APP_SPECIFIC, specific),
        ]
    )
    payload = encode_tlv([Tlv(TAG_FORMAT, PAYLOAD_FORMAT), Tlv(TAG_APP_TEMPLATE, app)])
    return base64.b64encode(payload).decode("ascii")
