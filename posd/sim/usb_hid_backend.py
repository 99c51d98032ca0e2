"""A pyusb backend that is a USB HID barcode scanner in keyboard mode.

It sits where libusb would: `usb.core.find(backend=HidScannerBackend())` sees one device
with one configuration, one boot keyboard interface and one interrupt IN endpoint (or, given
`interface_subclass`, `interface_protocol` and `endpoints`, another shape of HID interface), and
the driver's calls (configuration, kernel driver, claim, interrupt reads) behave as
libusb's do on Linux, errors and errno included. So the real driver runs unchanged in
tests and in `posd demo`. `type_code(text)` queues the reports a scanner sends for a
code; `unplug()`/`replug()` pull and reinsert the cable.

Thread-safe: the driver reads from a worker thread while tests type and unplug from the
event loop.
"""

from __future__ import annotations

import array
import errno
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import usb.backend
from usb.core import USBError, USBTimeoutError

from protocols.hid_keyboard import reports_for_text

__all__ = ["BackendCalls", "HidScannerBackend"]

# libusb error codes and the errno pyusb pairs them with (usb/backend/libusb1.py).
_LIBUSB = {
    "io": (-1, errno.EIO, "Input/output error"),
    "access": (-3, errno.EACCES, "Access denied (insufficient permissions)"),
    "no_device": (-4, errno.ENODEV, "No such device (it may have been disconnected)"),
    "not_found": (-5, errno.ENOENT, "Entity not found"),
    "busy": (-6, errno.EBUSY, "Resource busy"),
    "timeout": (-7, errno.ETIMEDOUT, "Operation timed out"),
    "overflow": (-8, errno.EOVERFLOW, "Overflow"),
    "pipe": (-9, errno.EPIPE, "Pipe error"),
}
_GET_DESCRIPTOR = 0x06
_STRING_DESCRIPTOR = 0x03
_LANGID_EN_US = 0x0409


def _error(kind: str) -> USBError:
    code, number, text = _LIBUSB[kind]
    if kind == "timeout":
        return USBTimeoutError(text, code, number)
    return USBError(text, code, number)


@dataclass(slots=True)
class _DeviceDescriptor:
    idVendor: int
    idProduct: int
    bus: int
    address: int
    bLength: int = 18
    bDescriptorType: int = 0x01
    bcdUSB: int = 0x0200
    bDeviceClass: int = 0
    bDeviceSubClass: int = 0
    bDeviceProtocol: int = 0
    bMaxPacketSize0: int = 64
    bcdDevice: int = 0x0100
    iManufacturer: int = 1
    iProduct: int = 2
    iSerialNumber: int = 3
    bNumConfigurations: int = 1
    port_number: int = 1
    port_numbers: tuple[int, ...] = (1,)
    speed: int = 2  # full speed, as scanners are


@dataclass(slots=True)
class _ConfigDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x02
    wTotalLength: int = 34
    bNumInterfaces: int = 1
    bConfigurationValue: int = 1
    iConfiguration: int = 0
    bmAttributes: int = 0xA0
    bMaxPower: int = 50
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _InterfaceDescriptor:
    bLength: int = 9
    bDescriptorType: int = 0x04
    bInterfaceNumber: int = 0
    bAlternateSetting: int = 0
    bNumEndpoints: int = 1
    bInterfaceClass: int = 0x03  # HID
    bInterfaceSubClass: int = 0x01  # boot interface
    bInterfaceProtocol: int = 0x01  # keyboard
    iInterface: int = 0
    # The HID class descriptor (bcdHID 1.11, one report descriptor of 63 bytes).
    extra_descriptors: list[int] = field(
        default_factory=lambda: [0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, 0x3F, 0x00]
    )


@dataclass(slots=True)
class _EndpointDescriptor:
    wMaxPacketSize: int
    bLength: int = 7
    bDescriptorType: int = 0x05
    bEndpointAddress: int = 0x81
    bmAttributes: int = 0x03  # interrupt
    bInterval: int = 10
    bRefresh: int = 0
    bSynchAddress: int = 0
    extra_descriptors: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Device:
    """What enumerate_devices yields: one plug-in of the scanner."""

    generation: int


@dataclass(slots=True)
class _Handle:
    device: _Device


@dataclass(slots=True)
class BackendCalls:
    """What the driver did to the device, for tests to check."""

    enumerate_devices: int = 0
    set_configuration: int = 0
    detach_kernel_driver: int = 0
    attach_kernel_driver: int = 0
    claim_interface: int = 0
    release_interface: int = 0
    open_device: int = 0
    close_device: int = 0


class HidScannerBackend(usb.backend.IBackend):  # type: ignore[misc]
    def __init__(
        self,
        *,
        vendor_id: int = 0x05E0,
        product_id: int = 0x1200,
        manufacturer: str = "Symbol Technologies",
        product: str = "Symbol Bar Code Scanner",
        serial: str = "S/N:SIM0001",
        configured: bool = True,
        kernel_driver: bool = True,
        packet_size: int = 8,
        plugged: bool = True,
        interface_subclass: int = 0x01,
        interface_protocol: int = 0x01,
        endpoints: tuple[tuple[int, int], ...] = ((0x81, 0x03),),
    ) -> None:
        """`endpoints`: (bEndpointAddress, bmAttributes) of each endpoint of the interface;
        reports are read from the first interrupt IN one."""
        super().__init__()
        self._interface = (interface_subclass, interface_protocol)
        self._endpoints = endpoints
        self._report_endpoint = next(
            (a for a, t in endpoints if a & 0x80 and t & 0x03 == 0x03), None
        )
        self.vendor_id = vendor_id
        self.product_id = product_id
        self._strings = {1: manufacturer, 2: product, 3: serial}
        self._configured_on_plug = configured
        self._kernel_driver_on_plug = kernel_driver
        self._packet_size = packet_size
        self.calls = BackendCalls()
        self._cond = threading.Condition()
        self._reports: deque[bytes] = deque()
        self._generation = 0
        self._plugged = False
        self._configuration = 0
        self.kernel_driver_active = False
        self.claimed: set[int] = set()
        self.open_error: str | None = None
        if plugged:
            self.replug()

    # ---- the scanner's side -----------------------------------------------------------

    def type_code(self, text: str, *, rollover: bool = False, right_shift: bool = False) -> None:
        """Queue the reports of scanning `text` (typed, then Enter)."""
        self.queue_reports(reports_for_text(text, rollover=rollover, right_shift=right_shift))

    def queue_reports(self, reports: Iterable[bytes]) -> None:
        with self._cond:
            self._reports.extend(bytes(r) for r in reports)
            self._cond.notify_all()

    @property
    def pending_reports(self) -> int:
        with self._cond:
            return len(self._reports)

    @property
    def plugged(self) -> bool:
        return self._plugged

    @property
    def configuration(self) -> int:
        """bConfigurationValue of the active configuration, 0 while unconfigured."""
        return self._configuration

    def unplug(self) -> None:
        with self._cond:
            self._plugged = False
            self._reports.clear()
            self.claimed.clear()
            self._cond.notify_all()

    def replug(self) -> None:
        """Plug in (again): a new device on a new address, as the kernel enumerates it."""
        with self._cond:
            self._generation += 1
            self._plugged = True
            self._reports.clear()
            self.claimed.clear()
            self._configuration = 1 if self._configured_on_plug else 0
            self.kernel_driver_active = self._kernel_driver_on_plug and self._configuration != 0
            self._cond.notify_all()

    # ---- descriptors ------------------------------------------------------------------

    def enumerate_devices(self) -> Iterator[_Device]:
        with self._cond:
            self.calls.enumerate_devices += 1
            devices = [_Device(self._generation)] if self._plugged else []
        return iter(devices)

    def get_parent(self, dev: _Device) -> None:
        return None

    def get_device_descriptor(self, dev: _Device) -> _DeviceDescriptor:
        return _DeviceDescriptor(self.vendor_id, self.product_id, bus=1, address=dev.generation + 1)

    def get_configuration_descriptor(self, dev: _Device, config: int) -> _ConfigDescriptor:
        if config != 0:
            raise IndexError(f"Invalid configuration index {config}")
        return _ConfigDescriptor()

    def get_interface_descriptor(
        self, dev: _Device, intf: int, alt: int, config: int
    ) -> _InterfaceDescriptor:
        self.get_configuration_descriptor(dev, config)
        if intf != 0:
            raise IndexError(f"Invalid interface index {intf}")
        if alt != 0:
            raise IndexError(f"Invalid alternate setting index {alt}")
        subclass, protocol = self._interface
        return _InterfaceDescriptor(
            bNumEndpoints=len(self._endpoints),
            bInterfaceSubClass=subclass,
            bInterfaceProtocol=protocol,
        )

    def get_endpoint_descriptor(
        self, dev: _Device, ep: int, intf: int, alt: int, config: int
    ) -> _EndpointDescriptor:
        self.get_interface_descriptor(dev, intf, alt, config)
        if not 0 <= ep < len(self._endpoints):
            raise IndexError(f"Invalid endpoint index {ep}")
        address, attributes = self._endpoints[ep]
        return _EndpointDescriptor(
            wMaxPacketSize=self._packet_size, bEndpointAddress=address, bmAttributes=attributes
        )

    # ---- the device handle ------------------------------------------------------------

    def _check(self, handle: _Handle) -> None:
        """ENODEV on a handle to a device that was unplugged (even if plugged in again)."""
        if not self._plugged or handle.device.generation != self._generation:
            raise _error("no_device")

    def open_device(self, dev: _Device) -> _Handle:
        with self._cond:
            self.calls.open_device += 1
            if self.open_error is not None:
                raise _error(self.open_error)
            handle = _Handle(dev)
            self._check(handle)
            return handle

    def close_device(self, dev_handle: _Handle) -> None:
        with self._cond:
            self.calls.close_device += 1

    def set_configuration(self, dev_handle: _Handle, config_value: int) -> None:
        with self._cond:
            self._check(dev_handle)
            self.calls.set_configuration += 1
            if self.kernel_driver_active or self.claimed:
                raise _error("busy")
            if config_value not in (0, 1):
                raise _error("not_found")
            self._configuration = config_value

    def get_configuration(self, dev_handle: _Handle) -> int:
        with self._cond:
            self._check(dev_handle)
            return self._configuration

    def set_interface_altsetting(self, dev_handle: _Handle, intf: int, altsetting: int) -> None:
        with self._cond:
            self._check(dev_handle)
            if intf not in self.claimed:
                raise _error("not_found")
            if altsetting != 0:
                raise _error("not_found")

    def claim_interface(self, dev_handle: _Handle, intf: int) -> None:
        with self._cond:
            self._check(dev_handle)
            self.calls.claim_interface += 1
            if self._configuration == 0 or intf != 0:
                raise _error("not_found")
            if self.kernel_driver_active:
                raise _error("busy")
            self.claimed.add(intf)

    def release_interface(self, dev_handle: _Handle, intf: int) -> None:
        with self._cond:
            self._check(dev_handle)
            self.calls.release_interface += 1
            if intf not in self.claimed:
                raise _error("not_found")
            self.claimed.discard(intf)

    def is_kernel_driver_active(self, dev_handle: _Handle, intf: int) -> bool:
        with self._cond:
            self._check(dev_handle)
            if self._configuration == 0 or intf != 0:
                raise _error("not_found")
            return self.kernel_driver_active

    def detach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        with self._cond:
            self._check(dev_handle)
            self.calls.detach_kernel_driver += 1
            if not self.kernel_driver_active:
                raise _error("not_found")
            self.kernel_driver_active = False

    def attach_kernel_driver(self, dev_handle: _Handle, intf: int) -> None:
        with self._cond:
            self._check(dev_handle)
            self.calls.attach_kernel_driver += 1
            if intf in self.claimed:
                raise _error("busy")
            self.kernel_driver_active = True

    def intr_read(
        self, dev_handle: _Handle, ep: int, intf: int, buff: array.array[int], timeout: int
    ) -> int:
        with self._cond:
            self._check(dev_handle)
            if intf not in self.claimed or ep != self._report_endpoint:
                raise _error("io")
            ready = self._cond.wait_for(
                lambda: bool(self._reports) or not self._plugged, timeout=timeout / 1000
            )
            self._check(dev_handle)
            if not ready:
                raise _error("timeout")
            report = self._reports.popleft()
        if len(report) > len(buff) * buff.itemsize:
            raise _error("overflow")
        buff[: len(report)] = array.array("B", report)
        return len(report)

    def ctrl_transfer(
        self,
        dev_handle: _Handle,
        bmRequestType: int,
        bRequest: int,
        wValue: int,
        wIndex: int,
        data: array.array[int],
        timeout: int,
    ) -> int:
        """Answers GET_DESCRIPTOR for strings, so `device.product` and the like work."""
        with self._cond:
            self._check(dev_handle)
        kind, index = wValue >> 8, wValue & 0xFF
        if bmRequestType != 0x80 or bRequest != _GET_DESCRIPTOR or kind != _STRING_DESCRIPTOR:
            raise _error("pipe")
        if index == 0:
            body = _LANGID_EN_US.to_bytes(2, "little")
        elif index in self._strings:
            body = self._strings[index].encode("utf-16-le")
        else:
            raise _error("pipe")
        descriptor = bytes([2 + len(body), _STRING_DESCRIPTOR]) + body
        n = min(len(descriptor), len(data) * data.itemsize)
        data[:n] = array.array("B", descriptor[:n])
        return n
