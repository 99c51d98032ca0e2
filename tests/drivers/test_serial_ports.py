from __future__ import annotations

from pathlib import Path

from drivers.serial_ports import (
    PortFacts,
    SerialPort,
    kernel_driver,
    list_serial_ports,
    port_facts,
    reader_candidates,
    udev_properties,
    without_ports,
)
from tests.helpers.sysfs import FakeSysfs, Interface


def port(device: str, vid: int | None = None) -> SerialPort:
    return SerialPort(device, "serial port", vid, 0x1234 if vid else None, None)


PORTS = [
    port("/dev/ttyS10"),
    port("/dev/ttyAMA0"),
    port("/dev/ttyUSB1", 0x0403),
    port("/dev/ttyS2"),
    port("/dev/ttyACM0", 0x2341),
    port("/dev/ttyUSB0", 0x0403),
]


def test_candidates_usb_cdc_first_then_adapters_then_uarts(tmp_path: Path) -> None:
    assert reader_candidates(str(tmp_path / "absent"), lambda: PORTS) == [
        "/dev/ttyACM0",
        "/dev/ttyUSB0",
        "/dev/ttyUSB1",
        "/dev/ttyS2",
        "/dev/ttyS10",
    ]


def test_the_stable_udev_name_alone_when_present(tmp_path: Path) -> None:
    stable = tmp_path / "posd-reader"
    stable.touch()
    assert reader_candidates(str(stable), lambda: PORTS) == [str(stable)]


def test_describe_names_usb_ids() -> None:
    assert port("/dev/ttyACM0", 0x2341).describe() == "/dev/ttyACM0: serial port [2341:1234]"
    assert port("/dev/ttyS0").describe() == "/dev/ttyS0: serial port"
    assert not port("/dev/ttyAMA0").reader_candidate


def test_listing_the_host_works() -> None:
    # Whatever this machine has, the listing is well-formed and ordered.
    ports = list_serial_ports()
    assert all(p.device.startswith("/dev/") for p in ports)
    candidates = [p.device for p in ports if p.reader_candidate]
    assert reader_candidates("/nonexistent/posd-reader") == candidates


def test_without_ports_compares_where_symlinks_lead(tmp_path: Path) -> None:
    tty = tmp_path / "ttyACM1"
    tty.touch()
    scanner = tmp_path / "posd-scanner"
    scanner.symlink_to(tty)
    other = str(tmp_path / "ttyACM0")
    assert without_ports([other, str(tty)], [str(scanner)]) == [other]
    assert without_ports([str(scanner), other], [str(tty)]) == [other]
    assert without_ports([other, str(tty)], []) == [other, str(tty)]


def test_port_facts_from_sysfs_dev_and_the_udev_database(tmp_path: Path) -> None:
    sysfs = FakeSysfs(tmp_path / "sys")
    sysfs.usb_device(
        "1-3", 0x0403, 0x6001, devnum=5, serial="A10K3XYZ",
        interfaces=[Interface(0xFF, 0xFF, 0xFF, ((0x81, 0x02), (0x02, 0x02)))],
    )  # fmt: skip
    sysfs.usb_serial_tty("ttyUSB0", "1-3", driver="ftdi_sio", dev="188:0")
    sysfs.usb_device("1-4", 0x0ACD, 0x0300, devnum=6, interfaces=[Interface(0x02, 0x02, 0x01)])
    sysfs.cdc_acm_tty("ttyACM0", "1-4", dev="166:0")
    sysfs.uart_tty("ttyS0", dev="4:64")
    dev = tmp_path / "dev"
    by_id = dev / "serial" / "by-id"
    by_id.mkdir(parents=True)
    for name in ("ttyUSB0", "ttyACM0", "ttyS0"):
        (dev / name).touch()
    link = by_id / "usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0"
    link.symlink_to("../../ttyUSB0")
    udev_db = tmp_path / "udev-data"
    udev_db.mkdir()
    (udev_db / "c188:0").write_text(
        "S:serial/by-id/usb-FTDI_FT232R_USB_UART_A10K3XYZ-if00-port0\n"
        "I:1234\nE:ID_VENDOR_ID=0403\nE:ID_PATH=pci-0000:00:14.0-usb-0:3:1.0\nG:systemd\n"
    )

    def facts(name: str) -> PortFacts:
        return port_facts(str(dev / name), sysfs=sysfs.root, dev=dev, udev_db=udev_db)

    assert facts("ttyUSB0") == PortFacts("ftdi_sio", (str(link),), "pci-0000:00:14.0-usb-0:3:1.0")
    assert facts("ttyACM0") == PortFacts("cdc_acm", (), None)
    # Linux >= 6.5: past the serial core's "port" and "ctrl" to the UART's own driver.
    assert facts("ttyS0") == PortFacts("serial", (), None)
    assert udev_properties(str(dev / "ttyUSB0"), sysfs.root, udev_db)["ID_VENDOR_ID"] == "0403"
    # A pty: no sysfs device, no driver, no udev data.
    assert facts("ttyUSB9") == PortFacts(None, (), None)
    assert kernel_driver("/dev/pts/0", sysfs.root) is None
