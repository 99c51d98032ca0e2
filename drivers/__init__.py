"""Device I/O for posd: serial card reader, QR scanners, audio. Depends only on protocols."""
