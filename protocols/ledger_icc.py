"""Field 55 (ICC data, BER-TLV) beyond the 0200: the issuer's data in a 0210, the TC in an advice.

A 0210 to a chip payment may carry the issuer authentication data (91) and issuer scripts
(71, 72), which the host passes to the reader in COMPLETE (reader-link.md). Its 55 may as
well echo the request's own card data (ledger-iso8583.md: an answer echoes its request),
so the issuer's objects are picked out by tag and the rest is left alone.

An advice of a chip payment approved offline carries the card's second cryptogram: the
TC, its 9F27, 95 and 9B from COMPLETE_RESULT stand where the ARQC's were, and every other
object of the card data stays as it was. Errors never quote the data.
"""

from __future__ import annotations

from typing import Final

from protocols.ber_tlv import Tlv, TlvError, decode_tlv, encode_tlv
from protocols.iso8583_profile import LedgerFormatError

__all__ = ["ISSUER_TAGS", "TC_TAGS", "issuer_data", "with_tc"]

ISSUER_AUTHENTICATION_DATA: Final = 0x91
ISSUER_TAGS: Final = frozenset({ISSUER_AUTHENTICATION_DATA, 0x71, 0x72})
CRYPTOGRAM: Final = 0x9F26
CRYPTOGRAM_INFORMATION: Final = 0x9F27
TC_TAGS: Final = (CRYPTOGRAM, CRYPTOGRAM_INFORMATION, 0x95, 0x9B)
# 9F27 bits 8-7 (EMV Book 3, 6.5.5.4): 00 AAC, 01 TC, 10 ARQC.
_CID_TYPE_MASK: Final = 0xC0
_CID_TC: Final = 0x40


def _objects(data: bytes, what: str) -> list[Tlv]:
    try:
        return decode_tlv(data)
    except TlvError:
        raise LedgerFormatError("55", f"{what} is not BER-TLV") from None


def issuer_data(field55: bytes) -> bytes:
    """The 91, 71 and 72 objects of a 0210's field 55, in their order (b"" when it has none):
    what COMPLETE passes to the card. LedgerFormatError when 55 is not BER-TLV."""
    picked = [item for item in _objects(field55, "ICC data") if item.tag in ISSUER_TAGS]
    return encode_tlv(picked)


def with_tc(icc: bytes, complete_result: bytes) -> bytes:
    """The card data `icc` of a chip payment with the 9F26, 9F27, 95 and 9B of the card's
    COMPLETE_RESULT (its BER-TLV) in place of the ARQC's; those the card data lacked (9B,
    usually) are added at its end. LedgerFormatError unless the result holds a TC."""
    card = _objects(icc, "the card data")
    result = {item.tag: item for item in _objects(complete_result, "the COMPLETE_RESULT")}
    cid = result.get(CRYPTOGRAM_INFORMATION)
    if CRYPTOGRAM not in result or cid is None or len(cid.value) != 1:
        raise LedgerFormatError("55", "the COMPLETE_RESULT has no cryptogram (9F26, 9F27)")
    if cid.value[0] & _CID_TYPE_MASK != _CID_TC:
        raise LedgerFormatError("55", "the COMPLETE_RESULT's cryptogram is not a TC")
    replaced = [result.get(item.tag, item) if item.tag in TC_TAGS else item for item in card]
    present = {item.tag for item in card}
    added = [result[tag] for tag in TC_TAGS if tag in result and tag not in present]
    return encode_tlv(replaced + added)
