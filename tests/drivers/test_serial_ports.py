from __future__ import annotations

from pathlib import Path

from drivers.serial_ports import SerialPort, list_serial_ports, reader_candidates, without_ports


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
