"""Whether an answer is one to its request, on the fields posd relies on (ledger-iso8583.md).

An answer echoes its request; posd matches it by the MTI class and field 11, and checks 41
and, where the answer carries it, 4. An answer that contradicts its request on one of these
is malformed, so no answer at all: the request is handled as an unanswered one. The error
names the field and never its content.
"""

from __future__ import annotations

from protocols.iso8583_profile import LedgerFormatError
from protocols.ledger_messages import (
    LedgerRequest,
    LedgerResponse,
    NetworkRequest,
    NetworkResponse,
)

__all__ = ["AnswerMismatch", "check_answer"]


class AnswerMismatch(LedgerFormatError):
    """An answer that contradicts its request on `field` ("t" for the MTI, "11", "41", "4")."""


def check_answer(
    request: LedgerRequest | NetworkRequest, answer: LedgerResponse | NetworkResponse
) -> None:
    """Raise AnswerMismatch unless `answer` agrees with `request` on the MTI class, 11, 41,
    and 4 when the answer carries it."""
    expected_mti, expected_stan = request.match_key
    if answer.mti != expected_mti:
        field = "t"
    elif answer.stan != expected_stan:
        field = "11"
    elif answer.terminal_id != request.terminal_id:
        field = "41"
    elif (
        isinstance(answer, LedgerResponse)
        and isinstance(request, LedgerRequest)
        and answer.amount is not None
        and answer.amount != request.amount
    ):
        field = "4"
    else:
        return
    raise AnswerMismatch(field, "does not match the request", mti=answer.mti, stan=answer.stan)
