"""What the journal accepts: each argument checked before a transaction starts, so a refusal
(InvalidArgument, naming the argument) records nothing; and the seconds-to-milliseconds rule.
"""

from __future__ import annotations

import math
import re

from posd.journal.model import MAX_IDEMPOTENCY_KEY, InvalidArgument
from protocols.ledger_fields import AMOUNT_MAX, STAN_MAX, STAN_MIN

# Field 39 is an2 in the profile: any letters and digits, so the journal takes all of them.
_RESPONSE_CODE = re.compile(r"[0-9A-Za-z]{2}")
OFFLINE_AUTH_CODE = re.compile(r"Y1[0-9]{4}")
BPS_MAX = 10_000


def to_ms(now: float, argument: str = "now") -> int:
    """Unix seconds as the whole milliseconds the journal stores."""
    if not math.isfinite(now) or now < 0:
        raise InvalidArgument(argument, "must be a finite, non-negative Unix time in seconds")
    return round(now * 1000)


def check_response_code(response_code: str) -> None:
    if not isinstance(response_code, str) or not _RESPONSE_CODE.fullmatch(response_code):
        raise InvalidArgument("response_code", "must be 2 letters or digits (an2)")


def check_amount(amount: int) -> None:
    # Field 4 (n12) is the ceiling here; the API's policy ceiling is the payment service's.
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= AMOUNT_MAX:
        raise InvalidArgument("amount", f"must be a whole number of won, 1 to {AMOUNT_MAX}")


def check_benefit(amount: int, rate_bps: int, discount: int, charged: int) -> None:
    """A purchase's 혜택플러스 as the payment rules worked it out: checked to add up, a
    discount only with a rate, and the rate a number of basis points."""
    if not _whole(rate_bps) or not 0 <= rate_bps <= BPS_MAX:
        raise InvalidArgument("benefit_plus_rate_bps", f"must be 0 to {BPS_MAX} basis points")
    if not _whole(discount) or not 0 <= discount < amount or (discount and not rate_bps):
        raise InvalidArgument(
            "discount", "must be 0 (without a rate), or from 0 to less than the amount"
        )
    if not _whole(charged) or discount + charged != amount:
        raise InvalidArgument("charged", "must be the amount less the discount")


def check_stan(stan: int) -> None:
    if isinstance(stan, bool) or not isinstance(stan, int) or not STAN_MIN <= stan <= STAN_MAX:
        raise InvalidArgument("stan", f"must be {STAN_MIN} to {STAN_MAX}")


def check_idempotency_key(key: str) -> None:
    if not isinstance(key, str) or not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise InvalidArgument(
            "idempotency_key", f"must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters"
        )


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_optional_text(name: str, value: str | None, max_len: int) -> None:
    if value is not None and not (
        value.isascii() and value.isprintable() and len(value) <= max_len
    ):
        raise InvalidArgument(name, f"must be at most {max_len} printable ASCII characters")
