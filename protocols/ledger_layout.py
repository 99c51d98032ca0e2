"""Which fields each ledger message carries, and what they must hold (ledger-iso8583.md).

A request carries exactly the fields of its rule. An answer echoes its request: it must
carry what posd matches and checks it by, and may carry any other field of the profile.
The MAC (64 or 128, by where it must go) is the decoder's concern and in no rule here.
Checks take field values as encoded (`LedgerRequest.fields()` or a decoded message).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from protocols import ledger_icc
from protocols.iso8583_profile import (
    FIELDS,
    MAC_FIELDS,
    FieldValue,
    LedgerFormatError,
    check_field,
)
from protocols.ledger_fields import check_hhmmss, check_mmdd, check_mmddhhmmss, check_yymm

__all__ = [
    "ANSWER_IDS",
    "ANSWER_REQUIRED",
    "COMMON_REQUIRED",
    "CURRENCY_KRW",
    "FINANCIAL_REQUESTS",
    "FINANCIAL_RESPONSES",
    "KINDS",
    "NETWORK_ANSWER_REQUIRED",
    "NETWORK_REQUEST_FIELDS",
    "POS_CONDITION",
    "PROCESSING_CODES",
    "Echoed",
    "Rule",
    "answer_fields",
    "check_answer_fields",
    "check_echoes",
    "check_network_fields",
    "check_present",
    "check_request_fields",
    "echoes_of",
    "response_mti_for",
    "rule_for",
]

PROCESSING_CODES: Final[Mapping[str, str]] = {"purchase": "000000", "refund": "200000"}
KINDS: Final = {code: kind for kind, code in PROCESSING_CODES.items()}
CURRENCY_KRW: Final = "410"
POS_CONDITION: Final = "00"
_OFFLINE_AUTH: Final = re.compile(r"Y1[0-9]{4}")

FINANCIAL_REQUESTS: Final = frozenset({"0200", "0220", "0221", "0400", "0401"})
FINANCIAL_RESPONSES: Final = frozenset({"0210", "0230", "0410"})
COMMON_REQUIRED: Final = frozenset({3, 4, 7, 11, 12, 13, 25, 41, 42, 49})
NETWORK_REQUEST_FIELDS: Final = frozenset({7, 11, 41, 70})
# What an answer must carry: 11 to be matched, 41 to be checked, 39 to be an answer; the
# first two are what every answer echoes.
ANSWER_IDS: Final = frozenset({11, 41})
ANSWER_REQUIRED: Final = ANSWER_IDS | {39}
# An 0810 adds 39 and puts the ledger's own clock in 7.
NETWORK_ANSWER_REQUIRED: Final = NETWORK_REQUEST_FIELDS | {39}

_RESPONSE_MTI: Final[Mapping[str, str]] = {
    "0200": "0210",
    "0220": "0230",
    "0221": "0230",
    "0400": "0410",
    "0401": "0410",
    "0800": "0810",
}


@dataclass(frozen=True)
class Rule:
    required: frozenset[int]
    optional: frozenset[int]


# Which fields each request carries, beyond the common ones. A refund names its original by
# 37 and 90, so it needs no card data (the journal keeps none once the ledger has a payment).
_REQUEST_RULES: Final[Mapping[tuple[str, str], Rule]] = {
    ("0200", "purchase"): Rule(frozenset({2, 22}), frozenset({14, 35, 48, 55})),
    ("0200", "refund"): Rule(frozenset({37, 90}), frozenset({2, 14, 22, 48})),
    # No 37 in an advice: the ledger never answered the payment it tells of.
    ("0220", "purchase"): Rule(frozenset({2, 22, 38}), frozenset({14, 35, 48, 55})),
    ("0400", "purchase"): Rule(frozenset({90}), frozenset({2, 14, 22, 37, 38})),
    ("0400", "refund"): Rule(frozenset({90}), frozenset({2, 14, 22, 37, 38})),
}


def rule_for(mti: str, kind: str) -> Rule:
    base = {"0221": "0220", "0401": "0400"}.get(mti, mti)
    rule = _REQUEST_RULES.get((base, kind))
    if rule is None:
        raise LedgerFormatError("3", f"a {kind} is not carried by MTI {mti}")
    return rule


def response_mti_for(request_mti: str) -> str:
    """The MTI that answers `request_mti` (0221 is answered by 0230, like 0220)."""
    try:
        return _RESPONSE_MTI[request_mti]
    except KeyError:
        raise LedgerFormatError("t", "not a request MTI of this profile") from None


def check_present(present: Iterable[int], rule: Rule, common: frozenset[int]) -> None:
    present = set(present)
    required = common | rule.required
    missing = required - present
    if missing:
        raise LedgerFormatError(str(min(missing)), "is required in this message")
    extra = present - required - rule.optional
    if extra:
        raise LedgerFormatError(str(min(extra)), "is not allowed in this message")


def _text(fields: Mapping[int, FieldValue], number: int) -> str:
    value = fields[number]
    if isinstance(value, bytes):
        raise LedgerFormatError(str(number), "is binary, expected text")
    return value


def check_request_fields(mti: str, kind: str, fields: Mapping[int, FieldValue]) -> None:
    """Raise LedgerFormatError unless `fields` are those of a `kind` request `mti`."""
    if mti not in FINANCIAL_REQUESTS:
        raise LedgerFormatError("t", "not a financial request MTI")
    if kind not in PROCESSING_CODES:
        raise LedgerFormatError("3", "processing code must be purchase or refund")
    check_present(fields, rule_for(mti, kind), COMMON_REQUIRED)
    for number, value in fields.items():
        check_field(number, value)
    check_mmddhhmmss(_text(fields, 7), "7")
    check_hhmmss(_text(fields, 12), "12")
    check_mmdd(_text(fields, 13), "13")
    if 14 in fields:
        check_yymm(_text(fields, 14), "14")
    if fields[25] != POS_CONDITION:
        raise LedgerFormatError("25", "POS condition code must be 00")
    if fields[49] != CURRENCY_KRW:
        raise LedgerFormatError("49", "currency must be 410 (KRW)")
    if mti in ("0220", "0221") and not _OFFLINE_AUTH.fullmatch(_text(fields, 38)):
        raise LedgerFormatError("38", "an advice carries posd's own code, Y1 and 4 digits")


def check_answer_fields(mti: str, fields: Mapping[int, FieldValue]) -> None:
    """Raise LedgerFormatError unless `fields` are those of a financial answer `mti`: what
    posd matches it by is there, and every field is one of the profile in its format. Of
    the values, only those posd passes on are checked further: 49, which says what 4 counts,
    and a 0210's 55 (BER-TLV, for the card)."""
    if mti not in FINANCIAL_RESPONSES:
        raise LedgerFormatError("t", "not a financial response MTI")
    missing = ANSWER_REQUIRED - set(fields)
    if missing:
        raise LedgerFormatError(str(min(missing)), "is required in this message")
    for number, value in fields.items():
        check_field(number, value)
    if fields.get(49, CURRENCY_KRW) != CURRENCY_KRW:
        raise LedgerFormatError("49", "currency must be 410 (KRW)")
    icc = fields.get(55)
    if mti == "0210" and isinstance(icc, bytes):
        ledger_icc.issuer_data(icc)  # what is passed to the card must be BER-TLV


def check_network_fields(
    fields: Mapping[int, FieldValue], codes: frozenset[str], *, answer: bool
) -> None:
    """Raise LedgerFormatError unless `fields` are those of an 0800 (exactly its four) or,
    with `answer`, of an 0810 (those and 39, and any other field of the profile)."""
    required = NETWORK_ANSWER_REQUIRED if answer else NETWORK_REQUEST_FIELDS
    present = set(fields) & required if answer else set(fields)
    check_present(present, Rule(frozenset(), frozenset()), required)
    for number, value in fields.items():
        check_field(number, value)
    if fields[70] not in codes:
        raise LedgerFormatError("70", "must be 001, 002 or 301")
    check_mmddhhmmss(_text(fields, 7), "7")


# ---- an answer's echoes -----------------------------------------------------------------------

# The fields of an answer that posd does not read, as (number, value) pairs by number.
Echoed = tuple[tuple[int, FieldValue], ...]


def echoes_of(fields: Mapping[int, FieldValue], typed: frozenset[int]) -> Echoed:
    """The fields of an answer that are not `typed` (nor its MAC), by number."""
    return tuple(
        sorted(
            ((n, v) for n, v in fields.items() if n not in typed and n not in MAC_FIELDS),
            key=lambda pair: pair[0],
        )
    )


def check_echoes(echoed: Echoed, typed: frozenset[int]) -> Echoed:
    """`echoed` by number, once each checked to be a field of the profile that is neither
    `typed` nor a MAC; the values are checked with the other fields of the message."""
    numbers = [number for number, _ in echoed]
    for number in numbers:
        if number not in FIELDS:
            raise LedgerFormatError(str(number), "is not a field of this profile")
        if number in typed or number in MAC_FIELDS or numbers.count(number) > 1:
            raise LedgerFormatError(str(number), "is not an echo of this answer")
    if numbers == sorted(numbers):
        return echoed
    return tuple(sorted(echoed, key=lambda pair: pair[0]))


def answer_fields(
    request: Mapping[int, FieldValue],
    echo: Iterable[int] | None,
    own: Mapping[int, FieldValue | None],
) -> dict[int, FieldValue]:
    """The fields of an answer to a request of fields `request`: its 11 and 41, those
    numbered in `echo` (None: every one, as ISO 8583 hosts commonly answer) and the answer's
    `own` (those not None, in place of their echoes)."""
    kept = None if echo is None else ANSWER_IDS | set(echo)
    fields = {n: v for n, v in request.items() if kept is None or n in kept}
    fields.update((n, v) for n, v in own.items() if v is not None)
    return fields
