"""TLS with client certificates and username/password, against a real Mosquitto."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from posd.mqtt import InboundMessage, LinkState, MqttLink, Subscription
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.tls import make_pki
from tests.posd.mqtt.peer import fast_settings, running


async def _failures(link: MqttLink, count: int, timeout_s: float = 20.0) -> list[LinkState]:
    """Run until `count` failed attempts have been seen (each sets last_error)."""
    seen: list[LinkState] = []
    enough = asyncio.Event()

    def listener(state: LinkState) -> None:
        if state.status == "down" and state.last_error is not None:
            seen.append(state)
            if len(seen) >= count:
                enough.set()

    remove = link.add_listener(listener)
    try:
        async with asyncio.timeout(timeout_s):
            await enough.wait()
    finally:
        remove()
    return seen


async def test_tls_with_a_client_certificate(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(pki=pki, require_certificate=True)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(message: InboundMessage) -> None:
        got.put_nowait(message.payload)

    settings = fast_settings(
        broker,
        host="localhost",
        tls=True,
        ca_file=pki.ca_file,
        cert_file=pki.client_cert,
        key_file=pki.client_key,
    )
    link = MqttLink(settings, subscriptions=[Subscription("t/secure")], handler=handler)
    async with running(link):
        link.publish("t/secure", b"over TLS")
        async with asyncio.timeout(10):
            assert await got.get() == b"over TLS"
    assert f"as {settings.client_id} (" in broker.log_text()


async def test_tls_without_the_client_certificate_the_broker_wants_is_a_clear_error(
    mosquitto_factory: Callable[..., Mosquitto],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(pki=pki, require_certificate=True)
    settings = fast_settings(broker, tls=True, ca_file=pki.ca_file, timeout_s=3.0)
    link = MqttLink(settings)
    async with running(link, wait_up=False):
        states = await _failures(link, 10)
    # The broker's alert closes the socket while aiomqtt is still registering it with the loop:
    # without posd.mqtt.reach's guard, asyncio logs an EBADF traceback on many attempts.
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text
    assert all(s.connects == 0 for s in states)
    error = states[-1].last_error
    assert error is not None and "TLS" in error and "certificate" in error, error


async def test_a_broker_certificate_from_another_ca_is_not_trusted(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = mosquitto_factory(pki=make_pki(tmp_path / "pki"))
    rogue = make_pki(tmp_path / "rogue", "rogue CA")
    link = MqttLink(fast_settings(broker, tls=True, ca_file=rogue.ca_file))
    async with running(link, wait_up=False):
        states = await _failures(link, 2)
    error = states[-1].last_error
    assert error is not None and "not trusted" in error and "ca_file" in error, error


async def test_missing_tls_files_are_an_error_in_the_state_and_retried(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    link = MqttLink(fast_settings(mosquitto, tls=True, ca_file=tmp_path / "absent.pem"))
    async with running(link, wait_up=False):
        states = await _failures(link, 3)
    error = states[-1].last_error
    assert error is not None and "cannot load the TLS files" in error and "absent.pem" in error


async def test_username_and_password(mosquitto_factory: Callable[..., Mosquitto]) -> None:
    broker = mosquitto_factory(users={"posd": "s3cret-pw"})
    link = MqttLink(fast_settings(broker, username="posd", password="s3cret-pw"))
    async with running(link):
        assert link.state.status == "up"
    assert "s3cret-pw" not in repr(link.settings)


async def test_refused_credentials_are_an_error_retried_with_backoff_and_logged_once(
    mosquitto_factory: Callable[..., Mosquitto], caplog: pytest.LogCaptureFixture
) -> None:
    broker = mosquitto_factory(users={"posd": "right-password"})
    link = MqttLink(fast_settings(broker, username="posd", password="wrong-password"))
    caplog.set_level(logging.INFO, logger="posd.mqtt")
    async with running(link, wait_up=False):
        states = await _failures(link, 5)
        error = states[-1].last_error
        assert error is not None and "refused the credentials" in error, error
        assert "mqtt.password_file" in error and "wrong-password" not in error
        # Fixing the broker's side: the same link gets in, no restart of posd.
        await asyncio.to_thread(broker.restart, users={"posd": "wrong-password"})
        async with asyncio.timeout(15):
            await link.wait_up()
    lines = [r.getMessage() for r in caplog.records if r.name == "posd.mqtt"]
    failures = [line for line in lines if "cannot connect" in line]
    assert len(failures) == 1, lines  # five failures, one line: the next would be a minute on
    assert any("connected to" in line and "after" in line for line in lines), lines


async def test_credentials_refused_on_a_reconnect_are_seen_as_refused(
    mosquitto_factory: Callable[..., Mosquitto],
) -> None:
    broker = mosquitto_factory(users={"posd": "old-password"})
    link = MqttLink(fast_settings(broker, username="posd", password="old-password"))
    async with running(link):
        await asyncio.to_thread(broker.restart, users={"posd": "new-password"})
        states = await _failures(link, 2)
    # aiomqtt's re-entered Client would return before CONNACK (posd.mqtt.reach): the refusal
    # must still read as a refusal, not as a timeout or a lost connection.
    error = states[-1].last_error
    assert error is not None and "refused the credentials" in error, error
    assert states[-1].connects == 1
