"""The USB HID scanner driver, unchanged, on the emulating pyusb backend."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
import usb.core
import usb.util

from drivers.qr_scanner import UsbQrScanner
from posd.sim import QrIssuer
from posd.sim.usb_hid_backend import HidScannerBackend
from protocols.hid_keyboard import MAX_CODE_CHARS, reports_for_text
from tests.helpers.components import Scans, running, wait_until


def scanner_on(
    backend: HidScannerBackend,
    on_scan: Callable[[str], None],
    vendor_id: int | None = None,
    product_id: int | None = None,
) -> UsbQrScanner:
    return UsbQrScanner(
        on_scan,
        vendor_id=vendor_id,
        product_id=product_id,
        backend=backend,
        read_timeout_ms=20,
        rescan_initial_s=0.01,
        rescan_max_s=0.05,
    )


async def test_a_scanned_token_arrives_through_on_scan() -> None:
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    token = QrIssuer().valid()
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        assert scanner.device == "05e0:1200 Zebra (Symbol)"
        backend.type_code(token)
        assert await scans.next() == token
        assert scanner.scans == 1


async def test_shifted_and_rolled_over_codes() -> None:
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        backend.type_code("AbC+/=xyz+QQ==", rollover=True, right_shift=True)
        backend.type_code("aa==", rollover=True)
        assert await scans.next() == "AbC+/=xyz+QQ=="
        assert await scans.next() == "aa=="


async def test_over_long_input_is_dropped_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        backend.type_code("A" * MAX_CODE_CHARS)
        assert await scans.next() == "A" * MAX_CODE_CHARS
        backend.type_code("B" * (MAX_CODE_CHARS + 1), rollover=True)
        backend.type_code("next")
        assert await scans.next() == "next"
        assert scanner.discarded == 1
        assert scanner.decoder.overflows == 1
    assert "ran past 2048 characters" in caplog.text


async def test_unplug_and_replug() -> None:
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        # Half a code, then the cable is pulled: the half is never delivered.
        backend.queue_reports(reports_for_text("half", enter=False))
        await wait_until(lambda: backend.pending_reports == 0, "the half code read")
        backend.unplug()
        await wait_until(lambda: scanner.state == "disconnected", "disconnected")
        backend.replug()
        await wait_until(lambda: scanner.state == "ready", "ready again")
        backend.type_code("whole")
        assert await scans.next() == "whole"
        assert scans.empty()


async def test_absent_at_start_then_plugged_in() -> None:
    backend, scans = HidScannerBackend(plugged=False), Scans()
    scanner = scanner_on(backend, scans)
    async with running(scanner):
        await wait_until(lambda: backend.calls.enumerate_devices >= 3, "three looks")
        assert scanner.state == "disconnected"
        backend.replug()
        await wait_until(lambda: scanner.state == "ready", "ready")


async def test_kernel_driver_detached_while_claimed_and_reattached_after() -> None:
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        during = (backend.kernel_driver_active, set(backend.claimed))
    assert during == (False, {0})
    assert (backend.kernel_driver_active, backend.claimed) == (True, set())
    assert backend.calls.detach_kernel_driver == 1
    assert backend.calls.attach_kernel_driver == 1
    assert backend.calls.release_interface == 1
    assert backend.calls.open_device == backend.calls.close_device == 1


async def test_configuration_is_not_set_again_when_already_active() -> None:
    backend = HidScannerBackend(configured=True)
    scanner = scanner_on(backend, Scans())
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
    assert backend.calls.set_configuration == 0


async def test_an_unconfigured_device_is_configured_once() -> None:
    backend = HidScannerBackend(configured=False, kernel_driver=False)
    scanner = scanner_on(backend, Scans())
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        assert backend.configuration == 1
    assert backend.calls.set_configuration == 1
    # No kernel driver was bound, so none was detached nor attached.
    assert backend.calls.detach_kernel_driver == backend.calls.attach_kernel_driver == 0
    assert not backend.kernel_driver_active


async def test_auto_takes_only_known_scanner_vendors() -> None:
    keyboard_chip = HidScannerBackend(vendor_id=0x1A86, product_id=0xE026)
    scanner = scanner_on(keyboard_chip, Scans())
    async with running(scanner):
        await wait_until(lambda: keyboard_chip.calls.enumerate_devices >= 3, "three looks")
        assert scanner.state == "disconnected"
    assert keyboard_chip.calls.open_device == 0
    assert keyboard_chip.kernel_driver_active


async def test_configured_ids_select_the_device() -> None:
    backend, scans = HidScannerBackend(vendor_id=0x1A86, product_id=0xE026), Scans()
    scanner = scanner_on(backend, scans, vendor_id=0x1A86, product_id=0xE026)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        assert scanner.device == "1a86:e026"
        backend.type_code("generic")
        assert await scans.next() == "generic"

    other = HidScannerBackend(vendor_id=0x1A86, product_id=0xE025)
    scanner = scanner_on(other, Scans(), vendor_id=0x1A86, product_id=0xE026)
    async with running(scanner):
        await wait_until(lambda: other.calls.enumerate_devices >= 3, "three looks")
        assert scanner.state == "disconnected"


def test_a_product_id_needs_a_vendor_id() -> None:
    with pytest.raises(ValueError, match="vendor id"):
        UsbQrScanner(Scans(), product_id=0x1200)


@pytest.mark.parametrize(
    ("error", "words"),
    [("access", "99-posd.rules"), ("busy", "another program"), ("io", "Input/output")],
)
async def test_a_device_that_cannot_be_opened_shows_error(error: str, words: str) -> None:
    backend = HidScannerBackend()
    backend.open_error = error
    scanner = scanner_on(backend, Scans())
    async with running(scanner):
        if error == "io":
            # EIO while opening is a device going away: disconnected, not error.
            await wait_until(lambda: backend.calls.open_device >= 2, "two tries")
            assert scanner.state == "disconnected"
            return
        await wait_until(lambda: scanner.state == "error", "error")
        assert scanner.last_error is not None and words in scanner.last_error
        backend.open_error = None
        await wait_until(lambda: scanner.state == "ready", "ready once fixed")
        assert scanner.last_error is None


async def test_a_failing_scan_handler_does_not_stop_the_scanner(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend, scans = HidScannerBackend(), Scans()
    failed: list[str] = []

    def on_scan(text: str) -> None:
        if not failed:
            failed.append(text)
            raise RuntimeError("the payment flow broke")
        scans(text)

    scanner = scanner_on(backend, on_scan)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        backend.type_code("first")
        backend.type_code("second")
        assert await scans.next() == "second"
    assert failed == ["first"]
    assert "the scan handler failed" in caplog.text


async def test_qr_text_never_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    backend, scans = HidScannerBackend(), Scans()
    scanner = scanner_on(backend, scans)
    issuer = QrIssuer()
    tokens = [issuer.valid(), issuer.expired(), issuer.bad_signature()]
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        for token in tokens:
            backend.type_code(token, rollover=True)
            assert await scans.next() == token
        backend.unplug()
        await wait_until(lambda: scanner.state == "disconnected", "disconnected")
    assert "read a code of" in caplog.text
    for token in tokens:
        for start in range(0, len(token) - 16, 16):
            assert token[start : start + 16] not in caplog.text


def test_the_backend_looks_like_a_scanner_to_pyusb() -> None:
    backend = HidScannerBackend()
    dev = usb.core.find(backend=backend, idVendor=0x05E0)
    assert dev is not None
    assert (dev.manufacturer, dev.product) == ("Symbol Technologies", "Symbol Bar Code Scanner")
    intf = dev.get_active_configuration()[(0, 0)]
    assert (intf.bInterfaceClass, intf.bInterfaceSubClass, intf.bInterfaceProtocol) == (3, 1, 1)
    assert intf[0].bEndpointAddress == 0x81
    with pytest.raises(usb.core.USBError) as busy:
        usb.util.claim_interface(dev, 0)  # the kernel's keyboard driver holds it
    assert busy.value.errno == 16
    dev.detach_kernel_driver(0)
    with pytest.raises(usb.core.USBTimeoutError):
        dev.read(0x81, 8, 1)
    backend.unplug()
    with pytest.raises(usb.core.USBError) as gone:
        dev.read(0x81, 8, 1)
    assert gone.value.errno == 19
    usb.util.dispose_resources(dev)


def _no_usb_library() -> bool:
    try:
        usb.core.find()
    except usb.core.NoBackendError:
        return True
    return False


@pytest.mark.skipif(not _no_usb_library(), reason="this machine has libusb: pyusb finds a backend")
async def test_without_libusb_the_scanner_shows_error() -> None:
    scanner = UsbQrScanner(Scans(), rescan_initial_s=0.01, rescan_max_s=0.05)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "error", "error")
    assert scanner.last_error is not None and "libusb-1.0-0" in scanner.last_error


async def test_a_keyboard_interface_without_boot_protocol_is_read() -> None:
    """A scanner whose keyboard interface declares no boot subclass, its only endpoint an
    interrupt IN, types its codes as a boot keyboard does."""
    backend, scans = HidScannerBackend(interface_subclass=0x00), Scans()
    scanner = scanner_on(backend, scans, vendor_id=0x05E0)
    async with running(scanner):
        await wait_until(lambda: scanner.state == "ready", "ready")
        backend.type_code("no-boot")
        assert await scans.next() == "no-boot"


@pytest.mark.parametrize(
    "endpoints",
    [((0x81, 0x03), (0x02, 0x03)), ((0x81, 0x03), (0x82, 0x03))],
    ids=["with an OUT endpoint", "two IN endpoints"],
)
async def test_other_shapes_of_non_boot_keyboard_are_not_taken(
    endpoints: tuple[tuple[int, int], ...],
) -> None:
    backend = HidScannerBackend(interface_subclass=0x00, endpoints=endpoints)
    scanner = scanner_on(backend, Scans(), vendor_id=0x05E0)
    async with running(scanner):
        await wait_until(lambda: backend.calls.enumerate_devices >= 2, "looked twice")
        assert scanner.state == "disconnected"
        assert backend.calls.claim_interface == 0
