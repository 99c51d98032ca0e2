"""`posd run`: load the config, open the state dir, run every component under one supervisor.

Start-up order: core dumps forbidden (they would hold keys and card data), config (invalid:
every problem on stderr, exit 78), the secrets it names are
registered with the log redaction, logging as configured, the state dir (created 0700; refused
with a clear message when unusable, exit 73), then the event loop: the supervisor runs what
`build_components` returns, READY=1 goes to systemd once every component has said it is
serving, and STATUS= names what is still awaited or failing.

Before the loop: the state dir's lock (another posd holds it: exit 75 naming its PID, nothing
touched), and the open-files limit raised to its hard limit.

Signals: SIGTERM/SIGINT stop in order (STOPPING=1, components cancelled, exit 0; a component
that will not stop makes posd exit 70 after STOP_TIMEOUT_S rather than hang). SIGHUP reloads
(RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload expects): the file is read and validated
again; an invalid one is refused and logged with its problems while the running config stays;
a valid one replaces it and the components whose config sections changed (see
posd.runtime.component) are rebuilt and restarted, and must all be serving within
RELOAD_START_TIMEOUT_S, or the previous config's components are put back and the reload is
refused. Each outcome is a `config` event on the runtime's hub; whoever asked through
`Runtime.request_reload` (the `reload_config` command) is told once the file is taken or
refused, before any component is replaced (a reload undone after that is told by a second
`config` event, `refused`). The watchdog is fed from the event loop only, so a blocked loop
stops the pings and systemd restarts posd; and only while posd can serve or says why not
(`Daemon.cannot_serve`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import resource
import signal
import stat
import sys
import threading
from collections.abc import Mapping
from pathlib import Path

from posd.config import (
    Config,
    ConfigError,
    ConfigFileError,
    load_config,
    read_api_token,
    read_mac_key,
    read_mqtt_password,
)
from posd.daemon.limits import log_open_files_limit, raise_open_files_limit
from posd.daemon.stack import BuildComponents, build_components
from posd.daemon.state_dir import StateDirError, StateDirLock, StateDirLocked, prepare_state_dir
from posd.logs import register_secret, set_card_prefixes, set_level, setup_logging
from posd.monitoring import config_event
from posd.runtime import (
    Backoff,
    Component,
    Decided,
    Notifier,
    ReloadOutcome,
    Runtime,
    Supervisor,
    config_sections,
)

log = logging.getLogger(__package__)


STOP_TIMEOUT_S = 4.5
# A reload's new components must all be serving (or a reload is undone) within this.
RELOAD_START_TIMEOUT_S = 20.0
# A component neither serving nor failing for this long is stuck, and so is posd: it cannot
# take a payment and cannot say why. The watchdog is then no longer fed, and systemd restarts
# it. (One that fails says why: its error is in the status, and restarting would not help.)
STUCK_AFTER_S = 60.0
# Files a config names are keys, certificates and tokens; anything bigger is not one of them.
_MAX_FINGERPRINTED_FILE = 1 << 20


def register_config_secrets(config: Config) -> None:
    """Mask the secrets the config names (MAC key, API token, broker password, TLS keys), and
    every digit run starting with one of its card prefixes."""
    set_card_prefixes(config.card_reader.accepted_prefixes)
    register_secret(read_mac_key(config))
    token = read_api_token(config)
    if token is not None:
        register_secret(token)
    password = read_mqtt_password(config)
    if password is not None:
        try:
            register_secret(password)
        except ValueError:
            log.warning(
                "the MQTT password in %s is too short to be masked in logs; use a longer one",
                config.mqtt.password_file,
            )
    for key_file in (config.ledger.key_file, config.mqtt.key_file):
        for line in _pem_body_lines(key_file):
            register_secret(line)


def _pem_body_lines(path: Path | None) -> list[str]:
    """The base64 lines of a PEM private key: what would show if the key text were logged."""
    if path is None:
        return []
    data = _read_regular_file(path)
    if data is None:
        # The component that uses the key reports an unreadable one, with context.
        return []
    text = data.decode("ascii", errors="replace")
    return [
        line.strip()
        for line in text.splitlines()
        if len(line.strip()) >= 16 and not line.startswith("-----") and ":" not in line
    ]


def _read_regular_file(path: Path) -> bytes | None:
    """Contents of a regular file, or None; never blocks on a FIFO or opens a device."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > _MAX_FINGERPRINTED_FILE:
            return None
        chunks: list[bytes] = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


Fingerprint = tuple[object, tuple[tuple[str, str | None], ...]]


def section_fingerprints(config: Config) -> dict[str, Fingerprint]:
    """Each config section's values plus the digest of every file it names.

    A certificate or key replaced under the same name is a change too: that is how a technician
    rolls a credential without touching the config file.
    """
    prints: dict[str, Fingerprint] = {}
    for f in dataclasses.fields(config):
        section = getattr(config, f.name)
        if not dataclasses.is_dataclass(section) or isinstance(section, type):
            continue
        files: list[tuple[str, str | None]] = []
        for sf in dataclasses.fields(section):
            value = getattr(section, sf.name)
            if isinstance(value, Path):
                data = _read_regular_file(value)
                files.append(
                    (sf.name, hashlib.sha256(data).hexdigest() if data is not None else None)
                )
        prints[f.name] = (section, tuple(files))
    return prints


def _check_components(components: list[Component], sections: Mapping[str, object]) -> None:
    names: set[str] = set()
    for component in components:
        if component.name in names:
            raise ValueError(f"two components are named {component.name!r}")
        names.add(component.name)
        declared = config_sections(component)
        unknown = (declared or frozenset()) - sections.keys()
        if unknown:
            raise ValueError(
                f"component {component.name} declares unknown config sections: "
                + ", ".join(sorted(unknown))
            )


class Daemon:
    """The running daemon: supervisor, signals, reload, watchdog. See the module doc."""

    def __init__(
        self,
        config: Config,
        config_path: Path,
        state_dir: Path,
        *,
        notifier: Notifier | None = None,
        build: BuildComponents = build_components,
        backoff: Backoff | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        stuck_after_s: float = STUCK_AFTER_S,
        reload_start_timeout_s: float = RELOAD_START_TIMEOUT_S,
    ) -> None:
        self.supervisor = Supervisor(backoff=backoff, stop_timeout_s=min(4.0, stop_timeout_s))
        self.runtime = Runtime(
            config=config,
            config_path=config_path,
            state_dir=state_dir,
            supervisor=self.supervisor,
            notifier=notifier if notifier is not None else Notifier(),
        )
        self.runtime.request_reload = self.request_reload
        self._reload_waiters: list[Decided] = []
        self._build = build
        self._stop_timeout_s = stop_timeout_s
        self._fingerprints: dict[str, Fingerprint] = {}
        self._stop = asyncio.Event()
        self._reload_requested = asyncio.Event()
        self._reloads_done = 0
        self._ready_sent = False
        self._last_status = ""
        self._stuck_after_s = stuck_after_s
        self._reload_start_timeout_s = reload_start_timeout_s
        # Set when a reload could neither be applied nor undone: posd cannot serve.
        self._unservable: str | None = None
        self._starving: str | None = None

    @property
    def notifier(self) -> Notifier:
        return self.runtime.notifier

    # -- requests (signal handlers, tests) -------------------------------------------------

    def request_stop(self) -> None:
        if not self._stop.is_set():
            log.info("stop requested")
            self._stop.set()

    def request_reload(self, decided: Decided | None = None) -> None:
        """As SIGHUP; `decided` is called once the reload has taken or refused the file."""
        if decided is not None:
            self._reload_waiters.append(decided)
        self._reload_requested.set()

    @property
    def reloads_done(self) -> int:
        return self._reloads_done

    # -- serving -----------------------------------------------------------------------------

    async def serve(self, *, handle_signals: bool = True) -> int:
        """Run until stopped; the exit status. Signals are handled only from the main thread."""
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig, action in (
                (signal.SIGTERM, self.request_stop),
                (signal.SIGINT, self.request_stop),
                (signal.SIGHUP, self.request_reload),
            ):
                loop.add_signal_handler(sig, action)
                handled.append(sig)
        try:
            return await self._serve()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    async def _serve(self) -> int:
        config = self.runtime.config
        self.notifier.notify(status="starting: building components")
        self._fingerprints = await asyncio.to_thread(section_fingerprints, config)
        try:
            components = self._build(config, self.runtime)
            _check_components(components, self._fingerprints)
        except ConfigError as exc:
            log.error("configuration not usable: %s", "; ".join(str(exc).splitlines()))
            self.notifier.notify(status="failed: configuration not usable (see the log)")
            return os.EX_CONFIG
        except Exception:
            log.exception("building the components failed")
            self.notifier.notify(status="failed: could not build components (see the log)")
            return os.EX_SOFTWARE
        log.info(
            "posd starting: config %s (sha256 %s), state dir %s, components: %s",
            self.runtime.config_path,
            config.sha256[:12],
            self.runtime.state_dir,
            ", ".join(c.name for c in components) or "none",
        )
        self.supervisor.add_listener(self._on_component_change)
        interval = self.notifier.watchdog_interval
        async with asyncio.TaskGroup() as group:
            supervisor = group.create_task(self.supervisor.run(components), name="supervisor")
            helpers = [group.create_task(self._reloader(), name="reloader")]
            if interval is not None:
                helpers.append(group.create_task(self._feed_watchdog(interval), name="watchdog"))
            stop = group.create_task(self._stop.wait(), name="stop")
            await asyncio.wait({stop, supervisor}, return_when=asyncio.FIRST_COMPLETED)
            self.notifier.notify(stopping=True, status="stopping")
            log.info("stopping: cancelling components")
            overrun = asyncio.get_running_loop().call_later(
                self._stop_timeout_s, self._stop_overrun
            )
            for task in (supervisor, stop, *helpers):
                task.cancel()
        overrun.cancel()
        self.supervisor.remove_listener(self._on_component_change)
        log.info("stopped")
        return os.EX_OK

    def _stop_overrun(self) -> None:
        stuck = [n for n, s in self.supervisor.statuses().items() if s.state != "stopped"]
        log.critical(
            "components did not stop within %.1f s (%s); exiting anyway",
            self._stop_timeout_s,
            ", ".join(stuck) or "none",
        )
        logging.shutdown()
        os._exit(os.EX_SOFTWARE)

    def _on_component_change(self) -> None:
        status = self.supervisor.summary()
        if not self._ready_sent and self.supervisor.all_started():
            self._ready_sent = True
            self._last_status = status
            self.notifier.notify(ready=True, status=status)
            log.info("ready: every component is serving")
            return
        if status != self._last_status:
            self._last_status = status
            self.notifier.notify(status=status)

    def cannot_serve(self) -> str | None:
        """Why posd can neither serve nor say why not (the watchdog then starves), or None.

        A component that fails says why (its error is in the status and STATUS=); one stuck
        starting while none fails, or a reload that could not be undone, leaves posd answering
        "starting" for ever: only a restart helps.
        """
        if self._unservable is not None:
            return self._unservable
        stuck = self.supervisor.stuck_starting(self._stuck_after_s)
        if not stuck:
            return None
        if any(s.state == "error" for s in self.supervisor.statuses().values()):
            return None
        return "; ".join(f"{name} has been starting for {age:.0f} s" for name, age in stuck)

    async def _feed_watchdog(self, interval: float) -> None:
        while True:
            problem = self.cannot_serve()
            if problem is None:
                if self._starving is not None:
                    log.warning("posd can serve again; the watchdog is fed again")
                    self._starving = None
                self.notifier.notify(watchdog=True)
            elif problem != self._starving:
                self._starving = problem
                log.critical("posd cannot serve: %s; the watchdog is no longer fed", problem)
                self.notifier.notify(status=f"failed: {problem}; waiting for the watchdog")
            await asyncio.sleep(interval)

    async def _reloader(self) -> None:
        while True:
            await self._reload_requested.wait()
            self._reload_requested.clear()
            try:
                await self.reload()
            finally:
                self._reloads_done += 1

    # -- reload --------------------------------------------------------------------------------

    async def reload(self) -> bool:
        """Re-read the config; True when the new one was applied.

        All or nothing: the components the change touches are rebuilt and must all be serving
        within the reload timeout; if one fails to start, the previous config's components are
        put back (and the previous config stays), so a reload never leaves posd half-built.
        """
        path = self.runtime.config_path
        waiters, self._reload_waiters = self._reload_waiters, []
        self.notifier.notify(reloading=True, status="reloading configuration")
        log.info("reloading configuration from %s", path)
        try:
            new = await asyncio.to_thread(load_config, path)
            await asyncio.to_thread(register_config_secrets, new)
            prints = await asyncio.to_thread(section_fingerprints, new)
            components = self._build(new, self.runtime)
            _check_components(components, prints)
        except ConfigError as exc:
            problems = str(exc).splitlines()
            log.error(
                "configuration reload refused, the running configuration stays: %d problem(s): %s",
                len(problems),
                " | ".join(problems),
            )
            self._finish_reload(f"reload refused ({len(problems)} config problems, see the log)")
            kept = self.runtime.config.sha256
            self._decided(waiters, ReloadOutcome(False, kept, tuple(problems)))
            return False
        except Exception:
            log.exception("configuration reload failed, the running configuration stays")
            self._finish_reload("reload failed (see the log)")
            kept = self.runtime.config.sha256
            self._decided(waiters, ReloadOutcome(False, kept, ("reload failed: see the log",)))
            return False

        changed = {name for name, fp in prints.items() if self._fingerprints.get(name) != fp}
        old, old_prints = self.runtime.config, self._fingerprints
        if new.storage.state_dir != old.storage.state_dir:
            log.warning(
                "storage.state_dir changed to %s: it takes effect when posd restarts",
                new.storage.state_dir,
            )
        self.runtime.config = new
        self._fingerprints = prints
        # Told now: the components about to be replaced may include the one that asked.
        self._decided(waiters, ReloadOutcome(True, new.sha256))
        await self.supervisor.wait_running()
        restarted, started = await self._apply_components(components, changed)
        failure = await self._serving(started)
        if failure is not None:
            await self._undo_reload(old, old_prints, changed, failure)
            return False
        if new.logging.format != old.logging.format:
            setup_logging(new.logging.level, new.logging.format)
        elif new.logging.level != old.logging.level:
            set_level(new.logging.level)
        log.info(
            "configuration reloaded (sha256 %s); changed sections: %s; restarted: %s",
            new.sha256[:12],
            ", ".join(sorted(changed)) or "none",
            ", ".join(restarted) or "none",
        )
        self._finish_reload(None)
        return True

    async def _undo_reload(
        self, old: Config, old_prints: dict[str, Fingerprint], changed: set[str], failure: str
    ) -> None:
        log.error(
            "configuration reload failed: %s; going back to the running configuration", failure
        )
        self.runtime.config = old
        self._fingerprints = old_prints
        try:
            components = self._build(old, self.runtime)
            _, started = await self._apply_components(components, changed)
            again = await self._serving(started)
        except Exception as exc:
            again = f"{type(exc).__name__}: {exc}"
        if again is not None:
            self._unservable = f"a failed reload could not be undone ({again})"
            log.critical("%s; posd cannot serve until it is restarted", self._unservable)
            self._finish_reload(self._unservable)
            self._decided([], ReloadOutcome(False, old.sha256, (failure, self._unservable)))
            return
        log.warning("the previous configuration is running again (sha256 %s)", old.sha256[:12])
        self._finish_reload(f"reload refused: {failure} (see the log); previous config kept")
        self._decided([], ReloadOutcome(False, old.sha256, (f"{failure}; previous config kept",)))

    async def _serving(self, names: list[str]) -> str | None:
        """None once every component in `names` is serving; else what failed to start."""
        changed = asyncio.Event()
        waiting = list(names)
        self.supervisor.add_listener(changed.set)
        try:
            async with asyncio.timeout(self._reload_start_timeout_s):
                while True:
                    changed.clear()
                    statuses = self.supervisor.statuses()
                    waiting = []
                    for name in names:
                        status = statuses.get(name)
                        if status is None or status.state in ("error", "stopped"):
                            why = status.last_error if status is not None else None
                            return f"{name} did not start ({why or 'stopped'})"
                        if not status.ever_started:
                            waiting.append(name)
                    if not waiting:
                        return None
                    await changed.wait()
        except TimeoutError:
            return f"{', '.join(waiting)} not serving after {self._reload_start_timeout_s:g} s"
        finally:
            self.supervisor.remove_listener(changed.set)

    def _decided(self, waiters: list[Decided], outcome: ReloadOutcome) -> None:
        self.runtime.events.publish("config", "config", config_event(outcome))
        for decided in waiters:
            try:
                decided(outcome)
            except Exception:
                log.exception("telling a reload's outcome failed")

    def _finish_reload(self, note: str | None) -> None:
        status = self.supervisor.summary()
        self._last_status = status if note is None else f"{status}; {note}"
        # READY=1 ends the reload for systemd, whether or not the new config was taken.
        self.notifier.notify(ready=self._ready_sent, status=self._last_status)

    async def _apply_components(
        self, fresh: list[Component], changed: set[str]
    ) -> tuple[list[str], list[str]]:
        """Swap in the rebuilt components that need it; the names touched (for the log) and
        the names of the components started.

        Components that hold references to each other are replaced as a group: every one to be
        replaced is stopped first (in reverse start order), then the new ones start in build
        order, so an old and a new instance of a group never run side by side.
        """
        running = list(self.supervisor.statuses())
        wanted = {c.name: c for c in fresh}
        stop: list[str] = []
        start: list[Component] = []
        touched: list[str] = []
        for name in running:
            if name not in wanted:
                stop.append(name)
                touched.append(f"{name} (removed)")
        for name, component in wanted.items():
            if name not in running:
                start.append(component)
                touched.append(f"{name} (added)")
                continue
            depends = config_sections(component)
            if (depends is None and changed) or (depends is not None and depends & changed):
                stop.append(name)
                start.append(component)
                touched.append(name)
        for name in sorted(stop, key=running.index, reverse=True):
            await self.supervisor.remove(name)
        for component in start:
            self.supervisor.add(component)
        return touched, [c.name for c in start]


def disable_core_dumps() -> str | None:
    """Forbid core dumps of this process: one would hold the MAC key and card data in clear.

    The unit's LimitCORE=0 does the same under systemd, where the seccomp filter may refuse
    setrlimit; the result is a warning to log (logging is not set up yet), None when done.
    """
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (OSError, ValueError) as exc:
        if resource.getrlimit(resource.RLIMIT_CORE) == (0, 0):
            return None
        return f"core dumps stay allowed ({exc}); run posd with LimitCORE=0 or ulimit -c 0"
    return None


def run_daemon(config_path: str) -> int:
    """`posd run`: the exit status (sysexits)."""
    core_warning = disable_core_dumps()
    path = Path(config_path)
    notifier = Notifier.from_environ(unset=True)
    try:
        config = load_config(path)
        register_config_secrets(config)
    except ConfigFileError as exc:
        print(f"posd: {exc}", file=sys.stderr)
        notifier.notify(status="failed: config file not readable")
        is_config_file = all(not p.key_path for p in exc.problems)
        return os.EX_NOINPUT if is_config_file else os.EX_CONFIG
    except ConfigError as exc:
        problems = str(exc).splitlines()
        print(f"posd: {path}: {len(problems)} config problem(s):", file=sys.stderr)
        for problem in problems:
            print(problem, file=sys.stderr)
        notifier.notify(status=f"failed: {len(problems)} config problem(s) (see the log)")
        return os.EX_CONFIG
    setup_logging(config.logging.level, config.logging.format)
    if core_warning is not None:
        log.warning("%s", core_warning)
    try:
        state_dir = prepare_state_dir(config.storage.state_dir)
        # Before anything in it is opened: a second posd must leave the first one's payments,
        # journal and API socket alone.
        lock = StateDirLock.acquire(state_dir)
    except StateDirLocked as exc:
        log.error("%s", exc)
        notifier.notify(status=f"failed: {exc}")
        notifier.close()
        return os.EX_TEMPFAIL
    except StateDirError as exc:
        log.error("%s", exc)
        notifier.notify(status=f"failed: {exc}")
        return os.EX_CANTCREAT
    open_files = raise_open_files_limit()
    daemon = Daemon(config, path, state_dir, notifier=notifier)
    try:
        log_open_files_limit(open_files)
        return asyncio.run(daemon.serve())
    except Exception:
        log.exception("posd stopped on an unexpected error")
        return os.EX_SOFTWARE
    finally:
        lock.release()
        notifier.close()
        with contextlib.suppress(Exception):
            logging.shutdown()
