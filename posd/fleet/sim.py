"""`posd fleet sim N`: N simulated POS boxes in one asyncio process, each a real MQTT client.

    posd fleet sim N --broker HOST[:PORT] [--seed S] [--state-interval-s 60]
        [--operator-pub F] [--base-topic posd] [--first 1]

Terminal ids are `S0000001`… (`--first K` starts at SK, an extension of fleet-console.md so
that several processes make one fleet: the benchmark kills one of them whole). Each box is a
`simbox.SimBox` on its own `simnet.BoxConnection`: client id `posd-{terminal_id}`, the will
`offline` retained, `online` and the state retained on every connect, the state every interval
and on change, events, signed commands answered; the seeded schedule makes some go offline,
restart, hang, go deaf or miss orders. SIGINT or SIGTERM stops every box as posd stops
(`offline`, then DISCONNECT); SIGKILL leaves the broker to fire the wills.

`SimFleet` is the same fleet for tests and the benchmark, in their own loop: `drop`, `freeze`,
`connect` and `act` drive one box by hand.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import os
import random
import resource
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Final

from posd.config import ed25519_public_key
from posd.fleet.cli import EX_CONFIG, EX_UNAVAILABLE, EX_USAGE, base_topic, broker_address
from posd.fleet.simbox import Message, SimBox
from posd.fleet.simnet import BoxConnection, ConnectFailed, Network

MAX_BOXES: Final = 100_000
CONNECTS_AT_ONCE: Final = 64
STATE_MIN_INTERVAL_S: Final = 1.0  # mqtt.md: the state on every change, at most once a second
BACKOFF_MAX_S: Final = 60.0
FDS_SPARE: Final = 64

Action = Callable[[SimBox, float], list[Message]]


def terminal_id(n: int) -> str:
    return f"S{n:07d}"


class SimFleet:
    """Boxes `first`…`first + count - 1`, connected on entering, stopped as posd stops on
    leaving. `schedule=False` leaves the boxes alone but for their periodic state."""

    def __init__(
        self,
        host: str,
        port: int,
        count: int,
        *,
        first: int = 1,
        seed: int = 0,
        base_topic: str = "posd",
        state_interval_s: float = 60.0,
        operator_keys: Sequence[bytes] = (),
        keepalive_s: int = 60,
        schedule: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host, self.port = host, port
        self.interval_s = state_interval_s
        self.keepalive_s = keepalive_s
        self.schedule = schedule
        self.clock = clock
        now = clock()
        self.boxes: dict[str, SimBox] = {}
        for n in range(first, first + count):
            tid = terminal_id(n)
            self.boxes[tid] = SimBox(
                tid, seed=seed, base_topic=base_topic, operator_keys=operator_keys, now=now
            )
        self.connections: dict[str, BoxConnection] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._state_due: dict[str, asyncio.TimerHandle] = {}
        self._last_state: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._net: Network | None = None
        self._other_nets: dict[tuple[str, int], Network] = {}
        self._day = datetime.date.fromtimestamp(now)
        self._rng = random.Random(seed)
        self._stopping = False

    # -- life --------------------------------------------------------------------------------

    async def __aenter__(self) -> SimFleet:
        self._net = Network(self.host, self.port, keepalive_s=self.keepalive_s)
        self._net.start()
        try:
            await self.connect_all()
        except BaseException:
            await self._net.aclose()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stopping = True
        for handle in [*self._timers.values(), *self._state_due.values()]:
            handle.cancel()
        connections = list(self.connections.items())
        self.connections.clear()
        await asyncio.gather(
            *(conn.close(self.boxes[tid].stopping()) for tid, conn in connections),
            return_exceptions=True,
        )
        assert self._net is not None
        for net in [self._net, *self._other_nets.values()]:
            await net.aclose()

    async def connect_all(self) -> None:
        """Connect every box not connected, CONNECTS_AT_ONCE at a time; ConnectFailed if one
        cannot (the broker is not there)."""
        gate = asyncio.Semaphore(CONNECTS_AT_ONCE)

        async def one(tid: str) -> None:
            async with gate:
                await self.connect(tid)

        async with asyncio.TaskGroup() as tasks:
            for tid in self.boxes:
                if tid not in self.connections:
                    tasks.create_task(one(tid))

    @property
    def network(self) -> Network:
        if self._net is None:
            raise RuntimeError("the fleet is not started: use `async with SimFleet(...)`")
        return self._net

    # -- one box by hand ---------------------------------------------------------------------

    async def connect(self, tid: str, *, host: str | None = None, port: int | None = None) -> None:
        """A new connection of the box (mqtt.md: `online` and the state, connects + 1), to the
        fleet's broker or another (a box that moved to a second broker of a cluster)."""
        box = self.boxes[tid]
        net = self.network
        address = (host or self.host, port or self.port)
        if address != (self.host, self.port):
            if address not in self._other_nets:
                self._other_nets[address] = Network(*address, keepalive_s=self.keepalive_s)
                self._other_nets[address].start()
            net = self._other_nets[address]
        connection = BoxConnection(
            net,
            box.client_id,
            box.will,
            lambda topic, payload: self._request(tid, topic, payload),
            lambda: self._lost(tid, connection),
        )
        await connection.open(box.request_filter)
        old = self.connections.pop(tid, None)
        self.connections[tid] = connection
        if old is not None:
            old.drop()
        self._failures.pop(tid, None)
        now = self.clock()
        for message in box.connected(now):
            connection.publish(message)
        self._last_state[tid] = now
        self._arm(tid, self._rng.uniform(0, self.interval_s) if tid not in self._timers else None)

    def drop(self, tid: str) -> None:
        """The box's socket dies with no DISCONNECT (its process killed): the will fires. The
        box stays away until `connect`."""
        connection = self.connections.pop(tid, None)
        if connection is not None:
            connection.drop()

    def freeze(self, tid: str) -> BoxConnection | None:
        """The box's connection goes silent but stays open; the broker fires the will after
        1.5 keepalives. Returns it (a test drops it later). The box stays away until
        `connect`."""
        connection = self.connections.pop(tid, None)
        if connection is not None:
            connection.freeze()
        return connection

    def act(self, tid: str, action: Action) -> None:
        """Something happens at the box (`lambda box, now: box.go_deaf(...)`): its messages
        go out, then its state."""
        box = self.boxes[tid]
        now = self.clock()
        self.publish(tid, action(box, now))
        self._state_changed(tid)

    def publish(self, tid: str, messages: Sequence[Message]) -> None:
        connection = self.connections.get(tid)
        if connection is not None and not self.boxes[tid].hung:
            for message in messages:
                connection.publish(message)

    # -- the schedule ------------------------------------------------------------------------

    def _arm(self, tid: str, delay: float | None) -> None:
        if tid in self._timers and delay is None:
            return
        if tid in self._timers:
            self._timers[tid].cancel()
        self._timers[tid] = self.network.loop.call_later(
            self.interval_s if delay is None else delay, self._step, tid
        )

    def _step(self, tid: str) -> None:
        del self._timers[tid]
        if self._stopping:
            return
        box = self.boxes[tid]
        now = self.clock()
        today = datetime.date.fromtimestamp(now)
        if today != self._day:
            self._day = today
            for each in self.boxes.values():
                each.new_day()
        connected = tid in self.connections
        self._arm(tid, self.interval_s)
        if not connected:
            return
        messages, outcome = box.step(now) if self.schedule else ([], None)
        if outcome == "resume":
            box.hung = False
        self.publish(tid, messages)
        if outcome == "hang":
            box.hung = True
        elif outcome in ("offline", "restart"):
            self.drop(tid)
            if outcome == "restart":
                box.restart(now)
            away = self.interval_s * box.rng.randint(1, 4)
            self.network.loop.call_later(away, self._reconnect, tid)
            return
        self._publish_state(tid)

    def _state_changed(self, tid: str) -> None:
        if tid in self._state_due:
            return
        wait = self._last_state.get(tid, 0.0) + STATE_MIN_INTERVAL_S - self.clock()
        if wait <= 0:
            self._publish_state(tid)
        else:
            self._state_due[tid] = self.network.loop.call_later(wait, self._publish_state, tid)

    def _publish_state(self, tid: str) -> None:
        self._state_due.pop(tid, None)
        now = self.clock()
        self._last_state[tid] = now
        self.publish(tid, [self.boxes[tid].state(now)])

    def _reconnect(self, tid: str) -> None:
        if self._stopping or tid in self.connections:
            return
        task = asyncio.ensure_future(self._try_connect(tid))
        task.add_done_callback(lambda done: done.cancelled() or done.exception())

    async def _try_connect(self, tid: str) -> None:
        try:
            await self.connect(tid)
        except ConnectFailed:
            failures = self._failures[tid] = self._failures.get(tid, 0) + 1
            delay = self._rng.uniform(0, min(BACKOFF_MAX_S, 2.0 ** (failures - 1)))
            self.network.loop.call_later(max(delay, 0.1), self._reconnect, tid)

    def _lost(self, tid: str, connection: BoxConnection) -> None:
        """The broker or the network ended a connection: posd reconnects with backoff."""
        if self.connections.get(tid) is connection:
            del self.connections[tid]
            self.network.loop.call_later(self._rng.uniform(0.1, 1.0), self._reconnect, tid)

    def _request(self, tid: str, topic: str, payload: bytes) -> None:
        command = topic.rsplit("/", 1)[-1]
        self.publish(tid, self.boxes[tid].command(command, payload, self.clock()))
        self._state_changed(tid)


# -- the command line ------------------------------------------------------------------------


def box_count(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_BOXES:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number of boxes, 1 to {MAX_BOXES}")
    return int(text)


def interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0.5 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"{text!r}: expected seconds, 0.5 to 3600")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("count", type=box_count, metavar="N", help="how many boxes")
    parser.add_argument(
        "--broker", required=True, type=broker_address, metavar="HOST[:PORT]",
        help="the broker the boxes connect to (port 1883)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the schedule's seed (default 0)")
    parser.add_argument(
        "--state-interval-s", type=interval, default=60.0, metavar="S",
        help="seconds between a box's states (default 60, as posd)",
    )  # fmt: skip
    parser.add_argument(
        "--operator-pub", type=Path, metavar="F",
        help="operator public keys the boxes accept commands from (base64 of the raw 32 "
        "bytes, one a line, as posd's mqtt.operator_keys); without, every command is refused",
    )  # fmt: skip
    parser.add_argument("--base-topic", type=base_topic, default="posd", help="mqtt.base_topic")
    parser.add_argument(
        "--first", type=box_count, default=1, metavar="K",
        help="the first box is SK (default 1): several processes make one fleet",
    )  # fmt: skip


def read_operator_keys(path: Path) -> list[bytes]:
    """Raw Ed25519 public keys, one base64 line each; blank lines and `#` comments skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--operator-pub {path}: cannot be read ({exc})") from None
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            keys.append(ed25519_public_key(line))
        except ValueError as exc:
            raise ValueError(f"--operator-pub {path}:{number}: {exc}") from None
    if not keys:
        raise ValueError(f"--operator-pub {path}: holds no key")
    return keys


def _open_files(count: int) -> str | None:
    """Raise the soft open-files limit to what N sockets need; the problem if it cannot."""
    need = count + FDS_SPARE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= need:
        return None
    if hard != resource.RLIM_INFINITY and hard < need:
        return (
            f"{count} boxes need {need} open files and the hard limit is {hard}: "
            f"raise it (ulimit -Hn, LimitNOFILE=) or run fewer boxes per process (--first)"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    return None


def run(args: argparse.Namespace) -> int:
    """`posd fleet sim` with parsed arguments; runs until SIGINT or SIGTERM."""
    try:
        keys = read_operator_keys(args.operator_pub) if args.operator_pub is not None else []
    except ValueError as exc:
        print(f"posd fleet sim: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.first + args.count - 1 > 9_999_999:
        print("posd fleet sim: terminal ids end at S9999999", file=sys.stderr)
        return EX_USAGE
    problem = _open_files(args.count)
    if problem is not None:
        print(f"posd fleet sim: {problem}", file=sys.stderr)
        return EX_UNAVAILABLE
    host, port = args.broker
    fleet = SimFleet(
        host,
        port or 1883,
        args.count,
        first=args.first,
        seed=args.seed,
        base_topic=args.base_topic,
        state_interval_s=args.state_interval_s,
        operator_keys=keys,
    )
    try:
        asyncio.run(_until_signalled(fleet))
    except ConnectFailed as exc:
        print(f"posd fleet sim: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    return 0


async def _until_signalled(fleet: SimFleet) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    try:
        async with fleet:
            ids = list(fleet.boxes)
            print(
                f"posd fleet sim: {len(ids)} boxes {ids[0]}…{ids[-1]} connected to "
                f"{fleet.host}:{fleet.port} in {time.monotonic() - started:.1f} s "
                f"(pid {os.getpid()})",
                flush=True,
            )
            await stop.wait()
    except* ConnectFailed as group:
        raise group.exceptions[0] from None
    finally:
        with contextlib.suppress(ValueError):
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
