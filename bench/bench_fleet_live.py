"""The console against a simulated fleet on a real Mosquitto, end to end (issue 13's figures).

For 2,000 and 10,000 boxes: the broker is started with the settings a fleet of that size needs
(README, "Broker settings"), the fleet is `posd fleet sim` in two processes (the last 1,000
boxes in their own, to be SIGKILLed whole), then `posd fleet serve` is started and timed:

- start → every box shown: from starting the console's process to `GET /api/boxes` listing
  every box with its state (the retained snapshot), the process's own start included;
- SIGKILL of 1,000 boxes → shown offline: their sockets die with the process, the broker fires
  the wills, and the console's event stream (what the page reads) says each box is offline;
  p50/p95/max of the per-box delay;
- the console's RSS and CPU at steady state (the fleet publishing a state every 60 s and its
  events), Mosquitto's RSS, and the simulator's memory per box.

Goals (issue 13): 10,000 boxes shown in under 10 s, kills shown within 2 s, console < 200 MB.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

FLEETS = (2_000, 10_000)
KILLED = 1_000
STEADY_S = 20.0
TIMEOUT_S = 120.0
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


def broker_config(port: int, directory: Path) -> str:
    """The broker settings the README gives for a fleet of this size."""
    return "\n".join(
        [
            f"listener {port} 127.0.0.1",
            "allow_anonymous true",
            # The console's snapshot is one burst of every retained message: let the broker
            # queue all of it for a subscriber (the default 1000 drops most of it silently).
            "max_queued_messages 100000",
            "max_inflight_messages 100",
            "persistence true",
            f"persistence_location {directory}/",
            "autosave_interval 300",
            "autosave_on_changes false",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            # As root it would switch to the user "mosquitto", who cannot write the temp dir.
            *(["user root"] if os.geteuid() == 0 else []),
            "",
        ]
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_SIZE / 2**20


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def open_files(need: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))


@contextlib.contextmanager
def started(
    argv: list[str], *, files: int = 0, **kwargs: object
) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        argv,
        text=True,
        preexec_fn=(lambda: open_files(files)) if files else None,
        **kwargs,  # type: ignore[call-overload]
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def posd(*args: str) -> list[str]:
    return [sys.executable, "-m", "posd", "fleet", *args]


def wait_line(child: subprocess.Popen[str], what: str) -> str:
    assert child.stdout is not None
    line = child.stdout.readline()
    if what not in line:
        raise RuntimeError(f"expected {what!r}, got {line!r}")
    return line


async def all_shown(url: str, count: int, deadline: float) -> None:
    async with aiohttp.ClientSession(base_url=url) as http:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get("/api/summary") as response:
                    summary = await response.json()
                if summary["boxes"] == count:
                    async with http.get("/api/boxes") as response:
                        rows = await response.json()
                    if sum(1 for row in rows if row["last_state_ts"] is not None) == count:
                        return
            await asyncio.sleep(0.02)  # polling the API as a page would, not synchronising
    raise RuntimeError("the console never showed every box")


async def kill_and_watch(url: str, victim: subprocess.Popen[str], killed: set[str]) -> list[float]:
    """SIGKILL the victim; each killed box's delay until the event stream shows it offline."""
    delays: dict[str, float] = {}
    async with (
        aiohttp.ClientSession(base_url=url, timeout=aiohttp.ClientTimeout(total=None)) as http,
        http.get("/api/events") as stream,
    ):
        await stream.content.readline()  # ": connected": the watcher is in place
        # Boxes of the seeded schedule that are away already have no will left to fire.
        async with http.get("/api/boxes", params={"status": "offline"}) as response:
            killed -= {row["terminal_id"] for row in await response.json()}
        killed_at = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        try:
            async with asyncio.timeout(TIMEOUT_S):
                await _offline(stream, killed, delays, killed_at)
        except TimeoutError:
            raise RuntimeError(f"{len(delays)} of {len(killed)} shown offline") from None
    victim.wait(10)
    return sorted(delays.values())


async def _offline(
    stream: aiohttp.ClientResponse, killed: set[str], delays: dict[str, float], killed_at: float
) -> None:
    event = None
    while len(delays) < len(killed):
        raw = (await stream.content.readline()).decode()
        if raw.startswith("event: "):
            event = raw[7:].strip()
        elif raw.startswith("data: ") and event == "box":
            row = json.loads(raw[6:])
            tid = row["terminal_id"]
            if row["status"] == "offline" and tid in killed and tid not in delays:
                delays[tid] = time.monotonic() - killed_at


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def one_fleet(count: int, root: Path) -> None:
    port = free_port()
    directory = root / f"fleet-{count}"
    directory.mkdir()
    config = directory / "mosquitto.conf"
    config.write_text(broker_config(port, directory))
    broker_argv = [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-c", str(config)]
    base = count - KILLED
    broker = f"127.0.0.1:{port}"
    with (
        started(broker_argv, files=count + 2_000, stderr=subprocess.DEVNULL) as mosquitto,
    ):
        listening(port)
        with (
            started(posd("sim", str(base), "--broker", broker, "--seed", "1"),
                    files=base + 200, stdout=subprocess.PIPE) as sim_a,
            started(posd("sim", str(KILLED), "--first", str(base + 1), "--broker", broker,
                         "--seed", "1"), files=KILLED + 200, stdout=subprocess.PIPE) as sim_b,
            # One box under another base topic: the interpreter and the code, for the baseline.
            started(posd("sim", "1", "--broker", broker, "--base-topic", "baseline"),
                    stdout=subprocess.PIPE) as sim_one,
        ):  # fmt: skip
            line_a = wait_line(sim_a, "connected")
            wait_line(sim_b, "connected")
            wait_line(sim_one, "connected")
            print(f"  fleet: {line_a.split(' in ')[1].split(' (')[0]} for {base} boxes to connect")
            started_at = time.monotonic()
            with started(
                # Port 0: any port chosen beforehand may be taken meanwhile by one of the fleet's
                # ten thousand outgoing connections.
                posd("serve", "--broker", broker, "--listen", "127.0.0.1:0",
                     "--db", str(directory / "fleet.db")),
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            ) as console:  # fmt: skip
                url = wait_line(console, "console at ").split()[-1].rstrip("/")
                asyncio.run(all_shown(url, count, started_at + TIMEOUT_S))
                shown_s = time.monotonic() - started_at
                print(f"  {count} boxes shown {shown_s:.2f} s after `posd fleet serve` started "
                      f"(goal: 10,000 under 10 s)")  # fmt: skip
                cpu0, wall0 = cpu_s(console.pid), time.monotonic()
                time.sleep(STEADY_S)
                cpu = (cpu_s(console.pid) - cpu0) / (time.monotonic() - wall0)
                print(f"  console at steady state: RSS {rss_mib(console.pid):.0f} MiB "
                      f"(goal < 200 MB), CPU {100 * cpu:.1f} % of a core")  # fmt: skip
                print(f"  mosquitto RSS {rss_mib(mosquitto.pid):.0f} MiB")
                a, one = rss_mib(sim_a.pid), rss_mib(sim_one.pid)
                per_box = (a - one) * 1024 / (base - 1)
                print(f"  simulator: {a:.0f} MiB for {base} boxes in one process ({one:.0f} MiB "
                      f"for one box): {per_box:.1f} KiB per box")  # fmt: skip
                killed = {f"S{n:07d}" for n in range(base + 1, count + 1)}
                delays = asyncio.run(kill_and_watch(url, sim_b, killed))
                print(f"  SIGKILL of {KILLED} boxes ({len(delays)} were online) → offline: p50 "
                      f"{1000 * percentile(delays, 50):.0f} ms, p95 "
                      f"{1000 * percentile(delays, 95):.0f} ms, all {1000 * delays[-1]:.0f} ms "
                      f"(goal: within 2 s)")  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="posd-bench-fleet-") as root:
        for count in FLEETS:
            print(f"{count} simulated boxes, one Mosquitto on this machine:", flush=True)
            one_fleet(count, Path(root))
            sys.stdout.flush()


if __name__ == "__main__":
    main()
