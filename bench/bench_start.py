"""Start-up, as a shop after a power cut waits for it: `posd run` started as a process of its own
(the venv's `posd` script, as systemd's ExecStart runs it, with NOTIFY_SOCKET set as systemd
sets it) on the simulated reader and serial scanner and the reference ledger.

From the moment the process is spawned:
- READY=1 on the notify socket (config loaded, journal open, API listening: what
  `systemctl start` waits for);
- a payment possible: the status object says the ledger link is up (signed on) and the card
  reader ready (polled every 20 ms, so up to 20 ms late);
- the first payment done: a contactless card payment created through the API and approved by
  the ledger, the card presented at once.

Beside them, the share of the interpreter and the imports alone (a Python that only imports
what `posd run` imports). The first start makes the state dir (journal, key); each restart
after it comes after a SIGKILL (the power cut) with the journal of the runs before. Medians
over RESTARTS restarts. The page cache is warm, as it is not after a real power cut: a cold
disk adds its reads to each figure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from posd.config import load_config
from posd.sim import LedgerSimulator, SimulatedCardReader, SimulatedSerialScanner
from tests.helpers.configs import MAC_KEY_HEX, write_config
from tests.helpers.daemon import REPO_ROOT, PosClient

RESTARTS = 5
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Start:
    ready_s: float
    possible_s: float
    paid_s: float


def _posd_command() -> list[str]:
    script = Path(sys.executable).with_name("posd")
    return [str(script)] if script.exists() else [sys.executable, "-m", "posd"]


async def _ready(notify: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    while True:
        datagram = await loop.sock_recv(notify, 4096)
        if b"READY=1" in datagram.split(b"\n"):
            return


async def one_start(
    directory: Path, config_path: Path, reader: SimulatedCardReader, number: int
) -> Start:
    loop = asyncio.get_running_loop()
    notify_path = directory / f"notify-{number}.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
    notify.bind(str(notify_path))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify_path)}
    config = load_config(config_path)
    client = PosClient(config.api.socket)
    with (directory / "posd-process.log").open("ab") as log, notify:
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            *_posd_command(),
            "run",
            "-c",
            str(config_path),
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await _ready(notify)
            ready = loop.time() - started
            await client.wait_status(
                lambda s: (
                    s["ledger"]["link"] == "up" and s["devices"]["card_reader"]["state"] == "ready"
                ),
                timeout_s=TIMEOUT_S,
            )
            possible = loop.time() - started
            created = await client.create(1_000, "card")
            reader.present("seoroeum-contactless")
            done = await client.wait_final(str(created["payment_id"]), timeout_s=TIMEOUT_S)
            if done["state"] != "approved":
                raise RuntimeError(f"the first payment ended {done['state']}")
            paid = loop.time() - started
        finally:
            await client.session.close()
            with contextlib.suppress(ProcessLookupError):
                process.kill()  # the power cut
            await process.wait()
    return Start(ready, possible, paid)


async def starts(directory: Path, restarts: int = RESTARTS) -> list[Start]:
    with SimulatedSerialScanner() as scanner:
        async with (
            LedgerSimulator(mac_key=bytes.fromhex(MAC_KEY_HEX)) as ledger,
            SimulatedCardReader(link=directory / "posd-reader") as reader,
        ):
            config_path = write_config(
                directory,
                ledger={"port": ledger.port},
                card_reader={"port": reader.port},
                qr_scanner={"kind": "serial", "port": scanner.port},
                logging={"level": "info"},
            )
            return [await one_start(directory, config_path, reader, n) for n in range(restarts + 1)]


async def imports_alone(rounds: int = RESTARTS) -> list[float]:
    """Spawn to exit of a Python that only imports what `posd run` imports: the share of the
    start-up that is the interpreter and the imports."""
    loop = asyncio.get_running_loop()
    samples = []
    for _ in range(rounds):
        started = loop.time()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import posd.cli.commands, posd.daemon", cwd=REPO_ROOT
        )
        if await process.wait() != 0:
            raise RuntimeError("importing posd failed")
        samples.append(loop.time() - started)
    return samples


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:7.0f} ms (min {min(values) * 1000:.0f})"


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-start-") as tmp:
        first, *restarts = asyncio.run(starts(Path(tmp)))
    imports = asyncio.run(imports_alone())
    print(f"`{' '.join(Path(a).name for a in _posd_command())} run`, from spawn; first start:")
    print(f"  READY=1                              {first.ready_s * 1000:7.0f} ms")
    print(f"  payment possible (ledger up, reader) {first.possible_s * 1000:7.0f} ms")
    print(f"  first payment approved               {first.paid_s * 1000:7.0f} ms")
    print(f"restart after SIGKILL, median of {len(restarts)}:")
    print(f"  READY=1                              {_ms([s.ready_s for s in restarts])}")
    print(f"  payment possible (ledger up, reader) {_ms([s.possible_s for s in restarts])}")
    print(f"  first payment approved               {_ms([s.paid_s for s in restarts])}")
    print(f"of which the interpreter and imports   {_ms(imports)}")
