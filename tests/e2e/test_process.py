"""`posd run` as a process of its own: killed mid-payment (kill -9) and started again, and
stopped in order with SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from posd.config import load_config
from posd.sim import (
    GOOD_QR_ACCOUNT,
)
from tests.helpers.configs import MAC_KEY_HEX
from tests.helpers.daemon import PosClient, daemon_process, shop_peers

pytestmark = pytest.mark.timeout(60)


async def wait_serving(client: PosClient) -> None:
    await client.wait_status(
        lambda s: s["ledger"]["link"] == "up" and s["devices"]["qr_scanner"]["state"] == "ready",
        timeout_s=20,
    )


async def test_killed_while_authorizing_is_reversed_after_restart_and_sigterm_stops(
    tmp_path: Path,
) -> None:
    async with shop_peers(tmp_path, ledger={"timeout_s": 30}) as peers:
        ledger, scanner, issuer = peers.ledger, peers.scanner, peers.issuer
        assert scanner is not None
        config_path = peers.config_path
        socket = load_config(config_path).api.socket
        ledger.faults.no_answer = True
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await wait_serving(client)
                created = await client.create(4_000, "qr")
                token = issuer.valid(GOOD_QR_ACCOUNT)
                await scanner.scan(token)
                await client.wait_state(created["payment_id"], {"authorizing"})
                await ledger.wait_seen(lambda s: s.mti == "0200")
            finally:
                await client.session.close()
            process.kill()  # a crash: no sign-off, no chance to tidy up
            await process.wait()
        ledger.faults.no_answer = False
        socket.unlink(missing_ok=True)
        async with daemon_process(config_path) as process:
            client = PosClient(socket)
            try:
                await wait_serving(client)
                done = await client.wait_state(created["payment_id"], {"reversed"})
                assert done["decline_reason"] == "interrupted"
                assert [s.mti for s in ledger.seen].count("0200") == 1
                assert any(s.mti == "0400" for s in ledger.seen)
            finally:
                await client.session.close()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(15):
                assert await process.wait() == 0
            await ledger.wait_seen(lambda s: s.network_code == "002")  # signed off
    # The daemon's own log lines, as journald would get them.
    logged = (tmp_path / "posd-process.log").read_bytes()
    assert b"reversal" in logged
    for secret in (GOOD_QR_ACCOUNT.encode(), token.encode(), MAC_KEY_HEX.encode()):
        assert secret not in logged
