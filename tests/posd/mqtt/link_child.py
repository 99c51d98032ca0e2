"""A small program on MqttLink, run as a subprocess by the restart and crash-before-ack tests.

    python -m tests.posd.mqtt.link_child PORT CLIENT_ID TOPIC PROTOCOL MODE [WILL_TOPIC]

A persistent session with manual ack on 127.0.0.1:PORT, subscribed to TOPIC at QoS 1. MODE
"ack": the handler returns at once, so the link acks; "hold": the handler never returns, so
nothing is acked. WILL_TOPIC: a will "gone" (retained) there. One line per event on stdout:
"up CONNECTS present|new", "received PAYLOAD". SIGTERM stops the link in order (a clean
DISCONNECT) and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from posd.mqtt import Connection, InboundMessage, LinkSettings, MqttLink, Subscription, Will


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(
    port: int, client_id: str, topic: str, protocol: str, mode: str, will: str | None
) -> None:
    settings = LinkSettings(
        name="child",
        host="127.0.0.1",
        port=port,
        client_id=client_id,
        protocol="5" if protocol == "5" else "3.1.1",
        persistent_session=True,
        session_expiry_s=3600 if protocol == "5" else 0,
        manual_ack=True,
        will=Will(will, b"gone") if will else None,
        backoff_initial_s=0.05,
        backoff_max_s=0.2,
    )
    forever = asyncio.Event()

    async def handler(message: InboundMessage) -> None:
        say(f"received {message.payload.decode()}")
        if mode == "hold":
            await forever.wait()

    async def on_connect(connection: Connection) -> None:
        say(f"up {connection.connects} {'present' if connection.session_present else 'new'}")

    link = MqttLink(
        settings, subscriptions=[Subscription(topic)], handler=handler, on_connect=on_connect
    )
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, link.stop)
    await link.run()


if __name__ == "__main__":
    port, client_id, topic, protocol, mode = sys.argv[1:6]
    will = sys.argv[6] if len(sys.argv) > 6 else None
    asyncio.run(main(int(port), client_id, topic, protocol, mode, will))
