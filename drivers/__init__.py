"""Device I/O for posd, with asyncio; depends only on protocols, never on posd.

Each device is a component with a `state` the daemon reports. Import from the packages'
faces and modules:
- `card_reader/`: the SRL/1 card reader on a serial port, and the probe of `posd devices`.
- `qr_scanner/`: the USB HID and serial QR scanners, and the known scanner vendors.
- `serial_ports`: the machine's serial ports, which may hold a reader, and open errors.
- `usb_devices`: the machine's USB devices, as libusb or sysfs lists them.
"""

__all__ = ["card_reader", "qr_scanner", "serial_ports", "usb_devices"]
