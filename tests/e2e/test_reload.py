"""SIGHUP's reload on the whole daemon: it takes effect with payments working, or it is refused
and the running configuration keeps serving; never a half-built daemon."""

from __future__ import annotations

import socket
import tomllib
from pathlib import Path

import pytest

from posd.sim import GOOD_QR_ACCOUNT
from tests.helpers.configs import to_toml
from tests.helpers.daemon import PosClient, RunningDaemon, running_daemon

pytestmark = pytest.mark.timeout(60)


def edit_config(d: RunningDaemon, section: str, **values: object) -> None:
    data = tomllib.loads(d.config_path.read_text())
    data[section].update(values)
    d.config_path.write_text(to_toml(data))


async def pay_qr(d: RunningDaemon, client: PosClient | None = None) -> dict[str, object]:
    client = client or d
    created = await client.create(2_000, "qr")
    await d.scanner.scan(d.issuer.valid(GOOD_QR_ACCOUNT))
    return await client.wait_final(str(created["payment_id"]))


@pytest.mark.parametrize(
    ("section", "values"),
    [
        ("offline", {"max_payment": 40_000}),
        ("terminal", {"benefit_plus_rate_bps": 300}),
        ("ledger", {"timeout_s": 3}),
    ],
)
async def test_reload_of_a_payment_section_keeps_taking_payments(
    tmp_path: Path, section: str, values: dict[str, object]
) -> None:
    async with running_daemon(tmp_path) as d:
        assert (await pay_qr(d))["state"] == "approved"
        edit_config(d, section, **values)
        assert await d.daemon.reload()
        running = getattr(d.daemon.runtime.config, section)
        assert {key: getattr(running, key) for key in values} == values
        await d.wait_status(lambda s: s["ledger"]["link"] == "up")
        done = await pay_qr(d)
        assert done["state"] == "approved", done
        # Twice: the second reload rewires to the same journal as the first did.
        edit_config(d, "offline", max_count=20)
        assert await d.daemon.reload()
        await d.wait_status(lambda s: s["ledger"]["link"] == "up")
        assert (await pay_qr(d))["state"] == "approved"


async def test_reload_whose_new_api_cannot_listen_is_undone_and_payments_go_on(
    tmp_path: Path,
) -> None:
    taken = tmp_path / "taken.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        # Another program serves there: posd must refuse to steal it.
        other.bind(str(taken))
        other.listen()
        async with running_daemon(tmp_path) as d:
            before = d.daemon.runtime.config
            edit_config(d, "api", socket=str(taken))
            assert not await d.daemon.reload()
            assert d.daemon.runtime.config is before
            assert d.daemon.cannot_serve() is None
            # The undo starts the running configuration's devices again; on a loaded machine
            # the scanner takes a moment to report ready, and a payment asked before is 503.
            await d.wait_status(lambda s: s["devices"]["qr_scanner"]["state"] == "ready")
            done = await pay_qr(d)
            assert done["state"] == "approved", done
            assert d.daemon.supervisor.statuses()["api"].state == "running"
