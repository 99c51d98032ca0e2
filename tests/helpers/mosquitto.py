"""A real Mosquitto broker for tests, on a free port of 127.0.0.1, with its own config and files.

    broker = mosquitto_factory()                                  # anonymous, no persistence
    broker = mosquitto_factory(persistence=True)                  # sessions survive restart()
    broker = mosquitto_factory(users={"posd": "secret"})          # password file, no anonymous
    broker = mosquitto_factory(pki=make_pki(tmp_path / "pki"), require_certificate=True)
    broker = mosquitto_factory(deny_subscribe=["forbidden/#"])   # SUBACK refuses those
    broker.stop(); broker.start()      # same port; stop() is SIGTERM, so persistence is saved
    broker.restart(users={"posd": "other"})   # new options, same port
    broker.kill()                      # SIGKILL: what was not saved yet is gone
    broker.wait_for_log(r"Received PUBACK from posd-T0000001-orders \\(Mid: 1")
    edge = mosquitto_factory(bridge_to=centre)     # bridges posd/# both ways to another broker
    edge.wait_bridged()

The fixtures `mosquitto` (one plain broker) and `mosquitto_factory` (any number, any options)
work from any test directory once its conftest imports them:

    from tests.helpers.mosquitto import mosquitto, mosquitto_factory  # noqa: F401

Every broker is killed at teardown, and dies with the test process (setpriv --pdeathsig). The log
(`log_type all`: every packet, never a payload) is read as it comes, so a test waits for a
protocol event (`wait_for_log`) instead of sleeping; `log_text()` shows it when a test fails.
Passwords are written in Mosquitto's own `$7$` format (PBKDF2-SHA512), so mosquitto_passwd is
not needed.
"""

from __future__ import annotations

import base64
import contextlib
import glob
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from tests.helpers.tls import Pki

HOST = "127.0.0.1"


def mosquitto_binary() -> str:
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None
    )
    if found is None:
        pytest.fail("mosquitto is not installed: run scripts/ensure-system-tools.sh (make test)")
    return found


def password_line(user: str, password: str, iterations: int = 101) -> str:
    """One line of a Mosquitto 2 password file: `user:$7$iterations$salt$hash`."""
    salt = secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    b64 = base64.b64encode
    return f"{user}:$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


@dataclass(frozen=True)
class BrokerOptions:
    persistence: bool = False
    users: Mapping[str, str] | None = None
    """Username → password; then anonymous clients are refused."""
    pki: Pki | None = None
    """A TLS listener with the PKI's server certificate (clients check it against its CA)."""
    require_certificate: bool = False
    acl: str | None = None
    """The text of an ACL file (`user posd` / `topic readwrite baedal/#` lines). Mosquitto 2.0's
    ACL file never refuses a SUBSCRIBE (it filters deliveries): see deny_subscribe."""
    deny_subscribe: Sequence[str] = ()
    """Topic patterns whose SUBSCRIBE the broker refuses (SUBACK 0x80, 0x87 under MQTT 5),
    through the dynamic-security plugin; anonymous clients only."""
    extra: Sequence[str] = ()
    """More lines for mosquitto.conf, e.g. "max_inflight_messages 5"."""
    bridge_to: Mosquitto | None = None
    """Bridge to that broker (anonymous, plain TCP): the shape of a regional broker feeding the
    centre, or of a cluster; each `bridge_topics` line is a bridge `topic` line."""
    bridge_topics: Sequence[str] = ("posd/# both 1",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _argv(config: Path) -> list[str]:
    argv = [mosquitto_binary(), "-c", str(config)]
    setpriv = shutil.which("setpriv")
    # The death signal follows the thread that started the child: only the main thread's lives
    # as long as the test process.
    if setpriv is not None and threading.current_thread() is threading.main_thread():
        argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
    return argv


@dataclass(eq=False)
class Mosquitto:
    directory: Path
    options: BrokerOptions = field(default_factory=BrokerOptions)
    port: int = 0
    host: str = HOST
    _process: subprocess.Popen[bytes] | None = None
    _lines: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _reader: threading.Thread | None = None
    _eof: bool = False
    _paused: bool = False

    # ---- life --------------------------------------------------------------------------------

    def start(self, timeout_s: float = 15.0) -> None:
        """Start (on the same port as before, if it ran before) and wait until it listens."""
        if self.running:
            raise RuntimeError("mosquitto is already running")
        for _ in range(1 if self.port else 5):
            port = self.port or _free_port()
            if self._start_on(port, timeout_s):
                self.port = port
                return
        raise RuntimeError(f"mosquitto found port {port} taken:\n{self.log_text()[-2000:]}")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM and wait: an orderly exit that saves the persistence file."""
        self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL and wait: nothing saved since the last autosave survives."""
        self._end(signal.SIGKILL, 10.0)

    def restart(self, **changes: object) -> None:
        """Stop, change options (keyword arguments of BrokerOptions), start on the same port."""
        self.stop()
        if changes:
            self.options = replace(self.options, **changes)  # type: ignore[arg-type]
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the broker keeps its sockets open and answers nothing."""
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def bridge_name(self) -> str:
        return f"bridge-{self.directory.name}"

    def wait_bridged(self, timeout_s: float = 15.0, after: int = 0) -> None:
        """Wait (in this broker's log, past `after`) until its bridge is connected and, when
        it takes topics in, subscribed on the remote side."""
        if self.options.bridge_to is None:
            raise RuntimeError("this broker has no bridge")
        takes_in = any(topic.split()[1] in ("in", "both") for topic in self.options.bridge_topics)
        what = "Received SUBACK from" if takes_in else "Received CONNACK on connection"
        self.wait_for_log(rf"{what} local\.{re.escape(self.bridge_name)}\b", timeout_s, after)

    # ---- the log -----------------------------------------------------------------------------

    def log_text(self) -> str:
        with self._changed:
            return "\n".join(self._lines)

    def log_mark(self) -> int:
        """A position in the log: `wait_for_log(..., after=mark)` looks only past it."""
        with self._changed:
            return len(self._lines)

    def log_lines(self, after: int = 0) -> list[str]:
        with self._changed:
            return self._lines[after:]

    def wait_for_log(
        self, pattern: str, timeout_s: float = 15.0, after: int = 0, count: int = 1
    ) -> re.Match[str]:
        """The `count`-th log line past `after` that matches `pattern` (re.search), waiting
        for it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        position, seen = after, 0
        with self._changed:
            while True:
                for line in self._lines[position:]:
                    match = regex.search(line)
                    if match:
                        seen += 1
                        if seen == count:
                            return match
                position = len(self._lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = "\n".join(self._lines[-60:])
                    raise AssertionError(
                        f"{seen} of {count} log lines matching {pattern!r}; log ends:\n{tail}"
                    )
                self._changed.wait(left)

    # ---- internals ---------------------------------------------------------------------------

    def _config(self, port: int) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        o = self.options
        lines = [
            f"listener {port} {HOST}",
            "log_dest stderr",
            "log_type all",
            "log_timestamp false",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            lines.append("user root")  # else it switches to "mosquitto", who cannot read tmp_path
        if o.users is not None:
            password_file = self.directory / "passwords"
            password_file.write_text(
                "".join(password_line(user, pw) + "\n" for user, pw in o.users.items())
            )
            password_file.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {password_file}"]
        else:
            lines.append("allow_anonymous true")
        if o.acl is not None:
            acl_file = self.directory / "acl"
            acl_file.write_text(o.acl)
            acl_file.chmod(0o600)
            lines.append(f"acl_file {acl_file}")
        if o.deny_subscribe:
            lines += self._dynamic_security(o.deny_subscribe)
        if o.pki is not None:
            lines += [
                f"cafile {o.pki.ca_file}",
                f"certfile {o.pki.server_cert}",
                f"keyfile {o.pki.server_key}",
                f"require_certificate {'true' if o.require_certificate else 'false'}",
            ]
        if o.persistence:
            lines += [
                "persistence true",
                f"persistence_location {self.directory}/",
                "persistence_file mosquitto.db",
            ]
        else:
            lines.append("persistence false")
        lines += list(o.extra)
        if o.bridge_to is not None:
            # Last: what follows `connection` configures that bridge.
            lines += [
                f"connection {self.bridge_name}",
                f"address {o.bridge_to.host}:{o.bridge_to.port}",
                *(f"topic {topic}" for topic in o.bridge_topics),
                f"remote_clientid {self.bridge_name}",
                "bridge_protocol_version mqttv311",
                "try_private true",  # the remote keeps the retain flag of what it forwards
                "cleansession true",
                "notifications false",
                "start_type automatic",
                "restart_timeout 1",
                "keepalive_interval 5",
            ]
        path = self.directory / "mosquitto.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def _dynamic_security(self, patterns: Sequence[str]) -> list[str]:
        if self.options.users is not None:
            raise ValueError("deny_subscribe is for anonymous clients (no users)")
        found = sorted(glob.glob("/usr/lib/*/mosquitto_dynamic_security.so")) + sorted(
            glob.glob("/usr/lib/mosquitto_dynamic_security.so")
        )
        if not found:
            pytest.skip("mosquitto's dynamic-security plugin is not installed")
        acls = [
            {"acltype": "subscribePattern", "topic": pattern, "priority": 0, "allow": False}
            for pattern in patterns
        ]
        access = dict.fromkeys(
            ("publishClientSend", "publishClientReceive", "subscribe", "unsubscribe"), True
        )
        config = {
            "defaultACLAccess": access,
            "clients": [],
            "groups": [{"groupname": "anonymous", "roles": [{"rolename": "anonymous"}]}],
            "roles": [{"rolename": "anonymous", "acls": acls}],
            "anonymousGroup": "anonymous",
        }
        path = self.directory / "dynamic-security.json"
        path.write_text(json.dumps(config))
        return [f"plugin {found[0]}", f"plugin_opt_config_file {path}"]

    def _start_on(self, port: int, timeout_s: float) -> bool:
        config = self._config(port)
        mark = self.log_mark()
        process = subprocess.Popen(
            _argv(config),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self._process = process
        self._eof = False
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()
        ready = re.compile(r"mosquitto version \S+ running")
        deadline = time.monotonic() + timeout_s
        started = taken = False
        with self._changed:
            while True:
                lines = self._lines[mark:]
                started = any(ready.search(line) for line in lines)
                taken = any("Address already in use" in line for line in lines)
                left = deadline - time.monotonic()
                if started or taken or self._eof or left <= 0:
                    break
                self._changed.wait(left)
        if started and process.poll() is None:
            # "running" is logged before the main loop starts, and a SIGTERM that comes before
            # that is lost: only a CONNACK says the broker is serving.
            self._probe(port, deadline)
            return True
        self._end(signal.SIGKILL, 10.0)
        if taken:
            return False
        raise RuntimeError(f"mosquitto did not start:\n{self.log_text()[-4000:]}")

    def _probe(self, port: int, deadline: float) -> None:
        """One MQTT 3.1.1 CONNECT (clean session, anonymous or the first user) and its CONNACK."""
        o = self.options
        client_id = b"fixture-probe"
        payload = struct.pack("!H", len(client_id)) + client_id
        flags = 0x02
        if o.users:
            user, password = next(iter(o.users.items()))
            payload += struct.pack("!H", len(user.encode())) + user.encode()
            payload += struct.pack("!H", len(password.encode())) + password.encode()
            flags |= 0xC0
        body = b"\x00\x04MQTT\x04" + bytes([flags]) + b"\x00\x3c" + payload
        connect = b"\x10" + bytes([len(body)]) + body
        sock = socket.create_connection((HOST, port), timeout=max(0.1, deadline - time.monotonic()))
        with contextlib.ExitStack() as stack:
            stack.enter_context(sock)
            if o.pki is not None:
                context = ssl.create_default_context(cafile=str(o.pki.ca_file))
                context.load_cert_chain(o.pki.client_cert, o.pki.client_key)
                sock = stack.enter_context(context.wrap_socket(sock, server_hostname="localhost"))
            sock.sendall(connect)
            connack = b""
            while len(connack) < 4:
                chunk = sock.recv(4 - len(connack))
                if not chunk:
                    break
                connack += chunk
            if connack[:2] != b"\x20\x02":
                raise RuntimeError(f"mosquitto's answer to a probe CONNECT: {connack!r}")
            sock.sendall(b"\xe0\x00")

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            with self._changed:
                self._lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    def _signal(self, signum: int) -> None:
        if self._process is None or self._process.poll() is not None:
            raise RuntimeError("mosquitto is not running")
        self._process.send_signal(signum)

    def _end(self, signum: int, timeout_s: float) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if self._paused:
                    process.send_signal(signal.SIGCONT)  # a stopped process handles no SIGTERM
                process.send_signal(signum)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10.0)
        if self._reader is not None:
            self._reader.join(10.0)
        if process.stdout is not None:
            process.stdout.close()
        self._process = None
        self._paused = False


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """make(**BrokerOptions fields) → a started Mosquitto; all are killed at teardown."""
    brokers: list[Mosquitto] = []

    def make(**options: object) -> Mosquitto:
        broker = Mosquitto(
            tmp_path / f"mosquitto-{len(brokers)}",
            BrokerOptions(**options),  # type: ignore[arg-type]
        )
        brokers.append(broker)
        broker.start()
        return broker

    yield make
    for broker in brokers:
        broker.kill()


@pytest.fixture
def mosquitto(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """One started broker: anonymous, no persistence."""
    return mosquitto_factory()
