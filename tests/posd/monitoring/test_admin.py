"""`posd admin keygen / sign / send`: a key pair the console and posd take, an envelope posd
verifies, and a command sent to a running box over a real broker, answered and printed."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from posd.cli import main
from posd.fleet import load_operator_key
from protocols.command_payload import VerifiedCommand, verify_command
from tests.helpers.mosquitto import Mosquitto
from tests.posd.monitoring.support import box, watching

pytestmark = pytest.mark.timeout(60)

REPO_ROOT = Path(__file__).resolve().parents[3]


def keygen(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, str]:
    key = tmp_path / "ops" / "operator.key"
    key.parent.mkdir()
    assert main(["admin", "keygen", "--out", str(key)]) == 0
    out = capsys.readouterr().out
    public = (key.parent / "operator.key.pub").read_text().strip()
    assert f'operator_keys = ["{public}"]' in out
    return key, public


def test_keygen_writes_a_private_key_only_its_owner_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, public = keygen(tmp_path, capsys)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    # The format the fleet console reads, and the public half posd's config takes.
    loaded = load_operator_key(key)
    raw = loaded.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    assert base64.b64encode(raw).decode() == public
    assert main(["admin", "keygen", "--out", str(key)]) == os.EX_CANTCREAT
    assert "never overwrites" in capsys.readouterr().err


def test_sign_prints_an_envelope_posd_verifies(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, public = keygen(tmp_path, capsys)
    assert (
        main(["admin", "sign", "log_level", "--args", '{"level": "debug"}', "--key", str(key)]) == 0
    )
    payload = capsys.readouterr().out.strip().encode()
    checked = verify_command(
        "log_level", payload, [base64.b64decode(public)], int(time.time()), set()
    )
    assert isinstance(checked, VerifiedCommand) and checked.args == {"level": "debug"}
    assert main(["admin", "sign", "reboot", "--key", str(key)]) == os.EX_USAGE
    assert "no command 'reboot'" in capsys.readouterr().err
    assert main(["admin", "sign", "log_level", "--args", "[1]", "--key", str(key)]) == os.EX_USAGE
    assert main(["admin", "sign", "diagnostics", "--key", str(tmp_path / "none")]) == os.EX_CONFIG


async def test_send_gets_the_box_answer_and_prints_it(
    tmp_path: Path, mosquitto: Mosquitto, capsys: pytest.CaptureFixture[str]
) -> None:
    key, public = keygen(tmp_path, capsys)
    broker = f"127.0.0.1:{mosquitto.port}"
    async with (
        watching(mosquitto) as ops,
        box(tmp_path, mosquitto, mqtt={"operator_keys": [public]}),
    ):
        await ops.state(lambda s: s["ledger"]["link"] == "up")
        # As an operator types it: its own process.
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "posd", "admin", "send", "T0000001", "diagnostics",
            "--key", str(key), "--broker", broker,
            cwd=REPO_ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 30)
        assert process.returncode == 0, err.decode()
        answer = json.loads(out)
        assert answer["ok"] is True and answer["result"]["versions"]["posd"]

        def send(*words: str) -> int:
            return main(["admin", "send", *words, "--key", str(key), "--broker", broker])

        # The box has no audio output (the test config's "none"): an error answer, exit 1.
        refused = await asyncio.to_thread(send, "T0000001", "chime_test")
        assert refused == 1
        assert 'answered: audio.output is "none"' in capsys.readouterr().err
        nobody = await asyncio.to_thread(send, "T9999999", "diagnostics", "--timeout", "2")
        assert nobody == os.EX_TEMPFAIL
        assert "no answer from T9999999" in capsys.readouterr().err


def test_send_to_a_broker_that_is_not_there_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key, _ = keygen(tmp_path, capsys)
    code = main(
        ["admin", "send", "T0000001", "diagnostics", "--key", str(key),
         "--broker", "127.0.0.1:9", "--timeout", "1.5"]
    )  # fmt: skip
    assert code == os.EX_UNAVAILABLE
    assert "cannot reach the broker" in capsys.readouterr().err
