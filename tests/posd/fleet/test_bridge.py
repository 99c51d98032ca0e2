"""The console across a bridged pair of brokers: the boxes on an edge broker bridging `posd/#`
both ways to the centre's, the console on the centre's (a regional broker feeding the centre,
the shape of a cluster). Everything is shown, commands are answered, and a will that arrives
after the box already reconnected elsewhere does not mark it offline."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from posd.fleet import Operator, SimFleet
from posd.fleet.simbox import DEAF_LINK
from tests.helpers.mosquitto import Mosquitto
from tests.posd.fleet.live import live_console


async def test_boxes_on_the_edge_broker_seen_and_commanded_from_the_centre(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    centre = mosquitto_factory()
    edge = mosquitto_factory(bridge_to=centre)
    edge.wait_bridged()
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    # keepalive 1 s: a box's connection that goes silent is given up by its broker in 1.5 s.
    async with (
        SimFleet(edge.host, edge.port, 8, schedule=False, operator_keys=[public],
                 keepalive_s=1) as fleet,
        # The console comes later: its snapshot is what the bridge retained on the centre.
        live_console(tmp_path / "c.db", centre, operator=Operator(key)) as live,
    ):  # fmt: skip
        console = live.console
        await live.until(lambda: live.shown(8))

        fleet.drop("S0000002")  # its will, fired on the edge, crosses the bridge
        fleet.act("S0000004", lambda box, now: box.go_deaf(DEAF_LINK, now))
        await live.until(
            lambda: live.row("S0000002")["status"] == "offline" and live.row("S0000004")["deaf"]
        )

        async with (
            live.served.session() as http,
            http.post("/api/boxes/S0000003/commands/diagnostics", json={"args": {}}) as response,
        ):
            assert response.status == 200, await response.text()
            answer = await response.json()
        assert answer["ok"] is True and answer["result"]["version"] == "0.1.0"

        # A late will: S0000005 moves to the centre's broker, its connection there goes
        # silent, and it comes back on the edge (connection 3). The centre gives the silent
        # connection up only now, after the box is back: its will must not mark it offline.
        await fleet.connect("S0000005", host=centre.host, port=centre.port)
        await live.until(lambda: console.model.boxes["S0000005"].conn_connects == 2)
        silent = fleet.freeze("S0000005")
        mark = centre.log_mark()
        await fleet.connect("S0000005")
        await live.until(lambda: console.model.boxes["S0000005"].conn_connects == 3)
        await asyncio.to_thread(
            centre.wait_for_log, r"Client posd-S0000005 has exceeded timeout", after=mark
        )
        await live.until(lambda: console.model.late_wills == 1)
        assert live.row("S0000005")["status"] == "online"
        assert silent is not None
        silent.drop()
        assert console.summary()["offline"] == 1  # S0000002 alone
