"""The payment object the local API and the event stream show, over a journal record."""

from __future__ import annotations

from dataclasses import dataclass

from posd.journal_model import PaymentRecord


@dataclass(frozen=True)
class PaymentView:
    record: PaymentRecord

    @property
    def payment_id(self) -> str:
        return self.record.payment_id

    @property
    def state(self) -> str:
        return self.record.state

    def to_json(self) -> dict[str, object]:
        doc = self.record.to_api()
        if self.record.kind == "refund":
            doc["original_payment_id"] = self.record.original_payment_id
        return doc
