"""`posd run` as its own process with monitoring on: SIGKILL leaves the will `offline`
retained; a restart is told apart by its new boot_id and says `online` again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from posd.sim import LedgerSimulator
from tests.helpers.configs import MAC_KEY_HEX, write_config
from tests.helpers.daemon import daemon_process
from tests.helpers.mosquitto import Mosquitto
from tests.posd.monitoring.support import BASE, mqtt_section, watching

pytestmark = pytest.mark.timeout(60)


async def test_the_will_says_offline_after_sigkill_and_a_restart_says_online(
    tmp_path: Path, mosquitto: Mosquitto
) -> None:
    async with LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX)) as ledger:
        config = write_config(
            tmp_path,
            ledger={"port": ledger.port},
            mqtt=mqtt_section(mosquitto),
            logging={"level": "info"},
        )
        async with watching(mosquitto) as ops:
            async with daemon_process(config) as process:
                first = await ops.state(lambda s: s["ledger"]["link"] == "up")
                assert ops.on("availability")[-1].payload == b"online"
                mark = len(ops.seen)
                process.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
                await process.wait()
            will = await ops.wait_for(
                lambda m: m.topic == f"{BASE}/availability", "the will", since=mark
            )
            assert will.payload == b"offline"
            async with watching(mosquitto) as late:
                kept = await late.wait_for(lambda m: m.topic.endswith("/availability"), "kept")
                assert (kept.payload, kept.retain) == (b"offline", True)
            (tmp_path / "api.sock").unlink(missing_ok=True)
            async with daemon_process(config) as process:
                again = await ops.state(lambda s: s["boot_id"] != first["boot_id"], since=mark)
                assert again["connects"] == 1
                assert ops.on("availability")[-1].payload == b"online"
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            assert ops.on("availability")[-1].payload == b"offline"
