"""Simulated peers: card reader, QR scanner, reference ledger, order feed."""
