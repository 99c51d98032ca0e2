"""The demo's Mosquitto: one broker of its own for both MQTT links of the demo's posd (mqtt.md:
"which may be the same broker"), the 배달서구 platform's orders and the operations centre's
monitoring. `make demo` installs mosquitto where it is missing, as `make test` does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Self

_MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class BrokerMissing(RuntimeError):
    """No mosquitto to start; the message says how to get one."""


class DemoBroker:
    """`with DemoBroker(directory) as broker:` a Mosquitto of its own on a free loopback port,
    anonymous, nothing kept; stopped at the end."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        found = shutil.which("mosquitto")
        return found or next((p for p in _MOSQUITTO_PATHS if os.access(p, os.X_OK)), None)

    def __enter__(self) -> Self:
        binary = self.binary()
        if binary is None:
            raise BrokerMissing(
                "mosquitto is not installed: `apt-get install mosquitto` (make demo does it)"
            )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        config = self._directory / "mosquitto.conf"
        lines = [f"listener {self.port} 127.0.0.1", "allow_anonymous true", "persistence false"]
        if os.geteuid() == 0:
            lines.append("user root")
        config.write_text("\n".join(lines) + "\n")
        log = (self._directory / "mosquitto.log").open("wb")
        with log:
            self._process = subprocess.Popen(
                [binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1),
            ):
                return self
            time.sleep(0.05)
        self.__exit__(None, None, None)
        raise BrokerMissing(f"mosquitto did not start; see {self._directory / 'mosquitto.log'}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
