"""A journal that can never open (a corrupt database, a key posd may not read) is reported with
its cause by every refused request and by the component's status, never as "starting"."""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import pytest

from posd.journal import DB_FILE_NAME
from posd.runtime import Backoff
from tests.helpers.daemon import PosClient, running_daemon
from tests.helpers.unprivileged import run_python

pytestmark = pytest.mark.timeout(60)


async def test_a_corrupt_journal_is_named_by_every_refusal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / DB_FILE_NAME).write_bytes(b"not a database, whatever it once was\n" * 300)
    (state / DB_FILE_NAME).chmod(0o600)
    async with running_daemon(
        tmp_path, wait_ready=False, backoff=Backoff(initial_s=0.05, max_s=0.2)
    ) as d:
        client: PosClient = d
        # The first open attempt may still be under way as the API starts answering.
        async with asyncio.timeout(10):
            while True:
                _, answer = await client.request("GET", "/v1/status")
                if "posd is starting" not in answer["error"]["message"]:
                    break
                await asyncio.sleep(0.02)
        for method, path, body in (
            ("POST", "/v1/payments", {"amount": 1000, "method": "qr", "idempotency_key": "k1"}),
            ("GET", "/v1/status", None),
            ("GET", "/v1/payments/p_0123456789abcdef", None),
        ):
            status, answer = await client.request(method, path, body)
            assert status == 503, answer
            message = answer["error"]["message"]
            assert "starting" not in message
            assert f"{state / DB_FILE_NAME}: file is not a database" in message
        journal = d.daemon.supervisor.statuses()["journal"]
        assert journal.state in ("error", "starting") and journal.restarts >= 1
        assert "file is not a database" in str(journal.last_error)


def test_an_unreadable_key_is_named_by_the_journal_holder(tmp_path: Path) -> None:
    state = tmp_path / "state"
    script = textwrap.dedent(
        f"""
        import asyncio
        from pathlib import Path
        from posd.journal import Journal, JournalHolder, JournalNotOpen

        async def main() -> None:
            state = Path({str(state)!r})
            await (await Journal.open(state)).close()
            (state / "journal.key").chmod(0)
            holder = JournalHolder(state)
            try:
                await holder.run(lambda: None)
            except Exception:
                pass
            try:
                holder()
            except JournalNotOpen as exc:
                print(exc)

        asyncio.run(main())
        """
    )
    done = run_python("-c", script)
    assert done.returncode == 0, done.stderr
    assert f"cannot open {state / 'journal.key'}: Permission denied" in done.stdout
    assert "starting" not in done.stdout
