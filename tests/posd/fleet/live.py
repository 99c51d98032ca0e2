"""The console on a live broker: the served console of support.py with the real MqttFleetLink,
and waiting for what it shows."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from posd.fleet import Console, FleetModel, MqttFleetLink, Operator
from posd.fleet.link import console_client_id
from posd.mqtt import LinkSettings
from tests.helpers.mosquitto import Mosquitto
from tests.posd.fleet.support import Served, running_console

WAIT_S = 15.0


@dataclasses.dataclass
class Live:
    served: Served
    link: MqttFleetLink

    @property
    def console(self) -> Console:
        return self.served.console

    def shown(self, count: int) -> bool:
        """Every one of `count` boxes is there with a state, and online."""
        boxes = self.served.console.model.boxes
        return len(boxes) == count and all(
            box.state_ts is not None and box.status == "online" for box in boxes.values()
        )

    def row(self, terminal_id: str) -> dict[str, object]:
        return self.served.console.model.boxes[terminal_id].row()

    async def until(self, what: Callable[[], bool], timeout_s: float = WAIT_S) -> None:
        """Wait for `what()` to hold, rechecking at every change the console's watchers see
        (and now and then: a counter that is no row, such as late wills)."""
        watcher = self.served.console.hub.watch()
        deadline = time.monotonic() + timeout_s
        try:
            while not what():
                left = deadline - time.monotonic()
                assert left > 0, "the console never showed it"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(watcher.wake.wait(), min(left, 0.1))
                watcher.take()
        finally:
            self.served.console.hub.unwatch(watcher)


def settings_for(broker: Mosquitto) -> LinkSettings:
    return LinkSettings(
        name="fleet",
        host=broker.host,
        port=broker.port,
        client_id=console_client_id(),
        backoff_initial_s=0.1,
        backoff_max_s=0.5,
    )


@contextlib.asynccontextmanager
async def live_console(
    db: Path,
    broker: Mosquitto,
    *,
    operator: Operator | None = None,
    state_interval_s: float = 60.0,
) -> AsyncIterator[Live]:
    model = FleetModel("posd", state_interval_s=state_interval_s)
    async with running_console(db, operator=operator, model=model) as served:
        link = MqttFleetLink(settings_for(broker), "posd")
        task = asyncio.create_task(link.run(served.console))
        try:
            await asyncio.wait_for(link.link.wait_up(), WAIT_S)
            yield Live(served, link)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
