"""What `posd devices` tells a technician to do: drivers and by-id names, the config lines and
udev lines for what it found, permission problems with their fixes. On a sysfs tree, /dev and
/etc of the test's own, the simulated reader on a real pty behind a ttyUSB0 name, and the
emulating pyusb backend for the scanner."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from drivers.card_reader import ProbeResult
from drivers.serial_ports import SerialPort
from posd.cli import devices as devices_cli
from posd.cli.device_access import UNIT_GROUPS
from posd.cli.device_advice import advise
from posd.cli.device_survey import Host, SerialPortEntry, survey
from posd.cli.udev_local import LOCAL_RULES
from posd.config import load as config_load
from posd.sim import SimulatedCardReader
from posd.sim.usb_hid_backend import HidScannerBackend
from tests.helpers.configs import write_config
from tests.helpers.sysfs import FakeSysfs, Interface
from tests.systemd.udev_lint import check_local_line

TIMEOUT_S = 0.4
FTDI_BY_ID = "usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0"
ID_PATH = "pci-0000:00:14.0-usb-0:3:1.0"


@dataclass
class Box:
    """A POS box as the test lays it out: sysfs, /dev, /etc, udev's database."""

    root: Path
    sysfs: FakeSysfs
    dev: Path
    etc: Path
    udev_db: Path
    reader: SimulatedCardReader

    def host(self, ports: list[SerialPortEntry], backend: Any = None, **kw: Any) -> Host:
        return Host(
            serial_ports=lambda: ports,
            sysfs=self.sysfs.root,
            dev=self.dev,
            # No backend: libusb there, no USB device plugged in.
            usb_backend=lambda: backend or HidScannerBackend(plugged=False),
            udev_db=self.udev_db,
            etc=self.etc,
            uid=kw.get("uid", lambda: 0),
            groups=kw.get("groups", lambda: [0]),
        )

    def accounts(self, *, posd_groups: str, tech_groups: str = "") -> None:
        """passwd and group: root, posd (998) and tech (1000)."""
        (self.etc / "passwd").write_text(
            "root:x:0:0:root:/root:/bin/bash\n"
            "posd:x:998:998:posd:/var/lib/posd:/usr/sbin/nologin\n"
            "tech:x:1000:1000:Tech:/home/tech:/bin/bash\n"
        )
        members = {
            g: ",".join(u for u, gs in (("posd", posd_groups), ("tech", tech_groups)) if g in gs)
            for g in ("dialout", "plugdev", "audio")
        }
        (self.etc / "group").write_text(
            f"root:x:0:\ndialout:x:20:{members['dialout']}\naudio:x:29:{members['audio']}\n"
            f"plugdev:x:46:{members['plugdev']}\nposd:x:998:\ntech:x:1000:\n"
        )

    def ftdi_reader(self) -> SerialPortEntry:
        """The simulated reader behind an FTDI FT232R (0403:6001, serial A10K3XYZ)."""
        self.sysfs.usb_device(
            "1-3", 0x0403, 0x6001, devnum=5, manufacturer="FTDI", product="FT232R USB UART",
            serial="A10K3XYZ", interfaces=[Interface(0xFF, 0xFF, 0xFF, ((0x81, 0x02),))],
        )  # fmt: skip
        self.sysfs.usb_serial_tty("ttyUSB0", "1-3", driver="ftdi_sio", dev="188:0")
        (self.dev / "serial" / "by-id").mkdir(parents=True, exist_ok=True)
        (self.dev / "serial" / "by-id" / FTDI_BY_ID).symlink_to("../../ttyUSB0")
        port = SerialPort(self.reader.port, "FT232R USB UART", 0x0403, 0x6001, "A10K3XYZ")
        return SerialPortEntry(port, "FTDI", True)

    def ch340_reader(self, *, udev_db: bool) -> SerialPortEntry:
        """The simulated reader behind a CH340 (1a86:7523), which has no serial number."""
        self.sysfs.usb_device(
            "1-3", 0x1A86, 0x7523, devnum=5, product="USB Serial",
            interfaces=[Interface(0xFF, 0x01, 0x02, ((0x82, 0x02),))],
        )  # fmt: skip
        self.sysfs.usb_serial_tty("ttyUSB0", "1-3", driver="ch341", dev="188:0")
        if udev_db:
            (self.udev_db / "c188:0").write_text(f"E:ID_PATH={ID_PATH}\nE:ID_MODEL_ID=7523\n")
        port = SerialPort(self.reader.port, "USB Serial", 0x1A86, 0x7523, None)
        return SerialPortEntry(port, None, True)

    def usb_node(self, bus: int, address: int, mode: int) -> Path:
        node = self.dev / "bus" / "usb" / f"{bus:03d}" / f"{address:03d}"
        node.parent.mkdir(parents=True, exist_ok=True)
        node.touch()
        node.chmod(mode)
        return node


@pytest.fixture
async def box(tmp_path: Path) -> AsyncIterator[Box]:
    dev, etc, udev_db = tmp_path / "dev", tmp_path / "etc", tmp_path / "udev-data"
    for d in (dev, etc, udev_db):
        d.mkdir()
    async with SimulatedCardReader(
        model="SR-7", firmware="2.4.1", serial="R0001234", link=dev / "ttyUSB0"
    ) as reader:
        # Open to all, so that only what a test sets up stands in posd's way.
        os.chmod(reader.port, 0o666)  # through the link, to the pty
        yield Box(tmp_path, FakeSysfs(tmp_path / "sys"), dev, etc, udev_db, reader)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="posd devices")
    devices_cli.add_arguments(parser)
    return parser.parse_args(["--timeout", str(TIMEOUT_S), *argv])


def scanner_backend(**kw: Any) -> HidScannerBackend:
    """A budget scanner on QinHeng's ids, in keyboard mode without boot protocol."""
    return HidScannerBackend(
        vendor_id=0x1A86,
        product_id=0xE026,
        manufacturer="WCH",
        product="Barcode Scanner",
        serial=kw.pop("serial", "2024091301"),
        interface_subclass=kw.pop("interface_subclass", 0x00),
        **kw,
    )


async def test_reader_behind_a_bridge_chip_and_an_unknown_scanner(
    box: Box, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The technician's first run on a fresh box: everything found, nothing pinned yet."""
    monkeypatch.setattr(config_load, "DEFAULT_CONFIG", str(box.etc / "posd" / "posd.toml"))
    box.accounts(posd_groups="plugdev audio", tech_groups="plugdev")
    ports = [box.ftdi_reader()]
    box.usb_node(1, 2, 0o664)  # the scanner's node as the kernel makes it: root's, 0664
    host = box.host(ports, scanner_backend(), uid=lambda: 1000, groups=lambda: [1000, 46])

    assert await devices_cli.devices(parse(), host=host, env={}) == os.EX_OK
    out = capsys.readouterr().out
    lines = out.splitlines()
    at = lines.index(f"  {box.reader.port}  FT232R USB UART [0403:6001, serial A10K3XYZ, FTDI]")
    assert lines[at + 1 : at + 4] == [
        "      driver ftdi_sio",
        f"      <- {box.dev}/serial/by-id/{FTDI_BY_ID}",
        "      CARD READER: SR-7, firmware 2.4.1, serial R0001234",
    ]
    assert "  001:002  1a86:e026  WCH Barcode Scanner (serial 2024091301)" in lines
    assert (
        "      HID keyboard interface, one interrupt IN endpoint, no boot protocol: likely a QR "
        "scanner not in posd's table" in lines
    )
    config = lines[
        lines.index("Suggested config (in the config file; `posd config check` after)") :
    ]
    assert config[1:8] == [
        "  [card_reader]",
        f'  port = "{box.dev}/serial/by-id/{FTDI_BY_ID}"',
        "",
        "  [qr_scanner]",
        '  kind = "usb-hid"',
        '  usb_vendor_id = "0x1a86"',
        '  usb_product_id = "0xe026"',
    ]
    assert "is not in posd's known-scanner table" in out
    reader_line = (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="0403", ATTRS{idProduct}=="6001", '
        'ATTRS{serial}=="A10K3XYZ", ENV{POSD_DEVICE}="reader"'
    )
    scanner_line = (
        'SUBSYSTEM=="usb|hidraw", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="e026", '
        'ATTRS{serial}=="2024091301", ENV{POSD_DEVICE}="scanner"'
    )
    assert f"    {reader_line}" in lines and f"    {scanner_line}" in lines
    assert check_local_line(reader_line) == [] and check_local_line(scanner_line) == []
    assert f"udev: pin each device with its line in {LOCAL_RULES}" in lines
    problems = lines[lines.index("Problems") + 1 :]
    assert problems[:2] == [
        f"  user posd cannot open the QR scanner's USB device, {box.dev}/bus/usb/001/002 "
        f"({_owner(box.dev / 'bus/usb/001/002')} 0664), even with the groups its unit gives it",
        f"    fix: add the udev line for it above to {LOCAL_RULES}, then udevadm control "
        "--reload && udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb "
        "--subsystem-match=hidraw",
    ]
    assert problems[2:6] == [
        "  user posd is not in group dialout, which owns the serial ports (card reader, serial "
        "scanner)",
        "    fix: usermod -aG dialout posd",
        "  you (tech) are not in group dialout: posd devices cannot open serial ports to PING a "
        "reader",
        "    fix: sudo usermod -aG dialout tech, then log out and in again (or run `sudo posd "
        "devices`)",
    ]
    assert len(problems) == 6  # the reader's port is posd's to open


def _owner(path: Path) -> str:
    st = path.stat()
    user = "root" if st.st_uid == 0 else str(st.st_uid)
    group = "root" if st.st_gid == 0 else str(st.st_gid)
    return f"{user}:{group}"


async def test_json_carries_the_advice(box: Box, capsys: pytest.CaptureFixture[str]) -> None:
    box.accounts(posd_groups="dialout plugdev audio")
    host = box.host([box.ftdi_reader()], scanner_backend())
    config = write_config(box.root, card_reader={"port": "auto"}, qr_scanner={"kind": "usb-hid"})

    assert await devices_cli.devices(parse("-c", str(config), "--json"), host=host, env={}) == 69
    data = json.loads(capsys.readouterr().out)
    [port] = data["serial_ports"]
    assert (port["driver"], port["by_id"]) == ("ftdi_sio", [f"{box.dev}/serial/by-id/{FTDI_BY_ID}"])
    [scanner] = data["usb"]["devices"]
    assert (scanner["scanner_interface"], scanner["known_scanner"]) == ("keyboard", None)
    assert data["suggested_config"]["lines"][-3:] == [
        'kind = "usb-hid"',
        'usb_vendor_id = "0x1a86"',
        'usb_product_id = "0xe026"',
    ]
    assert [u["device"] for u in data["udev"]["lines"]] == [
        f"card reader on {box.reader.port}",
        "QR scanner 1a86:e026",
    ]
    assert all(check_local_line(u["line"]) == [] for u in data["udev"]["lines"])
    assert data["udev"]["file"] == LOCAL_RULES and data["udev"]["then"].startswith("udevadm")
    # auto takes known scanners only: the unknown one is not taken, so it is missing.
    assert data["missing"] == ["QR scanner"]
    assert data["problems"] == []


async def test_a_reader_without_a_serial_number_is_pinned_by_its_usb_port(box: Box) -> None:
    box.accounts(posd_groups="dialout plugdev")
    report = await survey(box.host([box.ch340_reader(udev_db=True)]), None, timeout_s=TIMEOUT_S)
    [line] = advise(report, box.host([])).udev
    assert line.line == (
        'SUBSYSTEM=="tty", ATTRS{idVendor}=="1a86", ATTRS{idProduct}=="7523", '
        f'ENV{{ID_PATH}}=="{ID_PATH}", ENV{{POSD_DEVICE}}="reader"'
    )
    assert line.note is not None and "stops matching if the cable moves" in line.note
    assert check_local_line(line.line) == []
    advice = advise(report, box.host([]))
    # No by-id name (udev would make one from a serial number): the path, with a warning.
    assert advice.config == ("[card_reader]", f'port = "{box.reader.port}"')
    assert any("has no /dev/serial/by-id name" in n for n in advice.notes)


async def test_without_udev_data_it_says_how_to_get_the_usb_port(box: Box) -> None:
    box.accounts(posd_groups="dialout plugdev")
    report = await survey(box.host([box.ch340_reader(udev_db=False)]), None, timeout_s=TIMEOUT_S)
    [line] = advise(report, box.host([])).udev
    assert line.line is None and line.note is not None
    assert f"udevadm info -q property -n {box.reader.port} | grep ID_PATH=" in line.note


async def test_a_pinned_reader_and_scanner_need_no_line(box: Box) -> None:
    box.accounts(posd_groups="dialout plugdev")
    (box.dev / "posd-reader").symlink_to(box.reader.port)
    node = box.usb_node(1, 2, 0o660)
    (box.dev / "posd-scanner").symlink_to(node)
    backend = HidScannerBackend()  # a known Zebra scanner, in boot keyboard mode
    report = await survey(box.host([box.ftdi_reader()], backend), None, timeout_s=TIMEOUT_S)
    advice = advise(report, box.host([]))
    assert advice.udev == ()
    assert advice.config[:2] == ("[card_reader]", 'port = "auto"')
    assert advice.config[-2:] == ('usb_vendor_id = "0x05e0"', 'usb_product_id = "0x1200"')


@pytest.mark.parametrize(
    "endpoints",
    [((0x81, 0x03), (0x02, 0x03)), ((0x81, 0x03), (0x82, 0x03))],
    ids=["with an OUT endpoint", "two IN endpoints"],
)
async def test_other_keyboard_shapes_are_not_taken_for_scanners(
    box: Box, endpoints: tuple[tuple[int, int], ...]
) -> None:
    box.accounts(posd_groups="dialout plugdev")
    backend = scanner_backend(endpoints=endpoints)
    report = await survey(box.host([], backend), None, ping=False)
    [device] = report.usb.devices
    assert device.scanner_interface is None
    advice = advise(report, box.host([]))
    assert advice.config == () and advice.udev == ()


async def test_memberships_of_a_session_older_than_the_group_file(box: Box) -> None:
    box.accounts(posd_groups="dialout plugdev audio", tech_groups="dialout plugdev")
    report = await survey(box.host([]), None, ping=False)
    advice = advise(report, box.host([], uid=lambda: 1000, groups=lambda: [1000, 20]))
    assert [(p.what.split(";")[0], p.fix) for p in advice.problems] == [
        (
            "you (tech) were added to group plugdev after logging in",
            "log out and in again (or run `newgrp plugdev`)",
        )
    ]


async def test_no_posd_user_and_a_port_this_user_may_not_open(box: Box) -> None:
    (box.etc / "passwd").write_text("tech:x:1000:1000::/home/tech:/bin/bash\n")
    (box.etc / "group").write_text("dialout:x:20:\nplugdev:x:46:tech\ntech:x:1000:\n")
    entry = SerialPortEntry(SerialPort(box.reader.port, "USB Serial", None, None, None))
    report = await survey(box.host([entry]), None, ping=False)
    # What a probe run without the port's group reports (test_devices runs one for real).
    denied = ProbeResult(box.reader.port, "no_permission", "no permission to open it")
    report = replace(report, ports=(replace(report.ports[0], probe=denied),))
    advice = advise(report, box.host([], uid=lambda: 1000, groups=lambda: [1000, 46]))
    what = [p.what for p in advice.problems]
    assert what[0].startswith(f"you (tech) may not open {box.reader.port} (")
    assert "sudo usermod -aG" in advice.problems[0].fix
    assert what[1] == "no user posd on this box: posd is not installed"
    assert advice.problems[1].fix.startswith("systemd/install.sh")
    assert what[2].startswith("you (tech) are not in group dialout")


def test_unit_groups_are_the_units() -> None:
    unit = (Path(__file__).parents[3] / "systemd" / "posd.service").read_text()
    [line] = [x for x in unit.splitlines() if x.startswith("SupplementaryGroups=")]
    assert tuple(line.split("=", 1)[1].split()) == UNIT_GROUPS
