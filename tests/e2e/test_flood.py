"""`posd run` under a bounded flood of hostile local clients on its Unix socket: idle
connections, trickling ones, garbage. It keeps answering, keeps its ledger link, takes a
payment once the flood is over, and its log stays readable (well under a megabyte)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from posd.config import load_config
from posd.sim import GOOD_QR_ACCOUNT, LedgerSimulator, QrIssuer, SimulatedSerialScanner
from tests.helpers.configs import MAC_KEY_HEX, PLATFORM_KEY_ID, platform_key_pair, write_config
from tests.helpers.daemon import REPO_ROOT, PosClient

pytestmark = pytest.mark.timeout(90)

# posd gets this open-files limit: its connection cap is then (1024 - 128) // 2 = 448, which
# the flood goes well past.
POSD_OPEN_FILES = 1024
IDLE = 1200
TRICKLING = 300
GARBAGE = 1200
AT_ONCE = 400
FLOOD_S = 12.0


def limited_open_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (POSD_OPEN_FILES, POSD_OPEN_FILES))


class Flood:
    """Hostile clients, each kind bounded in number and in time; `outcomes` counts what
    happened to them."""

    def __init__(self, socket: Path) -> None:
        self.socket = str(socket)
        self.outcomes: Counter[str] = Counter()
        self._gate = asyncio.Semaphore(AT_ONCE)
        self._deadline = time.monotonic() + FLOOD_S

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        try:
            return await asyncio.wait_for(asyncio.open_unix_connection(self.socket), 2)
        except (OSError, TimeoutError):
            # A full backlog refuses at once (EAGAIN): posd is at its cap and busy.
            self.outcomes["not accepted"] += 1
            return None

    async def _until_closed(self, reader: asyncio.StreamReader) -> None:
        try:
            async with asyncio.timeout(max(0.1, self._deadline - time.monotonic())):
                while await reader.read(4096):
                    pass
            self.outcomes["closed by posd"] += 1
        except TimeoutError:
            self.outcomes["still open at the end"] += 1
        except OSError:
            self.outcomes["reset by posd"] += 1

    async def idle(self) -> None:
        async with self._gate:
            conn = await self._connect()
        if conn is None:
            return
        reader, writer = conn
        try:
            await self._until_closed(reader)
        finally:
            writer.close()

    async def trickle(self) -> None:
        async with self._gate:
            conn = await self._connect()
        if conn is None:
            return
        reader, writer = conn

        async def dribble() -> None:
            with contextlib.suppress(OSError):
                for byte in b"GET /v1/status HTTP/1.1\r\nHost: posd\r\nX-Slow: " + b"a" * 200:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(0.3)

        dribbling = asyncio.create_task(dribble())
        try:
            await self._until_closed(reader)
        finally:
            dribbling.cancel()
            writer.close()

    async def garbage(self, rng: random.Random) -> None:
        async with self._gate:
            conn = await self._connect()
            if conn is None:
                return
            reader, writer = conn
            try:
                writer.write(rng.randbytes(rng.randrange(1, 3000)))
                with contextlib.suppress(OSError):
                    await writer.drain()
                await self._until_closed(reader)
            finally:
                writer.close()

    async def run(self) -> None:
        rng = random.Random(9)
        kinds = (
            [self.idle() for _ in range(IDLE)]
            + [self.trickle() for _ in range(TRICKLING)]
            + [self.garbage(rng) for _ in range(GARBAGE)]
        )
        rng.shuffle(kinds)
        await asyncio.gather(*kinds)


async def test_a_flood_of_hostile_local_clients_costs_no_payment_and_no_log_flood(
    tmp_path: Path,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2 * (IDLE + TRICKLING) + 256:
        pytest.skip(f"this test process may open only {hard} files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    issuer = QrIssuer(key_id=PLATFORM_KEY_ID, private_key=platform_key_pair())
    log_path = tmp_path / "posd-process.log"
    try:
        with SimulatedSerialScanner() as scanner:
            async with LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX)) as ledger:
                config_path = write_config(
                    tmp_path,
                    ledger={"port": ledger.port},
                    qr_scanner={"kind": "serial", "port": scanner.port},
                    logging={"level": "info"},
                )
                socket = load_config(config_path).api.socket
                with log_path.open("ab") as log_file:
                    process = await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "posd",
                        "run",
                        "-c",
                        str(config_path),
                        cwd=REPO_ROOT,
                        stdin=subprocess.DEVNULL,
                        stdout=log_file,
                        stderr=subprocess.STDOUT,
                        preexec_fn=limited_open_files,
                    )
                client = PosClient(socket)
                try:
                    await client.wait_status(
                        lambda s: (
                            s["ledger"]["link"] == "up"
                            and s["devices"]["qr_scanner"]["state"] == "ready"
                        ),
                        timeout_s=20,
                    )
                    before = log_path.stat().st_size
                    flood = Flood(socket)
                    flooding = asyncio.create_task(flood.run())
                    await asyncio.sleep(1)
                    # Mid-flood, an honest client is answered.
                    mid = await client.wait_status(lambda s: True, timeout_s=10)
                    assert mid["api"]["connections"] <= mid["api"]["max_connections"] == 448
                    await asyncio.wait_for(flooding, FLOOD_S + 30)

                    after = await client.wait_status(lambda s: True)
                    assert after["ledger"]["link"] == "up", after["ledger"]
                    created = await client.create(3_000, "qr")
                    await scanner.scan(issuer.valid(GOOD_QR_ACCOUNT))
                    done = await client.wait_final(created["payment_id"])
                    assert done["state"] == "approved", done
                finally:
                    await client.session.close()
                    if process.returncode is None:
                        process.terminate()
                    assert await asyncio.wait_for(process.wait(), 15) == os.EX_OK
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    grown = log_path.stat().st_size - before
    logged = log_path.read_text(errors="replace")
    assert grown < 1_000_000, f"the log grew by {grown} bytes"
    assert "Traceback" not in logged and "Too many open files" not in logged
    # Every kind of client met posd's limits: the cap (idle ones gave way), the timeouts.
    assert flood.outcomes["closed by posd"] >= IDLE, flood.outcomes
    assert "the most it takes" in logged
    assert sum(flood.outcomes.values()) == IDLE + TRICKLING + GARBAGE
