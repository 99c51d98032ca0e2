"""What `posd run` loads: its RSS budget (60 MB with both MQTT links up, bench_monitoring) has
no room for modules only a rare path or another command needs."""

from __future__ import annotations

import subprocess
import sys

# Each is loaded where it is needed: pyusb for a USB HID scanner (drivers.qr_scanner), difflib
# for a mistyped config key (posd.config.fields); numpy and hypothesis only by tests and
# benches; cryptography's x509 only by `posd enroll` and `posd check`.
NOT_IN_THE_DAEMON = ("usb", "difflib", "numpy", "hypothesis", "cryptography.x509")

_PROBE = """
import sys
from posd.cli.commands import daemon_entry
daemon_entry()
print(" ".join(sorted(sys.modules)))
"""


def test_posd_run_leaves_out_the_modules_of_rare_paths() -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True
    )
    loaded = set(done.stdout.split())
    assert "posd.daemon" in loaded and "aiohttp" in loaded
    assert sorted(loaded & set(NOT_IN_THE_DAEMON)) == []


def test_a_usb_hid_scanner_still_finds_its_class() -> None:
    from drivers.qr_scanner import UsbQrScanner
    from drivers.qr_scanner.usb_hid import UsbQrScanner as defined

    assert UsbQrScanner is defined
