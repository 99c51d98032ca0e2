"""Field values of the ledger profile: field 7 read back across year ends, the clock skew,
field 39's decline reasons, field 48."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.ledger_fields import (
    DECLINE_REASONS,
    RESPONSE_CODES,
    AdditionalData,
    check_mmdd,
    check_mmddhhmmss,
    clock_skew_s,
    decline_reason,
    field7,
    field7_moment,
    parse_field48,
)
from protocols.ledger_messages import LedgerFormatError

UTC = dt.UTC
KST = dt.timezone(dt.timedelta(hours=9))


def at(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("ledger", "host", "skew"),
    [
        ("1125030405", at(2026, 11, 25, 3, 4, 5), 0.0),
        ("1125030445", at(2026, 11, 25, 3, 4, 5), 40.0),  # ledger 40 s ahead
        ("1125030325", at(2026, 11, 25, 3, 4, 5), -40.0),  # ledger 40 s behind
        # Across New Year: the ledger's 1 January is the next year's, its 31 December the
        # last year's, whichever side posd's own clock is on.
        ("0101000005", at(2026, 12, 31, 23, 59, 50), 15.0),
        ("1231235950", at(2027, 1, 1, 0, 0, 5), -15.0),
        ("0101000000", at(2026, 12, 31, 23, 0, 0), 3600.0),
        # 29 February: in the leap year that is nearest.
        ("0229000000", at(2028, 2, 28, 23, 59, 0), 60.0),
        ("0301000000", at(2028, 2, 29, 23, 59, 0), 60.0),
    ],
)
def test_clock_skew(ledger: str, host: dt.datetime, skew: float) -> None:
    assert clock_skew_s(ledger, host) == skew
    assert clock_skew_s(ledger, host.astimezone(KST)) == skew  # posd's zone does not matter


def test_clock_skew_keeps_the_host_fraction() -> None:
    assert clock_skew_s("1125030405", at(2026, 11, 25, 3, 4, 4, 250_000)) == 0.75


@given(
    st.datetimes(min_value=dt.datetime(2001, 1, 1), max_value=dt.datetime(2098, 12, 31),
                 timezones=st.just(UTC)),
    st.integers(-180 * 86_400, 180 * 86_400),
)  # fmt: skip
def test_field7_moment_reads_back_any_time_within_half_a_year(
    host: dt.datetime, offset_s: int
) -> None:
    ledger = host.replace(microsecond=0) + dt.timedelta(seconds=offset_s)
    assert field7_moment(field7(ledger), host) == ledger
    assert clock_skew_s(field7(ledger), host.replace(microsecond=0)) == offset_s


def test_field7_moment_refuses() -> None:
    with pytest.raises(ValueError, match="aware"):
        field7_moment("1125030405", dt.datetime(2026, 11, 25))
    for bad in ["1325030405", "0230000000", "1125240000", "112503040", "11250304x5"]:
        with pytest.raises(LedgerFormatError) as info:
            field7_moment(bad, at(2026, 11, 25))
        assert info.value.field == "7" and bad not in str(info.value)
    # 29 February with no leap year within a year of posd's clock: a clock years off.
    with pytest.raises(LedgerFormatError, match="29 February"):
        field7_moment("0229120000", at(2026, 6, 1))


def test_calendar_checks() -> None:
    check_mmdd("0229", "13")  # no year: 29 February may be a date
    check_mmddhhmmss("1231235959", "7")
    for bad in ["0230", "0431", "0000", "1301"]:
        with pytest.raises(LedgerFormatError):
            check_mmdd(bad, "13")


def test_decline_reasons() -> None:
    expected = {
        "51": "insufficient_funds", "54": "card_expired", "14": "invalid_card",
        "13": "invalid_amount", "61": "exceeds_limit", "57": "not_permitted",
        "58": "not_permitted", "05": "do_not_honour", "91": "ledger_unavailable",
        "96": "ledger_unavailable", "63": "ledger_security", "94": "duplicate",
        "12": "ledger_error", "30": "ledger_error",
    }  # fmt: skip
    for code, reason in expected.items():
        assert decline_reason(code) == reason
    assert decline_reason("00") is None
    assert decline_reason("77") == "ledger_error"
    assert set(DECLINE_REASONS) == set(RESPONSE_CODES) - {"00"}


def test_field48() -> None:
    assert parse_field48("BP=500;DA=25;QT=YQ==") == {"BP": "500", "DA": "25", "QT": "YQ=="}
    assert AdditionalData.parse("QT=YQ==;BP=300;DA=3") == AdditionalData(300, 3, "YQ==")
    for bad in ["BP", "BP=1;BP=2", "bp=1", "BP=1;;DA=2", "BP=x;DA=1", "BP=500", "ZZ=1", "QT=!!"]:
        with pytest.raises(LedgerFormatError) as info:
            AdditionalData.parse(bad)
        assert info.value.field == "48"
