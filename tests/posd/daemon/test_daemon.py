"""`posd run` as systemd runs it, with a real notify socket; reload; state dir (the unit files
themselves: tests/systemd/)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
import stat
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from posd.config import Config, ConfigError, load_config
from posd.daemon import Daemon, StateDirError, prepare_state_dir
from posd.runtime import Backoff, Component, Notifier, Runtime
from tests.helpers.configs import write_config
from tests.helpers.notify import NotifyListener

WAIT_S = 10.0
ROOT = Path(__file__).resolve().parents[3]
SYSTEMD = ROOT / "systemd"


# -- the service manager's side --------------------------------------------------------------


class Posd:
    """`python -m posd run -c CONFIG` with its stderr collected line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._new_line = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))
            self._new_line.set()

    async def wait_for_line(self, fragment: str) -> str:
        async with asyncio.timeout(WAIT_S):
            while True:
                for line in self.lines:
                    if fragment in line:
                        return line
                self._new_line.clear()
                await self._new_line.wait()

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def exit_code(self) -> int:
        code = await asyncio.wait_for(self.proc.wait(), WAIT_S)
        await asyncio.wait_for(self._reader, WAIT_S)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)


def posd_config(tmp_path: Path, **overrides: dict[str, object]) -> Path:
    """write_config, with a reader port that does not exist: no probing of the host's ports."""
    reader = {"port": str(tmp_path / "no-reader"), **overrides.pop("card_reader", {})}
    return write_config(tmp_path, card_reader=reader, **overrides)


async def start_posd(
    config: Path, preexec_fn: Callable[[], None] | None = None, **env: str
) -> Posd:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_", "WATCHDOG_"))}
    environ.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "posd",
        "run",
        "-c",
        str(config),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=environ,
        cwd=ROOT,
        preexec_fn=preexec_fn,
    )
    return Posd(proc)


@pytest.fixture
async def running() -> AsyncIterator[list[Posd]]:
    """Processes a test started; killed at the end if the test left them running."""
    started: list[Posd] = []
    yield started
    for posd in started:
        if posd.proc.returncode is None:
            posd.proc.kill()
            await posd.proc.wait()


@pytest.fixture(params=["path", "abstract"])
def listener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NotifyListener]:
    sock = NotifyListener(tmp_path, abstract=request.param == "abstract")
    yield sock
    sock.close()


# -- posd run under a notify socket ------------------------------------------------------------


async def test_ready_after_start_then_orderly_stop_on_sigterm(
    tmp_path: Path, listener: NotifyListener, running: list[Posd]
) -> None:
    config = posd_config(tmp_path)
    posd = await start_posd(config, NOTIFY_SOCKET=listener.name)
    running.append(posd)
    first = await listener.next()
    assert "READY" not in first
    assert first["STATUS"].startswith("starting")
    ready = await listener.until(lambda m: "READY" in m)
    assert ready["STATUS"] == "running"
    await posd.wait_for_line("ready: every component is serving")
    posd.signal(signal.SIGTERM)
    stopping = await listener.until(lambda m: "STOPPING" in m)
    assert stopping["STOPPING"] == "1"
    assert await posd.exit_code() == os.EX_OK
    assert "stopped" in posd.stderr


async def test_watchdog_pings_at_half_the_interval(
    tmp_path: Path, listener: NotifyListener, running: list[Posd]
) -> None:
    config = posd_config(tmp_path)
    posd = await start_posd(config, NOTIFY_SOCKET=listener.name, WATCHDOG_USEC="100000")
    running.append(posd)
    for _ in range(3):
        await listener.until(lambda m: m.get("WATCHDOG") == "1")
    posd.signal(signal.SIGINT)
    assert await posd.exit_code() == os.EX_OK


async def test_sighup_with_broken_config_keeps_running(
    tmp_path: Path, listener: NotifyListener, running: list[Posd]
) -> None:
    config = posd_config(tmp_path)
    posd = await start_posd(config, NOTIFY_SOCKET=listener.name)
    running.append(posd)
    await listener.until(lambda m: "READY" in m)
    good = config.read_text()
    config.write_text(good.replace('merchant_id = "', 'merchant_idd = "'))
    posd.signal(signal.SIGHUP)
    reloading = await listener.until(lambda m: "RELOADING" in m)
    assert int(reloading["MONOTONIC_USEC"]) > 0
    done = await listener.until(lambda m: "reload refused" in m.get("STATUS", ""))
    assert done.get("READY") == "1"
    line = await posd.wait_for_line("configuration reload refused")
    assert "merchant_idd" in line and "terminal.merchant_id" in line
    assert posd.proc.returncode is None
    # Still serving: a second, valid reload goes through.
    config.write_text(good)
    posd.signal(signal.SIGHUP)
    await posd.wait_for_line("configuration reloaded")
    posd.signal(signal.SIGTERM)
    assert await posd.exit_code() == os.EX_OK


async def test_sighup_with_valid_changed_config_reloads(
    tmp_path: Path, listener: NotifyListener, running: list[Posd]
) -> None:
    config = posd_config(tmp_path)
    posd = await start_posd(config, NOTIFY_SOCKET=listener.name)
    running.append(posd)
    await listener.until(lambda m: "READY" in m)
    posd_config(tmp_path, logging={"format": "json", "level": "info"})
    posd.signal(signal.SIGHUP)
    await listener.until(lambda m: "RELOADING" in m)
    done = await listener.until(lambda m: "READY" in m)
    assert done["STATUS"] == "running"
    line = await posd.wait_for_line("configuration reloaded")
    # The new format applies from the reload on: this very line is JSON.
    assert line.startswith("{") and "changed sections: logging" in line
    posd.signal(signal.SIGTERM)
    assert await posd.exit_code() == os.EX_OK
    assert posd.lines[-1].startswith("{")


async def test_invalid_config_exits_78_listing_every_problem(
    tmp_path: Path, running: list[Posd]
) -> None:
    config = posd_config(tmp_path, terminal={"id": 7}, offline={"max_count": "many"})
    posd = await start_posd(config)
    running.append(posd)
    assert await posd.exit_code() == os.EX_CONFIG
    assert "terminal.id" in posd.stderr
    assert "offline.max_count" in posd.stderr
    assert "Traceback" not in posd.stderr


async def test_missing_config_exits_66_with_a_hint(tmp_path: Path, running: list[Posd]) -> None:
    posd = await start_posd(tmp_path / "absent.toml")
    running.append(posd)
    assert await posd.exit_code() == os.EX_NOINPUT
    assert "config file not found" in posd.stderr
    assert "Traceback" not in posd.stderr


async def test_unusable_state_dir_exits_73(tmp_path: Path, running: list[Posd]) -> None:
    # Passes the config check (which only looks at what exists), fails when posd takes it.
    if os.geteuid() == 0:
        state = tmp_path / "theirs"
        state.mkdir(mode=0o700)
        os.chown(state, 65534, 65534)
        expected = "owned by uid 65534"
    else:
        parent = tmp_path / "locked"
        parent.mkdir(mode=0o500)
        state = parent / "state"
        expected = "cannot create state directory"
    config = posd_config(tmp_path, storage={"state_dir": str(state)})
    posd = await start_posd(config)
    running.append(posd)
    assert await posd.exit_code() == os.EX_CANTCREAT
    assert expected in posd.stderr
    assert "Traceback" not in posd.stderr


async def test_secrets_pasted_into_file_keys_never_reach_stderr(
    tmp_path: Path, running: list[Posd]
) -> None:
    mac_key = "9f" * 32
    token = "c2VjcmV0LWFwaS10b2tlbi1wYXN0ZWQtaW4tcGxhY2U="
    config = posd_config(tmp_path, api={"token_file": token}, ledger={"mac_key_file": mac_key})
    posd = await start_posd(config)
    running.append(posd)
    assert await posd.exit_code() == os.EX_CONFIG
    assert "ledger.mac_key_file: is not a file path" in posd.stderr
    assert "api.token_file: is not a file path" in posd.stderr
    assert mac_key not in posd.stderr and mac_key[:12] not in posd.stderr
    assert token not in posd.stderr and token[:12] not in posd.stderr


def _core_limit(pid: int) -> list[str]:
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    [line] = [row for row in limits if row.startswith("Max core file size")]
    return line.split()[4:6]


async def test_run_forbids_core_dumps(tmp_path: Path, running: list[Posd]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_CORE)
    if hard == 0:
        pytest.skip("core dumps are already forbidden to this test run; no change to observe")
    allowed = 1 << 20 if hard == resource.RLIM_INFINITY else min(hard, 1 << 20)

    def allow_core_dumps() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (allowed, hard))

    posd = await start_posd(posd_config(tmp_path), preexec_fn=allow_core_dumps)
    running.append(posd)
    await posd.wait_for_line("ready: every component is serving")
    assert _core_limit(posd.proc.pid) == ["0", "0"]
    posd.signal(signal.SIGTERM)
    assert await posd.exit_code() == os.EX_OK


def _open_files_limit(pid: int) -> list[str]:
    limits = Path(f"/proc/{pid}/limits").read_text().splitlines()
    [line] = [row for row in limits if row.startswith("Max open files")]
    return line.split()[3:5]


async def test_run_raises_its_open_files_limit_to_the_hard_one(
    tmp_path: Path, running: list[Posd]
) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 2048:
        pytest.skip(f"the hard open-files limit here is {hard}; no room to raise into")

    def low_soft_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (512, 2048))

    posd = await start_posd(posd_config(tmp_path), preexec_fn=low_soft_limit)
    running.append(posd)
    await posd.wait_for_line("ready: every component is serving")
    assert _open_files_limit(posd.proc.pid) == ["2048", "2048"]
    assert "open-files limit raised from 512 to 2048" in posd.stderr
    assert "at most 960 connections at once (open-files limit 2048)" in posd.stderr
    posd.signal(signal.SIGTERM)
    assert await posd.exit_code() == os.EX_OK


# -- state dir -----------------------------------------------------------------------------------


def test_state_dir_is_created_private(tmp_path: Path) -> None:
    path = prepare_state_dir(tmp_path / "a" / "state")
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


def test_state_dir_too_open_is_tightened(tmp_path: Path) -> None:
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o755)
    prepare_state_dir(loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700


def test_state_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(StateDirError, match="not a directory"):
        prepare_state_dir(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to hand the directory to another user")
def test_state_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    os.chown(other, 65534, 65534)
    with pytest.raises(StateDirError, match="owned by uid 65534"):
        prepare_state_dir(other)


# -- reload inside the process: which components restart -------------------------------------


class Recorder:
    """A component that records each start; declares its config sections if given."""

    def __init__(self, name: str, sections: tuple[str, ...] | None, starts: list[str]) -> None:
        self.name = name
        if sections is not None:
            self.config_sections = sections
        self._starts = starts

    async def run(self, started: Callable[[], None]) -> None:
        self._starts.append(self.name)
        started()
        await asyncio.Event().wait()


class Gate:
    """Starts serving only once `open` is set."""

    name = "journal"
    config_sections = ("storage",)

    def __init__(self) -> None:
        self.open = asyncio.Event()

    async def run(self, started: Callable[[], None]) -> None:
        await self.open.wait()
        started()
        await asyncio.Event().wait()


@contextlib.asynccontextmanager
async def serving(daemon: Daemon) -> AsyncIterator[asyncio.Task[int]]:
    task = asyncio.create_task(daemon.serve(handle_signals=False))
    try:
        await asyncio.wait_for(daemon.supervisor.wait_running(), WAIT_S)
        yield task
    finally:
        daemon.request_stop()
        assert await asyncio.wait_for(task, WAIT_S) == os.EX_OK


def make_daemon(
    config_path: Path, build: Callable[[Config, Runtime], list[Component]], **kw: object
) -> Daemon:
    config = load_config(config_path)
    return Daemon(
        config,
        config_path,
        prepare_state_dir(config.storage.state_dir),
        build=build,
        backoff=Backoff(initial_s=0.01, max_s=0.05),
        **kw,  # type: ignore[arg-type]
    )


async def until_started(daemon: Daemon, names: set[str]) -> None:
    changed = asyncio.Event()
    daemon.supervisor.add_listener(changed.set)
    try:
        async with asyncio.timeout(WAIT_S):
            while {
                n for n, s in daemon.supervisor.statuses().items() if s.state == "running"
            } < names:
                await changed.wait()
                changed.clear()
    finally:
        daemon.supervisor.remove_listener(changed.set)


async def test_reload_restarts_only_components_whose_sections_changed(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    starts: list[str] = []

    def build(config: Config, runtime: Runtime) -> list[Component]:
        return [
            Recorder("ledger", ("ledger",), starts),
            Recorder("logs", ("logging",), starts),
            Recorder("static", (), starts),
            Recorder("undeclared", None, starts),
        ]

    daemon = make_daemon(config_path, build)
    everything = {"ledger", "logs", "static", "undeclared"}
    async with serving(daemon):
        await until_started(daemon, everything)
        assert sorted(starts) == sorted(everything)

        starts.clear()
        write_config(tmp_path, logging={"level": "info"})
        assert await daemon.reload()
        await until_started(daemon, everything)
        assert sorted(starts) == ["logs", "undeclared"]
        assert daemon.runtime.config.logging.level == "info"

        # A key file replaced under the same name is a change of its section.
        starts.clear()
        (tmp_path / "mac.key").write_text("ab" * 32 + "\n")
        assert await daemon.reload()
        await until_started(daemon, everything)
        assert sorted(starts) == ["ledger", "undeclared"]

        starts.clear()
        assert await daemon.reload()
        assert starts == []

        before = daemon.runtime.config
        config_path.write_text("[terminal\n")
        assert not await daemon.reload()
        assert daemon.runtime.config is before
        assert starts == []


class Member:
    """One of a group of components that hold references to each other."""

    config_sections = ("ledger",)

    def __init__(self, name: str, events: list[str]) -> None:
        self.name = name
        self._events = events

    async def run(self, started: Callable[[], None]) -> None:
        self._events.append(f"start {self.name}")
        started()
        try:
            await asyncio.Event().wait()
        finally:
            self._events.append(f"stop {self.name}")


async def test_reload_swaps_a_group_stopping_all_before_starting_any(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    events: list[str] = []

    def build(config: Config, runtime: Runtime) -> list[Component]:
        return [Member("journal", events), Member("ledger", events), Member("payments", events)]

    daemon = make_daemon(config_path, build)
    names = {"journal", "ledger", "payments"}
    async with serving(daemon):
        await until_started(daemon, names)
        events.clear()
        write_config(tmp_path, ledger={"timeout_s": 20})
        assert await daemon.reload()
        await until_started(daemon, names)
        assert events == [
            "stop payments",
            "stop ledger",
            "stop journal",
            "start journal",
            "start ledger",
            "start payments",
        ]


async def test_reload_adds_and_removes_components(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    starts: list[str] = []

    def build(config: Config, runtime: Runtime) -> list[Component]:
        components: list[Component] = [Recorder("core", (), starts)]
        if config.offline.enabled:
            components.append(Recorder("offline", ("offline",), starts))
        return components

    daemon = make_daemon(config_path, build)
    async with serving(daemon):
        await until_started(daemon, {"core", "offline"})
        write_config(tmp_path, offline={"enabled": False})
        assert await daemon.reload()
        assert set(daemon.supervisor.statuses()) == {"core"}
        write_config(tmp_path, offline={"enabled": True})
        assert await daemon.reload()
        await until_started(daemon, {"core", "offline"})
        assert starts.count("core") == 1


async def test_ready_waits_for_every_component_and_status_names_it(
    tmp_path: Path, listener: NotifyListener
) -> None:
    config_path = write_config(tmp_path)
    gate = Gate()
    starts: list[str] = []

    def build(config: Config, runtime: Runtime) -> list[Component]:
        return [gate, Recorder("api", ("api",), starts)]

    address = listener.name
    notifier = Notifier(b"\0" + address[1:].encode() if address.startswith("@") else address)
    daemon = make_daemon(config_path, build, notifier=notifier)
    async with serving(daemon):
        waiting = await listener.until(lambda m: "waiting for journal" in m.get("STATUS", ""))
        assert "READY" not in waiting
        assert not any("READY" in m for m in listener.messages)
        gate.open.set()
        ready = await listener.until(lambda m: "READY" in m)
        assert ready["STATUS"] == "running"
    notifier.close()


async def test_components_that_cannot_be_built_stop_the_start(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)

    def config_problem(config: Config, runtime: Runtime) -> list[Component]:
        raise ConfigError([])

    def unknown_section(config: Config, runtime: Runtime) -> list[Component]:
        return [Recorder("x", ("ledgr",), [])]

    def duplicate(config: Config, runtime: Runtime) -> list[Component]:
        return [Recorder("x", (), []), Recorder("x", (), [])]

    refused = await make_daemon(config_path, config_problem).serve(handle_signals=False)
    assert refused == os.EX_CONFIG
    for build in (unknown_section, duplicate):
        assert await make_daemon(config_path, build).serve(handle_signals=False) == os.EX_SOFTWARE


async def test_blocked_event_loop_stops_the_watchdog_pings(
    tmp_path: Path, listener: NotifyListener
) -> None:
    config_path = write_config(tmp_path)
    address = listener.name
    # 10 ms between pings.
    notifier = Notifier(
        b"\0" + address[1:].encode() if address.startswith("@") else address,
        watchdog_usec=20_000,
    )
    daemon = make_daemon(config_path, lambda config, runtime: [], notifier=notifier)

    def drain() -> list[bytes]:
        got = []
        with contextlib.suppress(BlockingIOError):
            while True:
                got.append(listener.sock.recv(4096))
        return got

    async with serving(daemon):
        await listener.until(lambda m: m.get("WATCHDOG") == "1")
        drain()
        # No await from here to the second drain: the loop is blocked for 20 ping intervals.
        time.sleep(0.2)  # noqa: ASYNC251 (blocking the loop is the point)
        assert drain() == []
        await listener.until(lambda m: m.get("WATCHDOG") == "1")
    notifier.close()


def test_component_that_will_not_stop_cannot_hold_up_the_exit(tmp_path: Path) -> None:
    config_path = write_config(tmp_path)
    script = textwrap.dedent(
        f"""
        import asyncio, sys
        from pathlib import Path
        from posd.config.load import load_config
        from posd.daemon.daemon import Daemon, prepare_state_dir
        from posd.logs.handler import setup_logging

        class Stubborn:
            name = "stubborn"
            async def run(self, started):
                started()
                while True:
                    try:
                        await asyncio.sleep(3600)
                    except asyncio.CancelledError:
                        pass

        async def main():
            path = Path({str(config_path)!r})
            config = load_config(path)
            daemon = Daemon(config, path, prepare_state_dir(config.storage.state_dir),
                            build=lambda c, r: [Stubborn()], stop_timeout_s=0.3)
            asyncio.get_running_loop().call_later(0.2, daemon.request_stop)
            return await daemon.serve(handle_signals=False)

        setup_logging("info", "text")
        sys.exit(asyncio.run(main()))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == os.EX_SOFTWARE, proc.stderr
    assert "did not stop" in proc.stderr
    assert "stubborn" in proc.stderr
