"""The receive path both ends of the ledger link share: decode, check the MAC, name the message.

A network message (0800, 0810) carries no MAC; a financial one must carry its MAC where
profile 2 puts it (64, or 128 in a message with a field 65-127), and a wrong one is reported
beside the message rather than raised, so the ledger can answer it 63. Every error raised
carries the MTI and, when it could be read, the STAN, so an answer can still be addressed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Generic, TypeVar

from protocols.iso8583_profile import IsoMessage, LedgerFormatError, decode_message
from protocols.ledger_mac import verify_mac

__all__ = ["Inbound", "decode_inbound", "mac_valid", "with_ids"]

M = TypeVar("M")
N = TypeVar("N")
F = TypeVar("F")


@dataclass(frozen=True)
class Inbound(Generic[M]):
    """A decoded message and whether its MAC was right (True for 0800/0810, which have none)."""

    message: M
    mac_valid: bool


def mac_valid(iso: IsoMessage, mac_key: bytes) -> bool:
    """Whether the MAC of a financial message is right; LedgerFormatError when it has none."""
    mac = iso.mac
    if mac is None:
        raise LedgerFormatError(str(iso.mac_field), "a MAC is required in this message")
    return verify_mac(mac_key, iso.mac_input, mac)


def with_ids(exc: LedgerFormatError, iso: IsoMessage) -> LedgerFormatError:
    """`exc` again, naming the MTI and STAN of `iso`."""
    stan_text = iso.fields.get(11)
    stan = int(stan_text) if isinstance(stan_text, str) and stan_text.isdigit() else None
    return LedgerFormatError(exc.field, exc.problem, mti=iso.mti, stan=stan)


def decode_inbound(
    data: bytes,
    mac_key: bytes,
    network_mti: str,
    parse_network: Callable[[IsoMessage], N],
    financial_mtis: Collection[str],
    parse_financial: Callable[[IsoMessage], F],
    side: str,
) -> Inbound[N | F]:
    """Decode one side's message: the network MTI has no MAC, a financial one must carry one."""
    iso = decode_message(data)
    try:
        if iso.mti == network_mti:
            return Inbound(parse_network(iso), True)
        if iso.mti not in financial_mtis:
            raise LedgerFormatError("t", f"not a {side} MTI of this profile")
        valid = mac_valid(iso, mac_key)
        return Inbound(parse_financial(iso), valid)
    except LedgerFormatError as exc:
        raise with_ids(exc, iso) from None
