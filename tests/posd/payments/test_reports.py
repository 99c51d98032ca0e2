"""What the payment service reports from the journal's sums: the day's totals, said once."""

from __future__ import annotations

import datetime

from posd.payments.reports import totals_report


def sums(count: int, amount: int, discount: int, charged: int) -> dict[str, int]:
    return {"count": count, "amount": amount, "discount": discount, "charged": charged}


def test_totals_count_the_charges_that_stand_and_the_approved_refunds() -> None:
    raw: dict[str, object] = {
        "date": "2026-11-25",
        "currency": "KRW",
        "purchases": {
            "card": {"approved": sums(1, 10_000, 0, 10_000), "reversed": sums(1, 5_000, 0, 5_000)},
            "qr": {
                "approved": sums(1, 3_000, 150, 2_850),
                "forwarded": sums(2, 4_000, 0, 4_000),
                "approved_offline": sums(1, 1_000, 0, 1_000),
            },
            "any": {"declined": sums(1, 2_000, 0, 2_000)},
        },
        "refunds": {
            "card": {
                "approved": sums(1, 500, 0, 500),
                "authorizing": sums(1, 1_000, 0, 1_000),
            }
        },
    }
    report = totals_report(raw, datetime.date(2026, 11, 25))
    assert report["date"] == "2026-11-25" and report["currency"] == "KRW"
    assert report["by_method"] == raw["purchases"]
    assert report["approved"] == {"count": 5, "amount": 18_000, "charged": 17_850}
    assert report["refunded"] == {"count": 1, "amount": 500}
    assert report["net_charged"] == 17_350


def test_a_day_without_payments_is_all_zero() -> None:
    report = totals_report({"purchases": {}, "refunds": {}}, datetime.date(2026, 11, 24))
    assert report["approved"] == {"count": 0, "amount": 0, "charged": 0}
    assert report["refunded"] == {"count": 0, "amount": 0} and report["net_charged"] == 0
