"""The payment object the local API and the event stream show, over a journal record."""

from __future__ import annotations

from dataclasses import dataclass

from posd.journal import PaymentRecord


@dataclass(frozen=True)
class PaymentView:
    """`shown_state` overrides the journal's state while the outcome is not final for the
    customer (a chip approval waiting for the card's verdict is still `authorizing`)."""

    record: PaymentRecord
    shown_state: str | None = None

    @property
    def payment_id(self) -> str:
        return self.record.payment_id

    @property
    def state(self) -> str:
        return self.shown_state or self.record.state

    def to_json(self) -> dict[str, object]:
        doc = self.record.to_api()
        doc["state"] = self.state
        if self.record.kind == "refund":
            doc["original_payment_id"] = self.record.original_payment_id
        return doc
