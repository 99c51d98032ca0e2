"""The broker's security as configured: TLS with the CA and a client certificate made here,
a username with a password file, and credentials the broker refuses (a clear error in the log
and the state, retried, never a crash)."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.helpers.configs import write_secret
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.tls import make_pki
from tests.posd.monitoring.support import box, monitoring, watching

pytestmark = pytest.mark.timeout(60)


async def test_tls_with_a_client_certificate(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(pki=pki, require_certificate=True)
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(pki.client_cert, pki.client_key)
    tls = {
        "host": "localhost",
        "tls": True,
        "ca_file": str(pki.ca_file),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    async with (
        watching(broker, hostname="localhost", tls_context=context) as ops,
        box(tmp_path, broker, mqtt=tls),
    ):
        state = await ops.state()
        assert state["mqtt"]["link"] == "up"
    assert "New client connected" in broker.log_text()


async def test_username_and_password_file(
    tmp_path: Path, mosquitto_factory: Callable[..., Mosquitto]
) -> None:
    broker = mosquitto_factory(users={"posd-box": "a long broker password", "ops": "ops pw 1"})
    password = write_secret(tmp_path / "mqtt.password", "a long broker password\n")
    credentials = {"username": "posd-box", "password_file": str(password)}
    async with (
        watching(broker, username="ops", password="ops pw 1") as ops,
        box(tmp_path, broker, mqtt=credentials),
    ):
        assert (await ops.state())["mqtt"]["link"] == "up"


async def test_refused_credentials_are_a_clear_error_in_the_state_and_retried(
    tmp_path: Path,
    mosquitto_factory: Callable[..., Mosquitto],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = mosquitto_factory(users={"posd-box": "the password posd has not"})
    password = write_secret(tmp_path / "mqtt.password", "a stale broker password\n")
    credentials = {"username": "posd-box", "password_file": str(password)}
    async with box(tmp_path, broker, mqtt=credentials) as d:
        state = await d.wait_status(lambda s: s["mqtt"]["last_error"] is not None)
        assert state["mqtt"]["link"] == "down"
        error = state["mqtt"]["last_error"]
        assert "refused the credentials" in error and "mqtt.password_file" in error, error
        assert "stale broker password" not in error
        # Retried with backoff, without a crash: the broker sees attempt after attempt ...
        await asyncio.to_thread(broker.wait_for_log, r"disconnected, not authori[sz]ed", count=3)
        assert d.daemon.supervisor.statuses()["monitoring"].state == "running"
        # ... and the fixed broker is reached without anyone restarting posd.
        await asyncio.to_thread(broker.restart, users={"posd-box": "a stale broker password"})
        async with asyncio.timeout(15):
            await monitoring(d).link.wait_up()
        state = await d.wait_status(lambda s: s["mqtt"]["link"] == "up")
    assert any("refused the credentials" in r.getMessage() for r in caplog.records)
    assert "stale broker password" not in caplog.text
