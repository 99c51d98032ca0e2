"""`posd devices` through real ptys (a simulated SRL/1 reader among silent, noisy, echoing and
busy ports), a sysfs tree on disk, and the pyusb backend that emulates a HID scanner."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import tty
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import serial

from drivers.card_reader import probe_port
from drivers.serial_ports import SerialPort
from posd.cli import device_survey
from posd.cli import devices as devices_cli
from posd.cli.device_report import render_text
from posd.cli.device_survey import Host, SerialPortEntry, survey
from posd.config import Config, load_config
from posd.config import load as config_load
from posd.sim import SimulatedCardReader
from posd.sim.usb_hid_backend import HidScannerBackend
from protocols import srl_messages as srl
from protocols.srl_link import MessageReceived, SrlLink
from tests.helpers.configs import write_config
from tests.helpers.sysfs import FakeSysfs, Interface
from tests.helpers.unprivileged import run_python

TIMEOUT_S = 0.4
GARBAGE = b"\x99hello, not SRL/1\xff\xfe\x80"


class Ptys:
    """Pseudo-terminals standing in for serial ports; each kind of peer a technician meets."""

    def __init__(self) -> None:
        self._fds: list[int] = []
        self._loop = asyncio.get_running_loop()
        self._readers: list[int] = []
        self.held: list[serial.Serial] = []

    def _open(self) -> tuple[int, str]:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._fds += [master, slave]
        return master, os.ttyname(slave)

    def silent(self) -> str:
        return self._open()[1]

    def answering(self, reply: Callable[[bytes], bytes]) -> str:
        """A device that writes reply(what it read) back each time it reads something."""
        master, path = self._open()

        def readable() -> None:
            with contextlib.suppress(BlockingIOError, OSError):
                os.write(master, reply(os.read(master, 4096)))

        self._loop.add_reader(master, readable)
        self._readers.append(master)
        return path

    def busy(self) -> tuple[str, int]:
        """A port another program holds the way posd does (pyserial's exclusive lock);
        also the master end, to see that nothing was written to it."""
        master, path = self._open()
        self.held.append(serial.Serial(path, exclusive=True))
        return path, master

    def close(self) -> None:
        for fd in self._readers:
            self._loop.remove_reader(fd)
        for port in self.held:
            port.close()
        for fd in self._fds:
            os.close(fd)


@pytest.fixture
async def ptys() -> AsyncIterator[Ptys]:
    made = Ptys()
    try:
        yield made
    finally:
        made.close()


@pytest.fixture
async def sim() -> AsyncIterator[SimulatedCardReader]:
    async with SimulatedCardReader(model="SR-7", firmware="2.4.1", serial="R0001234") as reader:
        yield reader


def entry(path: str, description: str = "pseudo terminal", **usb: Any) -> SerialPortEntry:
    port = SerialPort(path, description, usb.get("vid"), usb.get("pid"), usb.get("serial"))
    return SerialPortEntry(port, usb.get("manufacturer"), candidate=True)


def write_sysfs(root: Path) -> Path:
    """A /sys with a known scanner, a keyboard, a USB serial adapter, a root hub, and an
    entry whose ids are unreadable."""
    sys = FakeSysfs(root)
    sys.usb_device(
        "usb1", 0x1D6B, 0x0002, devnum=1, product="EHCI Host Controller",
        interfaces=[Interface(0x09, 0x00, 0x00, driver="hub")],
    )  # fmt: skip
    sys.usb_device(
        "1-1", 0x05E0, 0x1200, devnum=4, manufacturer="Symbol Technologies",
        product="Symbol Bar Code Scanner", serial="S/N:1234",
        interfaces=[Interface(0x03, 0x01, 0x01, driver="usbhid")],
    )  # fmt: skip
    sys.usb_device(
        "1-2", 0x046D, 0xC31C, devnum=5, manufacturer="Logitech", product="USB Keyboard",
        interfaces=[
            Interface(0x03, 0x01, 0x01, driver="usbhid"),
            Interface(0x03, 0x00, 0x00, ((0x82, 0x03),), driver="usbhid"),
        ],
    )  # fmt: skip
    sys.usb_device(
        "1-3", 0x1A86, 0x7523, devnum=6, product="USB Serial",
        interfaces=[Interface(0xFF, 0x01, 0x02, ((0x82, 0x02), (0x02, 0x02), (0x81, 0x03)))],
    )  # fmt: skip
    sys.usb_device("1-4", "zz", 0x0001, devnum=7)
    return root


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posd devices")
    devices_cli.add_arguments(parser)
    return parser.parse_args(argv)


def no_libusb() -> None:
    return None


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    d = tmp_path / "dev"
    d.mkdir()
    return d


def host_with(ports: list[str], dev: Path, sysfs: Path | None = None, **kw: Any) -> Host:
    return Host(
        serial_ports=lambda: [entry(p) for p in ports],
        sysfs=sysfs if sysfs is not None else dev.parent / "no-sys",
        dev=dev,
        usb_backend=kw.get("usb_backend", no_libusb),
    )


async def test_pong_shown_for_the_reader_only(
    sim: SimulatedCardReader, ptys: Ptys, dev: Path
) -> None:
    silent = ptys.silent()
    noisy = ptys.answering(lambda _: GARBAGE)
    echo = ptys.answering(lambda data: data)
    busy, busy_master = ptys.busy()
    ports = [silent, noisy, sim.port, echo, busy]

    report = await survey(host_with(ports, dev), None, timeout_s=TIMEOUT_S)

    status = {p.entry.port.device: p.probe for p in report.ports}
    assert [getattr(status[p], "status", None) for p in ports] == [
        "silent",
        "not_srl",
        "reader",
        "not_srl",
        "busy",
    ]
    reader = status[sim.port]
    assert reader is not None and reader.info is not None
    assert (reader.info.model, reader.info.firmware, reader.info.serial) == (
        "SR-7",
        "2.4.1",
        "R0001234",
    )
    assert sim.received == [srl.Ping()]
    # The held port was never written to: the lock failed before any byte went out.
    with pytest.raises(BlockingIOError):
        os.read(busy_master, 100)

    text = render_text(report)
    assert text.count("CARD READER") == 1
    lines = text.splitlines()
    at = lines.index(f"  {sim.port}  pseudo terminal")
    assert lines[at + 1] == "      CARD READER: SR-7, firmware 2.4.1, serial R0001234"
    assert "busy: held by another program (posd running?)" in text
    assert "echoes what it is sent" in text
    assert "not SRL/1 at 115200 baud" in text
    assert "no answer: not a byte came back" in text


# Run in a child without root's override of file modes: CI runs the suite as root.
PROBE_CHILD = """
import asyncio, sys
from drivers.card_reader.probe import probe_port

result = asyncio.run(probe_port(sys.argv[1], timeout_s=float(sys.argv[2])))
print(result.status)
print(result.detail)
"""


async def test_probe_reports_what_stops_it_opening(tmp_path: Path, ptys: Ptys) -> None:
    gone = await probe_port(str(tmp_path / "ttyACM9"), timeout_s=TIMEOUT_S)
    assert (gone.status, gone.info) == ("absent", None)
    locked = tmp_path / "locked"
    locked.write_bytes(b"")
    locked.chmod(0)
    child = await asyncio.to_thread(run_python, "-c", PROBE_CHILD, str(locked), str(TIMEOUT_S))
    assert child.returncode == 0, child
    status, detail = child.stdout.splitlines()
    assert status == "no_permission" and "dialout" in detail, child
    not_a_tty = tmp_path / "plain-file"
    not_a_tty.write_bytes(b"")
    odd = await probe_port(str(not_a_tty), timeout_s=TIMEOUT_S)
    assert odd.status == "error" and odd.detail.startswith("cannot open it")
    with pytest.raises(ValueError, match="timeout_s"):
        await probe_port(ptys.silent(), timeout_s=0)


async def test_reader_error_to_ping_is_reported(ptys: Ptys) -> None:
    device = SrlLink("device")

    def reply(data: bytes) -> bytes:
        device.receive_data(data, 0.0)
        for event in device.events():
            if isinstance(event, MessageReceived):
                device.send(srl.ReaderError(0x07, "tamper switch open"))
        return device.data_to_send(0.0)

    result = await probe_port(ptys.answering(reply), timeout_s=TIMEOUT_S)
    assert result.status == "error"
    assert result.detail == "SRL/1 reader answered ERROR 0x07: tamper switch open"


async def test_json_shape(
    sim: SimulatedCardReader,
    ptys: Ptys,
    dev: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (dev / "posd-reader").symlink_to(sim.port)
    silent = ptys.silent()
    config = write_config(tmp_path, card_reader={"port": "auto"})
    sysfs = write_sysfs(tmp_path / "sys")
    # The reader as a USB serial device: the 1a86:7523 of the sysfs tree.
    reader_port = entry(sim.port, "USB Serial", vid=0x1A86, pid=0x7523, manufacturer="QinHeng")
    host = replace(
        host_with([silent], dev, sysfs),
        serial_ports=lambda: [entry(silent), reader_port],
    )
    args = parse("-c", str(config), "--json", "--timeout", str(TIMEOUT_S))

    code = await devices_cli.devices(args, host=host, env={})

    assert code == os.EX_OK
    data = json.loads(capsys.readouterr().out)
    assert set(data) == {
        "serial_ports",
        "ping",
        "usb",
        "config",
        "config_note",
        "missing",
        "suggested_config",
        "udev",
        "problems",
    }
    assert data["ping"] == {"done": True, "baudrate": 115200, "timeout_s": TIMEOUT_S}
    ports = {p["device"]: p for p in data["serial_ports"]}
    assert ports[sim.port]["links"] == [str(dev / "posd-reader")]
    assert ports[sim.port]["probe"] == {
        "status": "reader",
        "detail": "SRL/1 card reader",
        "reader": {"model": "SR-7", "firmware": "2.4.1", "serial": "R0001234"},
    }
    assert ports[silent]["probe"]["status"] == "silent"
    assert ports[silent]["probe"]["reader"] is None
    assert ports[sim.port]["usb"] == {
        "vendor_id": "0x1a86",
        "product_id": "0x7523",
        "serial_number": None,
        "manufacturer": "QinHeng",
    }
    assert ports[silent]["usb"] is None
    assert set(ports[silent]) == {
        "device",
        "description",
        "driver",
        "by_id",
        "id_path",
        "usb",
        "links",
        "reader_candidate",
        "role",
        "probe",
    }
    assert data["usb"]["source"] == "sysfs" and data["usb"]["libusb"] is False
    assert "libusb-1.0-0" in data["usb"]["note"]
    usb = {d["vendor_id"] + ":" + d["product_id"]: d for d in data["usb"]["devices"]}
    assert usb["0x1a86:0x7523"]["serial_port"] == sim.port
    assert usb["0x05e0:0x1200"] == {
        "bus": 1,
        "address": 4,
        "vendor_id": "0x05e0",
        "product_id": "0x1200",
        "manufacturer": "Symbol Technologies",
        "product": "Symbol Bar Code Scanner",
        "serial_number": "S/N:1234",
        "known_scanner": "Zebra (Symbol)",
        "boot_keyboard": True,
        "scanner_interface": "boot-keyboard",
        "node": "/dev/bus/usb/001/004",
        "links": [],
        "interfaces": [
            {
                "number": 0,
                "class": "0x03",
                "subclass": "0x01",
                "protocol": "0x01",
                "endpoints": [{"address": "0x81", "direction": "in", "type": "interrupt"}],
                "driver": "usbhid",
                "scanner": "boot-keyboard",
            }
        ],
        "serial_port": None,
    }
    assert data["config"]["path"] == str(config)
    [check] = data["config"]["checks"]
    assert check["device"] == "card reader" and check["found"] is True
    assert "SR-7" in check["detail"] and str(dev / "posd-reader") in check["detail"]
    assert data["missing"] == []

    args.json = False
    assert await devices_cli.devices(args, host=host, env={}) == os.EX_OK
    text = capsys.readouterr().out
    assert f"      serial port {sim.port} (the CARD READER above)" in text


async def test_usb_from_sysfs_without_libusb(tmp_path: Path, dev: Path) -> None:
    sysfs = write_sysfs(tmp_path / "sys")
    report = await survey(host_with([], dev, sysfs), None, ping=False)

    assert report.usb.source == "sysfs" and not report.usb.libusb
    by_ids = {d.ids: d for d in report.usb.devices}
    # The entry with unreadable ids is left out; interfaces are not devices.
    assert list(by_ids) == ["1d6b:0002", "05e0:1200", "046d:c31c", "1a86:7523"]
    scanner = by_ids["05e0:1200"]
    assert (scanner.bus, scanner.address, scanner.serial_number) == (1, 4, "S/N:1234")
    assert scanner.known_scanner == "Zebra (Symbol)" and scanner.boot_keyboard
    assert by_ids["046d:c31c"].boot_keyboard and by_ids["046d:c31c"].known_scanner is None
    assert not by_ids["1a86:7523"].boot_keyboard

    text = render_text(report)
    assert "USB devices (from sysfs)" in text
    assert "note: libusb-1.0-0 is not installed; posd's USB scanner driver needs it" in text
    assert (
        "001:004  05e0:1200  Symbol Technologies Symbol Bar Code Scanner (serial S/N:1234)" in text
    )
    assert "QR SCANNER: Zebra (Symbol) (known-scanner table), in HID keyboard mode" in text
    assert "HID boot keyboard: a keyboard, or a scanner not in posd's table" in text


async def test_no_usb_listing_at_all(dev: Path) -> None:
    report = await survey(host_with([], dev), None, ping=False)
    assert report.usb.source == "none" and report.usb.devices == ()
    assert report.usb.note is not None and "libusb-1.0-0" in report.usb.note


async def test_scanner_needs_libusb(
    tmp_path: Path, dev: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The scanner is plugged in, but posd's driver cannot use it without libusb: 69."""
    config = write_config(tmp_path, card_reader={"port": "auto"}, qr_scanner={"kind": "usb-hid"})
    host = host_with([], dev, write_sysfs(tmp_path / "sys"))

    code = await devices_cli.devices(parse("-c", str(config)), host=host, env={})

    assert code == os.EX_UNAVAILABLE
    out, err = capsys.readouterr()
    assert "ok       QR scanner: qr_scanner.usb_vendor_id = auto, usb_product_id = auto" in out
    assert "           05e0:1200 Symbol Technologies Symbol Bar Code Scanner on bus 1" in out
    assert 'MISSING  libusb: qr_scanner.kind = "usb-hid"' in out
    assert "posd devices: libusb missing: libusb-1.0-0 is not installed" in err
    assert "posd devices: card reader missing: no serial port to look on" in err


async def test_usb_through_pyusb_backend(tmp_path: Path, dev: Path) -> None:
    backend = HidScannerBackend()
    for vendor, product, found in ((0x05E0, 0x1200, True), (0x05E0, 0x9999, False)):
        config = write_config(
            tmp_path,
            qr_scanner={
                "kind": "usb-hid",
                "usb_vendor_id": f"0x{vendor:04x}",
                "usb_product_id": f"0x{product:04x}",
            },
        )
        host = host_with([], dev, usb_backend=lambda: backend)
        report = await survey(host, load_config(config), ping=False)
        assert report.usb.source == "libusb" and report.usb.libusb
        [scanner] = report.usb.devices
        assert (scanner.manufacturer, scanner.product, scanner.serial_number) == (
            "Symbol Technologies",
            "Symbol Bar Code Scanner",
            "S/N:SIM0001",
        )
        assert scanner.boot_keyboard and scanner.known_scanner == "Zebra (Symbol)"
        [_, scanner_check] = report.checks
        assert scanner_check.found is found
        expected = "05e0:1200 Symbol Technologies" if found else "no USB device with these ids"
        assert expected in scanner_check.detail
    # Listing opened the device for its strings and let it go again.
    assert backend.calls.open_device == backend.calls.close_device > 0
    assert backend.claimed == set()


async def test_scanner_not_in_keyboard_mode_is_missing(tmp_path: Path, dev: Path) -> None:
    sysfs = write_sysfs(tmp_path / "sys")
    for intf in ("bInterfaceSubClass", "bInterfaceProtocol"):
        (sysfs / "bus/usb/devices/1-1/1-1:1.0" / intf).write_text("00\n")
    config = write_config(tmp_path, qr_scanner={"kind": "usb-hid"})
    report = await survey(host_with([], dev, sysfs), load_config(config), ping=False)
    scanner = [c for c in report.checks if c.device == "QR scanner"]
    assert [c.found for c in scanner] == [False]
    assert "has no interface posd reads a scanner through" in scanner[0].detail
    assert "not in HID keyboard mode: posd cannot read it" in render_text(report)


async def test_configured_reader_absent_exits_69(
    ptys: Ptys, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)  # card_reader.port names a path that is not there
    host = host_with([ptys.silent()], dev)

    code = await devices_cli.devices(
        parse("-c", str(config), "--timeout", str(TIMEOUT_S)), host=host, env={}
    )

    assert code == os.EX_UNAVAILABLE
    out, err = capsys.readouterr()
    missing = tmp_path / "no-reader"
    assert f'MISSING  card reader: card_reader.port = "{missing}"\n' in out
    assert f"           {missing} is not there: check the reader's cable and power" in out
    assert f"posd devices: card reader missing: {missing} is not there: check the reader" in err


async def test_auto_reader_none_answers_exits_69(
    ptys: Ptys, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, card_reader={"port": "auto", "baudrate": 9600})
    silent, noisy = ptys.silent(), ptys.answering(lambda _: GARBAGE)
    code = await devices_cli.devices(
        parse("-c", str(config), "--timeout", str(TIMEOUT_S)),
        host=host_with([silent, noisy], dev),
        env={},
    )
    assert code == os.EX_UNAVAILABLE
    err = capsys.readouterr().err
    assert f"no SRL/1 reader answered on {silent}, {noisy}" in err
    assert "card_reader.baudrate (9600)" in err


async def test_busy_configured_reader_is_not_missing(
    ptys: Ptys, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    busy, _ = ptys.busy()
    config = write_config(tmp_path, card_reader={"port": busy})
    code = await devices_cli.devices(
        parse("-c", str(config), "--timeout", str(TIMEOUT_S)), host=host_with([], dev), env={}
    )
    assert code == os.EX_OK
    out = capsys.readouterr().out
    # Not in the listing, but the configured port is PINGed (and found busy) all the same.
    assert f"  {busy}  not listed by the kernel; {busy}" in out
    assert f'?        card reader: card_reader.port = "{busy}"\n' in out
    assert f"           {busy}: held by another program (posd running?)" in out


async def test_no_ping_touches_no_port(
    sim: SimulatedCardReader, dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path, card_reader={"port": sim.port})
    code = await devices_cli.devices(
        parse("-c", str(config), "--no-ping"), host=host_with([sim.port], dev), env={}
    )
    assert code == os.EX_OK
    assert sim.received == []
    out = capsys.readouterr().out
    assert "Serial ports (not PINGed: --no-ping)" in out
    assert f"{sim.port} is there (not PINGed: --no-ping)" in out


async def test_serial_scanner_port_is_not_pinged(
    sim: SimulatedCardReader, ptys: Ptys, dev: Path, tmp_path: Path
) -> None:
    scanner = ptys.answering(lambda _: pytest.fail("posd devices wrote to the QR scanner"))
    config = load_config(
        write_config(
            tmp_path,
            card_reader={"port": "auto"},
            qr_scanner={"kind": "serial", "port": scanner},
        )
    )
    report = await survey(host_with([scanner, sim.port], dev), config, timeout_s=TIMEOUT_S)
    by_path = {p.entry.port.device: p for p in report.ports}
    assert by_path[scanner].probe is None and by_path[scanner].role is not None
    assert [(c.device, c.found) for c in report.checks] == [
        ("card reader", True),
        ("QR scanner", True),
    ]

    gone = replace_port(config, tmp_path / "ttyUSB7")
    report = await survey(host_with([sim.port], dev), gone, timeout_s=TIMEOUT_S)
    assert [(c.device, c.found) for c in report.checks] == [
        ("card reader", True),
        ("QR scanner", False),
    ]


def replace_port(config: Config, port: Path) -> Config:
    return replace(config, qr_scanner=replace(config.qr_scanner, port=str(port)))


async def test_config_problems_still_list_devices(
    dev: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[card_reader]\nbaudrate = 12\n")
    code = await devices_cli.devices(parse("-c", str(bad), "--no-ping"), host=host_with([], dev))
    assert code == os.EX_CONFIG
    out, err = capsys.readouterr()
    assert "Serial ports" in out and "configured devices not checked" in out
    assert "card_reader.baudrate" in err

    code = await devices_cli.devices(
        parse("--no-ping"), host=host_with([], dev), env={"POSD_CONFIG": str(tmp_path / "none")}
    )
    assert code == os.EX_NOINPUT
    assert "config file not found" in capsys.readouterr().err


async def test_without_a_config_it_only_lists(
    dev: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    default = tmp_path / "etc" / "posd.toml"  # where /etc/posd/posd.toml would be, absent
    monkeypatch.setattr(config_load, "DEFAULT_CONFIG", str(default))
    code = await devices_cli.devices(parse("--no-ping", "--json"), host=host_with([], dev), env={})
    assert code == os.EX_OK
    data = json.loads(capsys.readouterr().out)
    assert data["config"] is None
    assert data["config_note"] == f"no config at {default}; only listing"


@pytest.mark.parametrize("value", ["soon", "0", "-1", "31", "nan"])
def test_bad_timeout_is_a_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse("--timeout", value)
    assert exit_info.value.code == 2
    assert "--timeout" in capsys.readouterr().err


def test_host_serial_ports_mark_reader_candidates() -> None:
    """The machine's own ports (listed only, never opened here) keep serial_ports' choice."""
    entries = device_survey.host_serial_ports()
    assert all(isinstance(e, SerialPortEntry) for e in entries)
    assert all(e.candidate == e.port.reader_candidate for e in entries)


async def test_configured_reader_is_pinged_where_auto_would_not_look(
    sim: SimulatedCardReader, ptys: Ptys, dev: Path, tmp_path: Path
) -> None:
    """A reader on a UART of an odd name (/dev/ttyAMA0) is PINGed when the config names it;
    other ports of that kind are left alone."""
    other = ptys.answering(lambda _: pytest.fail("posd devices wrote to a non-candidate port"))
    listed = [replace(entry(p, "ttyAMA"), candidate=False) for p in (sim.port, other)]
    host = replace(host_with([], dev), serial_ports=lambda: listed)
    config = load_config(write_config(tmp_path, card_reader={"port": sim.port}))

    report = await survey(host, config, timeout_s=TIMEOUT_S)

    assert [p.probe.status if p.probe else None for p in report.ports] == ["reader", None]
    assert [(c.device, c.found) for c in report.checks] == [("card reader", True)]
    assert "      not PINGed (not a reader's kind of port)" in render_text(report)


async def test_port_is_free_when_the_probe_returns(sim: SimulatedCardReader) -> None:
    """Back to back: each probe has closed the port (and dropped its lock) before returning."""
    for _ in range(5):
        result = await probe_port(sim.port, timeout_s=TIMEOUT_S)
        assert result.status == "reader"
        with serial.Serial(sim.port, exclusive=True):
            pass
    assert sim.received == [srl.Ping()] * 5
    # Each PONG was ACKed (the last ACK may still be on its way), so none is repeated.
    assert sim.link.stats.acks_received >= 4
    assert sim.link.stats.retransmits == 0
