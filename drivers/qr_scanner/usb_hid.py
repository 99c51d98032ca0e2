"""QR scanners on USB in HID keyboard mode, read through pyusb (libusb 1.0).

The scanner types each code as a keyboard would, ending it with Enter. posd takes the
device away from the kernel's keyboard driver, so scanned tokens never land in whatever
window has focus, and decodes the keyboard reports itself. The interface it reads is the
one `hid_interface` names: a boot keyboard, else a keyboard interface with a lone interrupt IN.

pyusb blocks, so each session (find, claim, read, release) runs in its own worker thread
that hands reports to the event loop; reads time out every `read_timeout_ms` so a stop is
prompt. Unplugging (ENODEV, EIO) shows as `disconnected` and the device is looked for
again with a doubling delay; a device that is there but cannot be used (permissions,
another program holding it, no libusb) shows as `error`, with the reason in `last_error`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import usb.core
import usb.util

from drivers.qr_scanner.base import ScannerBase
from drivers.qr_scanner.hid_interface import interrupt_in, scanner_interface
from drivers.qr_scanner.known_vendors import known_scanner
from protocols.hid_keyboard import HidKeyboardDecoder

__all__ = ["UsbQrScanner"]

log = logging.getLogger(__package__)

_GONE = frozenset({errno.ENODEV, errno.EIO})


@dataclass(frozen=True, slots=True)
class _Target:
    """The keyboard interface of a device and its interrupt IN endpoint."""

    label: str
    configuration: int
    interface: int
    endpoint: int
    packet_size: int


def _gone(exc: usb.core.USBError) -> bool:
    return exc.errno in _GONE


def _describe(exc: usb.core.USBError, label: str) -> str:
    if exc.errno == errno.EACCES:
        return (
            f"no permission to use USB device {label}: install systemd/99-posd.rules "
            "(group plugdev), then replug the scanner"
        )
    if exc.errno == errno.EBUSY:
        return f"USB device {label} is held by another program; stop it and replug the scanner"
    return f"USB device {label}: {exc.strerror or exc}"


def _label(dev: Any) -> str:
    ids = f"{dev.idVendor:04x}:{dev.idProduct:04x}"
    row = known_scanner(dev.idVendor, dev.idProduct)
    return f"{ids} {row.name}" if row else ids


def _keyboard_target(dev: Any) -> _Target | None:
    """The interface to read: a boot keyboard first, else a keyboard interface of the shape
    hid_interface accepts; its first interrupt IN endpoint."""
    found: dict[str, _Target] = {}
    for cfg in dev:
        for intf in cfg:
            if intf.bAlternateSetting != 0:
                continue
            endpoints = [(ep.bEndpointAddress, ep.bmAttributes, ep.wMaxPacketSize) for ep in intf]
            kind = scanner_interface(
                intf.bInterfaceClass,
                intf.bInterfaceSubClass,
                intf.bInterfaceProtocol,
                [(address, attributes) for address, attributes, _ in endpoints],
            )
            if kind is None or kind in found:
                continue
            address, _, size = next(ep for ep in endpoints if interrupt_in(ep[:2]))
            found[kind] = _Target(
                _label(dev), cfg.bConfigurationValue, intf.bInterfaceNumber, address, size
            )
    return found.get("boot-keyboard") or found.get("keyboard")


class UsbQrScanner(ScannerBase):
    """The USB HID scanner component: `on_scan(text)` for each code read."""

    kind = "usb-hid"

    def __init__(
        self,
        on_scan: Callable[[str], None],
        *,
        vendor_id: int | None = None,
        product_id: int | None = None,
        backend: Any = None,
        read_timeout_ms: int = 250,
        rescan_initial_s: float = 0.5,
        rescan_max_s: float = 5.0,
    ) -> None:
        """`vendor_id` None means any device of the known-scanner table (known_vendors)."""
        super().__init__(on_scan, rescan_initial_s=rescan_initial_s, rescan_max_s=rescan_max_s)
        if product_id is not None and vendor_id is None:
            raise ValueError("a USB product id needs its vendor id")
        self.vendor_id = vendor_id
        self.product_id = product_id
        self.backend = backend
        self.read_timeout_ms = read_timeout_ms
        self.decoder = HidKeyboardDecoder()

    async def _session(self) -> None:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        stop = threading.Event()
        thread = threading.Thread(
            target=self._thread_main, args=(loop, done, stop), name="qr-scanner-usb", daemon=True
        )
        thread.start()
        try:
            await asyncio.shield(done)
        finally:
            stop.set()
            # Wait for the thread to release the device, so a new session (or a replacement
            # component after a config reload) can claim it.
            await asyncio.to_thread(thread.join)

    def _thread_main(
        self,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[None],
        stop: threading.Event,
    ) -> None:
        def post(fn: Callable[..., object], *args: object) -> None:
            # RuntimeError: the loop is closed, nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

        def settle(exc: BaseException | None) -> None:
            if done.done():
                return
            if exc is not None:
                done.set_exception(exc)
            else:
                done.set_result(None)

        try:
            self._serve(stop, post)
        except BaseException as exc:
            post(settle, exc)
        else:
            post(settle, None)

    def _find(self) -> tuple[Any, _Target] | None:
        vendor, product = self.vendor_id, self.product_id

        def wanted(dev: Any) -> bool:
            if vendor is None:
                return known_scanner(dev.idVendor, dev.idProduct) is not None
            return bool(dev.idVendor == vendor and product in (None, dev.idProduct))

        for dev in usb.core.find(find_all=True, backend=self.backend, custom_match=wanted):
            target = _keyboard_target(dev)
            if target is not None:
                return dev, target
        return None

    def _serve(self, stop: threading.Event, post: Callable[..., None]) -> None:
        """One session, in the worker thread: find, claim, read until unplug or stop."""
        try:
            found = self._find()
        except usb.core.NoBackendError:
            post(self._set_error, "libusb 1.0 is not installed (apt install libusb-1.0-0)")
            return
        except usb.core.USBError as exc:
            post(self._set_error, f"cannot list USB devices: {exc.strerror or exc}")
            return
        if found is None:
            post(self._set_disconnected)
            return
        dev, target = found
        try:
            detached = self._claim(dev, target)
        except usb.core.USBError as exc:
            usb.util.dispose_resources(dev)
            self._post_failure(post, exc, target.label)
            return
        post(self._set_ready_usb, target.label)
        try:
            while not stop.is_set():
                try:
                    data = dev.read(target.endpoint, target.packet_size, self.read_timeout_ms)
                except usb.core.USBTimeoutError:
                    continue
                except usb.core.USBError as exc:
                    self._post_failure(post, exc, target.label)
                    return
                post(self._on_report, bytes(data))
        finally:
            self._release(dev, target, detached)

    def _post_failure(self, post: Callable[..., None], exc: usb.core.USBError, label: str) -> None:
        """A device that went away is disconnected; any other failure is an error to show."""
        if _gone(exc):
            post(self._set_disconnected)
        else:
            post(self._set_error, _describe(exc, label))

    @staticmethod
    def _claim(dev: Any, target: _Target) -> bool:
        """Make the interface ours; True when the kernel's driver was detached to do so."""
        try:
            active = dev.get_active_configuration().bConfigurationValue
        except usb.core.USBError as exc:
            if exc.errno is not None:
                raise
            active = None  # pyusb's "Configuration not set": the device is unconfigured
        # SET_CONFIGURATION resets the device's interfaces: only when it is not already so.
        if active != target.configuration:
            dev.set_configuration(target.configuration)
        detached = False
        if dev.is_kernel_driver_active(target.interface):
            dev.detach_kernel_driver(target.interface)
            detached = True
        try:
            usb.util.claim_interface(dev, target.interface)
        except usb.core.USBError:
            if detached:
                UsbQrScanner._reattach(dev, target)
            raise
        return detached

    @staticmethod
    def _reattach(dev: Any, target: _Target) -> None:
        try:
            dev.attach_kernel_driver(target.interface)
        except usb.core.USBError as exc:
            # Unplugged: the kernel binds its driver again on the next plug-in anyway.
            log.debug("kernel driver not reattached to %s: %s", target.label, exc.strerror)

    @staticmethod
    def _release(dev: Any, target: _Target, detached: bool) -> None:
        # A USBError here means the device is gone, and its claim with it.
        with contextlib.suppress(usb.core.USBError):
            usb.util.release_interface(dev, target.interface)
        if detached:
            UsbQrScanner._reattach(dev, target)
        usb.util.dispose_resources(dev)

    def _set_ready_usb(self, label: str) -> None:
        self.decoder.reset()
        self._set_ready(label)

    def _on_report(self, report: bytes) -> None:
        overflows = self.decoder.overflows
        codes = self.decoder.feed(report)
        if self.decoder.overflows != overflows:
            self._overlong(self.decoder.max_chars)
        for code in codes:
            self._deliver(code)
