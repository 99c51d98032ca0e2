"""An in-memory PaymentService and a running LocalApi for the API tests.

The service is a small real implementation of the protocol (not a mock): it keeps payments,
idempotency keys and subscribers in memory and enforces the same refusals the real flow
does, so the API's HTTP mapping is tested against behaviour, not canned answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from posd.api import LocalApi
from posd.payments import (
    DeviceNotReady,
    IdempotencyKeyReused,
    InvalidRequest,
    PaymentConflict,
    UnknownPayment,
    WrongState,
)

WAIT_S = 5.0


@dataclasses.dataclass
class MemoryPayment:
    payment_id: str
    state: str
    amount: int
    method: str
    discount: int = 0
    original_payment_id: str | None = None
    created_on: datetime.date = dataclasses.field(default_factory=datetime.date.today)

    def to_json(self) -> dict[str, object]:
        return {
            "payment_id": self.payment_id,
            "state": self.state,
            "amount": self.amount,
            "discount": self.discount,
            "charged": self.amount - self.discount,
            "method": self.method,
            "entry_mode": None,
            "card_last4": None,
            "stan": None,
            "rrn": None,
            "auth_code": None,
            "response_code": None,
            "decline_reason": None,
            "offline": False,
            "created_at": f"{self.created_on.isoformat()}T00:00:00Z",
            "updated_at": f"{self.created_on.isoformat()}T00:00:00Z",
            "original_payment_id": self.original_payment_id,
        }


class MemoryPaymentService:
    def __init__(self) -> None:
        self.payments: dict[str, MemoryPayment] = {}
        self.reader_ready = True
        self.ledger_up = True
        self.fail_with: Exception | None = None
        self.saf_queue: list[dict[str, object]] = []
        self.totals_asked: list[datetime.date] = []
        self._keys: dict[str, tuple[tuple[int, str, bool], str]] = {}
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._subscribers: set[asyncio.Queue[dict[str, object] | Exception]] = set()
        self.unsubscribed = asyncio.Event()

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def _publish(self, payment: MemoryPayment) -> None:
        event: dict[str, object] = {
            "seq": next(self._seq),
            "type": "payment",
            "payment": payment.to_json(),
        }
        for queue in self._subscribers:
            queue.put_nowait(event)

    def break_subscriptions(self, error: Exception) -> None:
        """Every open subscription raises `error` on its next read, as a broken service would."""
        for queue in self._subscribers:
            queue.put_nowait(error)

    def set_state(self, payment_id: str, state: str) -> None:
        payment = self.payments[payment_id]
        payment.state = state
        self._publish(payment)

    async def create(
        self, amount: int, method: str, idempotency_key: str, benefit_plus: bool
    ) -> MemoryPayment:
        if self.fail_with is not None:
            raise self.fail_with
        params = (amount, method, benefit_plus)
        if idempotency_key in self._keys:
            known_params, payment_id = self._keys[idempotency_key]
            if known_params != params:
                raise IdempotencyKeyReused("this idempotency_key was used for another payment")
            return self.payments[payment_id]
        if not self.reader_ready:
            raise DeviceNotReady("the card reader is disconnected")
        if any(p.state == "waiting_for_card" for p in self.payments.values()):
            raise PaymentConflict("another payment is waiting for a card")
        payment = MemoryPayment(
            payment_id=f"p{next(self._ids)}",
            state="waiting_for_card",
            amount=amount,
            method=method,
            discount=amount * 500 // 10000 if benefit_plus else 0,
        )
        self.payments[payment.payment_id] = payment
        self._keys[idempotency_key] = (params, payment.payment_id)
        self._publish(payment)
        return payment

    async def get(self, payment_id: str) -> MemoryPayment | None:
        return self.payments.get(payment_id)

    async def cancel(self, payment_id: str) -> MemoryPayment:
        payment = self.payments.get(payment_id)
        if payment is None:
            raise UnknownPayment("no payment with this id")
        if payment.state == "cancelled":
            return payment
        if payment.state != "waiting_for_card":
            raise WrongState(f"a payment in state {payment.state} cannot be cancelled")
        self.set_state(payment_id, "cancelled")
        return payment

    async def refund(
        self, payment_id: str, amount: int, idempotency_key: str | None
    ) -> MemoryPayment:
        original = self.payments.get(payment_id)
        if original is None:
            raise UnknownPayment("no payment with this id")
        if original.state != "approved":
            raise WrongState(f"a payment in state {original.state} cannot be refunded")
        refunded = sum(
            p.amount for p in self.payments.values() if p.original_payment_id == payment_id
        )
        if refunded + amount > original.amount - original.discount:
            raise InvalidRequest("amount", "more than is left to refund")
        refund = MemoryPayment(
            payment_id=f"p{next(self._ids)}",
            state="approved",
            amount=amount,
            method=original.method,
            original_payment_id=payment_id,
        )
        self.payments[refund.payment_id] = refund
        self._publish(refund)
        return refund

    def events(self) -> AsyncIterator[dict[str, object]]:
        queue: asyncio.Queue[dict[str, object] | Exception] = asyncio.Queue()
        self._subscribers.add(queue)
        return self._drain(queue)

    async def _drain(
        self, queue: asyncio.Queue[dict[str, object] | Exception]
    ) -> AsyncIterator[dict[str, object]]:
        try:
            while True:
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                yield item
        finally:
            self._subscribers.discard(queue)
            self.unsubscribed.set()

    async def status(self) -> dict[str, object]:
        return {
            "terminal_id": "T0000001",
            "merchant_id": "M00000000000001",
            "version": "test",
            "uptime_s": 1,
            "config_sha256": "0" * 64,
            "ledger": {
                "link": "up" if self.ledger_up else "down",
                "last_rtt_ms": 1.5,
                "last_error": None,
            },
            "devices": {
                "card_reader": {
                    "state": "ready" if self.reader_ready else "disconnected",
                    "port": "/dev/pts/9",
                    "firmware": "1.0",
                },
                "qr_scanner": {"state": "ready", "kind": "serial"},
                "audio": {"state": "disabled", "output": "none"},
            },
            "saf": {"pending": len(self.saf_queue), "pending_amount": 0, "oldest_age_s": None},
            "orders": {"alerting": 0, "missed_today": 0},
            "payments_today": {"approved": 0, "declined": 0, "amount": 0},
        }

    async def totals(self, date: datetime.date) -> dict[str, object]:
        self.totals_asked.append(date)
        day = [p for p in self.payments.values() if p.created_on == date]
        return {
            "date": date.isoformat(),
            "approved": {
                "count": sum(1 for p in day if p.state == "approved"),
                "amount": sum(p.amount for p in day if p.state == "approved"),
            },
        }

    async def saf(self) -> list[dict[str, object]]:
        return list(self.saf_queue)

    async def saf_flush(self) -> dict[str, object]:
        if not self.ledger_up:
            raise DeviceNotReady("the ledger link is down")
        forwarded = len(self.saf_queue)
        self.saf_queue.clear()
        return {"forwarded": forwarded, "pending": 0}


@dataclasses.dataclass
class RunningApi:
    api: LocalApi
    service: MemoryPaymentService
    socket_path: Path
    task: asyncio.Task[None]

    def session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            "http://posd", connector=aiohttp.UnixConnector(path=str(self.socket_path))
        )

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.wait_for(asyncio.gather(self.task, return_exceptions=True), WAIT_S)


async def start_api(api: LocalApi) -> asyncio.Task[None]:
    """Run `api` as the supervisor would, and return once it reports it is serving."""
    ready = asyncio.Event()
    task = asyncio.create_task(api.run(ready.set))
    waiter = asyncio.create_task(ready.wait())
    await asyncio.wait({task, waiter}, timeout=WAIT_S, return_when=asyncio.FIRST_COMPLETED)
    if not ready.is_set():
        waiter.cancel()
        task.cancel()
        # Surfaces the start error (or the hang) in the test.
        await asyncio.wait_for(task, WAIT_S)
        raise AssertionError("the API stopped before it was serving")
    return task


def local_api(service: MemoryPaymentService, socket_path: Path, **options: Any) -> LocalApi:
    """A LocalApi on `service` whose `GET /v1/status` is the service's state object with the
    API's own `api` section, as posd's one state builder (posd.monitoring) gives it."""
    api: LocalApi | None = None

    async def state() -> dict[str, object]:
        built = await service.status()
        built["api"] = api.listeners() if api is not None else None
        return built

    api = LocalApi(service, socket_path, state=state, **options)
    return api


@asynccontextmanager
async def running_api(
    tmp_path: Path,
    *,
    tcp_port: int | None = None,
    token: str | None = None,
    heartbeat_s: float = 15.0,
    service: MemoryPaymentService | None = None,
    **api_options: float,
) -> AsyncIterator[RunningApi]:
    """`api_options`: LocalApi's max_connections, tcp_retry_s."""
    service = service or MemoryPaymentService()
    socket_path = tmp_path / "run" / "api.sock"
    api = local_api(
        service,
        socket_path,
        tcp_port=tcp_port,
        token=token,
        heartbeat_s=heartbeat_s,
        group=None,
        **api_options,  # type: ignore[arg-type]
    )
    task = await start_api(api)
    running = RunningApi(api, service, socket_path, task)
    try:
        yield running
    finally:
        await running.stop()
