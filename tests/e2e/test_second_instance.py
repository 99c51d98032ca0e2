"""A second `posd run` on the state dir of a running one: refused (exit 75, naming the PID that
holds the lock) before it opens anything, the first one's payment, journal and socket intact."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import sys
from pathlib import Path

import pytest

from posd.config import load_config
from posd.daemon import LOCK_FILE_NAME
from posd.sim import SimulatedSerialScanner
from tests.helpers.configs import write_config
from tests.helpers.daemon import REPO_ROOT, PosClient, daemon_process

pytestmark = pytest.mark.timeout(60)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def state_digests(state_dir: Path) -> dict[str, str]:
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(state_dir.iterdir())
        if path.is_file()
    }


async def test_second_posd_on_the_same_state_dir_exits_75_and_touches_nothing(
    tmp_path: Path,
) -> None:
    with SimulatedSerialScanner() as scanner:
        config_path = write_config(
            tmp_path,
            # Nothing listens there: the first posd's journal stays still (no sign-on STANs).
            ledger={"port": free_port()},
            qr_scanner={"kind": "serial", "port": scanner.port},
            card_reader={"port": str(tmp_path / "no-reader")},
        )
        config = load_config(config_path)
        async with daemon_process(config_path) as first:
            client = PosClient(config.api.socket)
            try:
                await client.wait_status(
                    lambda s: s["devices"]["qr_scanner"]["state"] == "ready", timeout_s=20
                )
                waiting = await client.create(5_000, "qr")
                before = state_digests(config.storage.state_dir)
                socket_inode = os.lstat(config.api.socket).st_ino
                assert (config.storage.state_dir / LOCK_FILE_NAME).read_text() == f"{first.pid}\n"

                second = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "posd",
                    "run",
                    "-c",
                    str(config_path),
                    cwd=REPO_ROOT,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE,
                )
                _, stderr = await asyncio.wait_for(second.communicate(), 20)
                assert second.returncode == os.EX_TEMPFAIL, stderr
                message = stderr.decode()
                assert f"posd PID {first.pid} already runs on state directory" in message
                assert str(config.storage.state_dir) in message
                assert "Traceback" not in message

                assert state_digests(config.storage.state_dir) == before
                assert os.lstat(config.api.socket).st_ino == socket_inode
                # The first one still has its payment, and still serves it.
                again = await client.payment(waiting["payment_id"])
                assert again["state"] == "waiting_for_card"
                status, body = await client.request(
                    "POST", f"/v1/payments/{waiting['payment_id']}/cancel"
                )
                assert (status, body["state"]) == (200, "cancelled")
            finally:
                await client.session.close()
