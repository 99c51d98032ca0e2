"""LinkSettings' checks, the two links built from posd's config, and the link's pure parts."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import aiomqtt
import pytest

from posd.config import load_config, read_mqtt_password
from posd.mqtt import (
    ORDERS_SESSION_EXPIRY_S,
    Backoff,
    InboundMessage,
    LinkSettings,
    LinkState,
    MqttLink,
    Subscription,
    Throttle,
    Will,
    describe,
    monitoring_link_settings,
    orders_link_settings,
)
from tests.helpers.configs import MERCHANT_ID, TERMINAL_ID, write_config, write_secret
from tests.helpers.mosquitto import Mosquitto
from tests.helpers.tls import make_pki
from tests.posd.mqtt.peer import running

BASE = LinkSettings(name="t", host="broker", port=1883, client_id="posd-T1")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": ""}, "name"),
        ({"host": ""}, "host"),
        ({"port": 0}, "port"),
        ({"port": 65536}, "port"),
        ({"client_id": ""}, "client id"),
        ({"protocol": "3.1"}, "protocol"),
        ({"tls": True, "cert_file": Path("c.pem")}, "go together"),
        ({"ca_file": Path("ca.pem")}, "tls off"),
        ({"password": "pw"}, "needs a username"),
        ({"protocol": "5", "persistent_session": True}, "session_expiry_s > 0"),
        ({"session_expiry_s": 60}, "persistent MQTT 5 session only"),
        ({"persistent_session": True, "session_expiry_s": 60}, "persistent MQTT 5 session only"),
        ({"keepalive_s": 70000}, "keepalive"),
        ({"outbox_size": 0}, "outbox_size"),
        ({"backoff_initial_s": 2.0, "backoff_max_s": 1.0}, "backoff"),
        ({"timeout_s": 0}, "timeout_s"),
    ],
)
def test_settings_refuse_what_cannot_work(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(BASE, **changes)  # type: ignore[arg-type]


def test_the_password_never_shows_in_the_settings_repr() -> None:
    settings = replace(BASE, username="posd", password="hunter2-secret")
    assert "hunter2-secret" not in repr(settings)


@pytest.mark.parametrize("topic", ["", "a/+/b", "a/#", "a\x00b"])
def test_a_will_needs_a_topic_one_can_publish_to(topic: str) -> None:
    with pytest.raises(ValueError):
        Will(topic, b"offline")


@pytest.mark.parametrize("topic_filter", ["", "a/#/b", "a/b#", "a+/b", "x\x00"])
def test_a_subscription_needs_a_valid_filter(topic_filter: str) -> None:
    with pytest.raises(ValueError):
        Subscription(topic_filter)


def test_subscriptions_at_qos_2_are_not_offered() -> None:
    with pytest.raises(ValueError, match="qos"):
        Subscription("a/b", qos=2)


def test_publish_checks_its_arguments_before_queueing() -> None:
    link = MqttLink(BASE)
    for topic, kwargs in [
        ("a/+", {}),
        ("a", {"qos": 2}),
        ("a", {"expiry_s": 0}),
    ]:
        with pytest.raises(ValueError):
            link.publish(topic, b"x", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="larger"):
        link.publish("a", b"x" * ((1 << 20) + 1))
    assert link.state.queued == 0


def test_the_two_links_from_posd_config(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        mqtt={
            "enabled": True,
            "host": "mq.example",
            "port": 8883,
            "username": "posd",
            "protocol": "5",
        },
        orders={"enabled": True, "host": "orders.example", "port": 1884, "protocol": "3.1.1"},
    )
    config = load_config(path)
    orders = orders_link_settings(config, "pw")
    assert (orders.name, orders.host, orders.port) == ("orders", "orders.example", 1884)
    assert orders.client_id == f"posd-{TERMINAL_ID}-orders"
    assert orders.persistent_session and orders.manual_ack
    assert (orders.protocol, orders.session_expiry_s) == ("3.1.1", 0)
    assert (orders.username, orders.password) == ("posd", "pw")
    orders5 = orders_link_settings(config, None, protocol="5")
    assert orders5.session_expiry_s == ORDERS_SESSION_EXPIRY_S >= 24 * 3600

    monitoring = monitoring_link_settings(config, "pw")
    assert monitoring.protocol == "5"  # mqtt.protocol; orders.protocol is the orders link's
    assert (monitoring.host, monitoring.port) == ("mq.example", 8883)
    assert monitoring.client_id == f"posd-{TERMINAL_ID}"
    assert not monitoring.persistent_session and not monitoring.manual_ack
    assert monitoring.will == Will(f"posd/{TERMINAL_ID}/availability", b"offline", 1, True)


async def test_the_orders_link_from_the_config_connects_with_tls_certificate_and_password(
    mosquitto_factory: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    pki = make_pki(tmp_path / "pki")
    broker = mosquitto_factory(pki=pki, require_certificate=True, users={"posd": "pw-orders"})
    path = write_config(
        tmp_path,
        mqtt={
            "enabled": True,
            "host": "localhost",
            "port": broker.port,
            "tls": True,
            "ca_file": str(pki.ca_file),
            "cert_file": str(pki.client_cert),
            "key_file": str(pki.client_key),
            "username": "posd",
            "password_file": str(write_secret(tmp_path / "mqtt.pw", "pw-orders\n")),
        },
        orders={"enabled": True},
    )
    config = load_config(path)
    settings = replace(orders_link_settings(config, read_mqtt_password(config)), timeout_s=5.0)
    got: asyncio.Queue[bytes] = asyncio.Queue()

    async def handler(message: InboundMessage) -> None:
        got.put_nowait(message.payload)

    link = MqttLink(settings, subscriptions=[Subscription(config.orders_topic)], handler=handler)
    async with running(link):
        assert config.orders_topic == f"baedal/{MERCHANT_ID}/orders"
        link.publish(config.orders_topic, b"order over TLS")
        async with asyncio.timeout(10):
            assert await got.get() == b"order over TLS"


def test_backoff_doubles_to_its_cap_and_jitters_over_the_whole_interval() -> None:
    calls: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        calls.append((low, high))
        return high

    backoff = Backoff(1.0, 60.0, uniform)
    assert [backoff.delay(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert all(low == 0.0 for low, _ in calls)
    assert backoff.ceiling(10_000) == 60.0
    assert 0.0 <= Backoff(1.0, 60.0).delay(3) <= 4.0


def test_throttle_allows_one_line_per_interval_and_counts_the_rest() -> None:
    throttle = Throttle(60.0)
    assert throttle.allow(0.0) == (True, 0)
    assert [throttle.allow(t) for t in (1.0, 30.0, 59.0)] == [(False, 0)] * 3
    assert throttle.allow(60.0) == (True, 3)
    assert throttle.allow(61.0) == (False, 0)
    throttle.reset()
    assert throttle.allow(62.0) == (True, 0)


def test_describe_names_the_setting_to_check() -> None:
    address = "broker:1883"
    refused = aiomqtt.MqttError("Connection refused")
    refused.__context__ = ConnectionRefusedError(111, "Connection refused")
    assert "no broker listening" in describe(refused, address)
    untrusted = ssl.SSLCertVerificationError(1, "certificate verify failed")
    untrusted.verify_message = "unable to get local issuer certificate"
    assert "mqtt.ca_file" in describe(untrusted, address)
    assert "in time" in describe(aiomqtt.MqttError("Operation timed out"), address)
    assert "in time" in describe(TimeoutError(), address)


def test_a_disabled_link_reports_so() -> None:
    state = LinkState.disabled("orders", 1_800_000_000.0, 5.0)
    assert state.status == "disabled"
    assert state.seconds_in_status(65.0) == 60.0
    assert state.to_json() == {
        "status": "disabled",
        "since": "2027-01-15T08:00:00Z",
        "connects": 0,
        "last_error": None,
        "session_present": None,
        "queued": 0,
        "dropped": 0,
        "unconfirmed": 0,
    }


async def test_the_link_does_not_block_a_publish_before_it_ever_ran() -> None:
    link = MqttLink(BASE)
    link.publish("box/event", "queued before run()")
    assert link.state.queued == 1
    assert link.state.status == "down"


def test_the_orders_link_takes_mqtt_protocol_unless_orders_protocol_says_otherwise(
    tmp_path: Path,
) -> None:
    default = load_config(write_config(tmp_path, orders={"enabled": True}))
    assert (default.mqtt.protocol, default.orders.protocol) == ("5", None)
    assert orders_link_settings(default, None).protocol == "5"
    older = load_config(
        write_config(tmp_path, mqtt={"protocol": "3.1.1"}, orders={"enabled": True})
    )
    assert orders_link_settings(older, None).protocol == "3.1.1"
    assert monitoring_link_settings(older, None).protocol == "3.1.1"
    # An orders broker of its own may speak another version; monitoring keeps mqtt's.
    mixed = load_config(
        write_config(
            tmp_path,
            mqtt={"protocol": "3.1.1"},
            orders={"enabled": True, "host": "orders.example", "protocol": "5"},
        )
    )
    assert orders_link_settings(mixed, None).protocol == "5"
    assert monitoring_link_settings(mixed, None).protocol == "3.1.1"
