from __future__ import annotations

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd import payment_rules as r

LIMITS = r.OfflineLimits(
    enabled=True, max_payment=50_000, max_total=500_000, max_count=50, max_per_account=3,
    max_age_h=72,
)
NONE_PENDING = r.OfflineExposure(total=0, count=0, for_account=0, oldest_at=None)
NOW = 1_800_000_000


@given(st.integers(1, 10**10), st.integers(300, 700))
def test_discount_is_floor_and_never_exceeds_amount(amount: int, rate: int) -> None:
    d = r.benefit_discount(amount, rate, True)
    assert d == (amount * rate) // 10000
    assert 0 <= d < amount
    assert d <= amount * rate / 10000 < d + 1


def test_discount_examples() -> None:
    assert r.benefit_discount(10_000, 500, True) == 500
    assert r.benefit_discount(9_999, 700, True) == 699  # 699.93 floors
    assert r.benefit_discount(10_000, 500, False) == 0
    # A request for 혜택플러스 at a shop that is not one: no discount, not an error.
    assert r.benefit_discount(10_000, 0, True) == 0


def test_field48_only_with_a_discount() -> None:
    assert r.benefit_field48(500, 500) == [("BP", "500"), ("DA", "500")]
    assert r.benefit_field48(500, 0) == []


def test_prefix() -> None:
    assert r.prefix_accepted("9410123456789012", ("9410",))
    assert not r.prefix_accepted("4111111111111111", ("9410",))
    assert not r.prefix_accepted("9410123456789012", ())
    assert r.prefix_accepted("5555000011112222", ("9410", "5555"))


@pytest.mark.parametrize(
    ("expiry", "today", "expired"),
    [
        ("2612", datetime.date(2026, 12, 31), False),  # good through its last day
        ("2612", datetime.date(2027, 1, 1), True),
        ("2611", datetime.date(2026, 12, 1), True),
        ("3001", datetime.date(2026, 12, 1), False),
        (None, datetime.date(2099, 1, 1), False),  # unknown: the ledger judges
        ("2613", datetime.date(2030, 1, 1), False),  # malformed: the ledger judges
        ("26x2", datetime.date(2030, 1, 1), False),
    ],
)
def test_card_expired(expiry: str | None, today: datetime.date, expired: bool) -> None:
    assert r.card_expired(expiry, today) is expired


def test_mask_pan_keeps_at_most_first6_last4() -> None:
    assert r.mask_pan("9410123456789012") == "941012******9012"
    assert r.mask_pan("1234567890") == "**********"
    assert r.last4("9410123456789012") == "9012"


@given(st.text(alphabet="0123456789", min_size=11, max_size=19))
def test_mask_pan_hides_the_middle(pan: str) -> None:
    masked = r.mask_pan(pan)
    assert len(masked) == len(pan)
    assert masked[6:-4] == "*" * (len(pan) - 10)


def test_transitions() -> None:
    r.check_transition(r.WAITING, r.AUTHORIZING)
    r.check_transition(r.AUTHORIZING, r.REVERSING)
    r.check_transition(r.APPROVED, r.REVERSING)
    r.check_transition(r.APPROVED_OFFLINE, r.FORWARDED)
    for old, new in [
        (r.CANCELLED, r.AUTHORIZING),
        (r.DECLINED, r.APPROVED),
        (r.AUTHORIZING, r.CANCELLED),  # too late to cancel once the ledger may know
        (r.REVERSED, r.APPROVED),
        (r.WAITING, r.APPROVED),
        ("bogus", r.APPROVED),
    ]:
        with pytest.raises(r.BadTransition):
            r.check_transition(old, new)


def test_every_state_has_transitions_listed() -> None:
    assert set(r._TRANSITIONS) == r.STATES
    for targets in r._TRANSITIONS.values():
        assert targets <= r.STATES


def test_decline_reasons() -> None:
    assert r.decline_reason("51") == "insufficient_funds"
    assert r.decline_reason("54") == "card_expired"
    assert r.decline_reason("63") == "ledger_security"
    assert r.decline_reason("91") == "ledger_unavailable"
    assert r.decline_reason("Q7") == "declined_Q7"
    assert r.read_failed_reason("unsupported_card") == "card_not_accepted"
    assert r.read_failed_reason("card_removed") == "card_removed"
    assert r.read_failed_reason("something_new") == "reader_error"


def test_offline_within_limits() -> None:
    assert r.offline_refusal(50_000, LIMITS, NONE_PENDING, NOW) is None
    near = r.OfflineExposure(total=450_000, count=49, for_account=2, oldest_at=NOW - 71 * 3600)
    assert r.offline_refusal(50_000, LIMITS, near, NOW) is None


@pytest.mark.parametrize(
    ("charged", "exposure", "reason"),
    [
        (50_001, NONE_PENDING, "max_payment"),
        (1, r.OfflineExposure(500_000, 10, 0, NOW), "max_total"),
        (1, r.OfflineExposure(1_000, 50, 0, NOW), "max_count"),
        (1, r.OfflineExposure(1_000, 3, 3, NOW), "max_per_account"),
        (1, r.OfflineExposure(1_000, 1, 0, NOW - 72 * 3600 - 1), "max_age_h"),
    ],
)
def test_offline_each_limit(charged: int, exposure: r.OfflineExposure, reason: str) -> None:
    assert r.offline_refusal(charged, LIMITS, exposure, NOW) == reason


def test_offline_disabled() -> None:
    off = r.OfflineLimits(False, 50_000, 500_000, 50, 3, 72)
    assert r.offline_refusal(1, off, NONE_PENDING, NOW) == "offline_disabled"


@given(st.integers(0, 999_999))
def test_offline_auth_code_shape(stan: int) -> None:
    code = r.offline_auth_code(stan)
    assert len(code) == 6 and code.startswith("Y1") and code[2:].isdigit()


def test_refund_rules() -> None:
    assert r.refund_problem(r.APPROVED, False, 10_000, 0, 10_000) is None
    assert r.refund_problem(r.FORWARDED, False, 10_000, 4_000, 6_000) is None
    bad = r.RefundProblem.BAD_AMOUNT
    assert r.refund_problem(r.APPROVED, False, 10_000, 4_000, 6_001) is bad
    assert r.refund_problem(r.APPROVED, False, 10_000, 0, 0) is bad
    no = r.RefundProblem.NOT_REFUNDABLE
    for state in (r.DECLINED, r.APPROVED_OFFLINE, r.REVERSED, r.WAITING, r.CANCELLED):
        assert r.refund_problem(state, False, 10_000, 0, 1) is no
    assert r.refund_problem(r.APPROVED, True, 10_000, 0, 1) is no  # a refund of a refund
