"""The journal key is registered with the log redaction as soon as the journal opens."""

from __future__ import annotations

import base64
from pathlib import Path

from posd.journal import Journal
from posd.logs import redact


async def test_journal_key_never_survives_redaction(tmp_path: Path) -> None:
    journal = await Journal.open(tmp_path / "state")
    try:
        key = (tmp_path / "state" / "journal.key").read_bytes()
        for form in (key.hex(), key.hex().upper(), base64.b64encode(key).decode()):
            line = redact(f"leaked {form} here")
            assert form not in line
            assert line.startswith("leaked ") and line.endswith(" here")
    finally:
        await journal.close()
