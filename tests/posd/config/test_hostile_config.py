"""Config files a technician (or a broken editor) can produce that once crashed posd or were
let through: nesting that exhausts the parser's stack, an api.socket that can never be one,
a socket directory posd may not write."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from posd.config import ConfigError, load_config
from tests.helpers.configs import write_config
from tests.helpers.unprivileged import run_python

ROOT = Path(__file__).resolve().parents[3]


def posd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "posd", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=ROOT,
    )


@pytest.mark.parametrize(
    "value",
    ["[" * 3000 + "]" * 3000, "{ a = " * 3000 + "1" + " }" * 3000],
    ids=["arrays", "inline-tables"],
)
def test_deeply_nested_toml_is_a_config_error_naming_the_line_not_a_crash(
    tmp_path: Path, value: str
) -> None:
    path = write_config(tmp_path)
    path.write_text(path.read_text() + f"\n[extra]\nx = {value}\n")
    line = path.read_text().splitlines().index(f"x = {value}") + 1
    for command in (["config", "check", str(path)], ["run", "-c", str(path)]):
        done = posd(*command)
        assert done.returncode == os.EX_CONFIG, done.stderr[-2000:]
        assert f"{path}:{line}: arrays or inline tables nested too deeply" in done.stderr
        assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr


def test_an_api_socket_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "sockdir").mkdir()
    path = write_config(tmp_path, api={"socket": str(tmp_path / "sockdir")})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    [problem] = caught.value.problems
    assert problem.key_path == "api.socket"
    assert "is a directory; expected the path of the socket file posd makes" in problem.message


def test_an_api_socket_in_the_place_of_a_file_or_under_one_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("a technician's notes\n")
    for socket, says in (
        (tmp_path / "notes.txt", "exists and is not a socket"),
        (tmp_path / "notes.txt" / "api.sock", "is not a directory"),
    ):
        path = write_config(tmp_path, api={"socket": str(socket)})
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert [p.key_path for p in caught.value.problems] == ["api.socket"]
        assert says in caught.value.problems[0].message
    assert (tmp_path / "notes.txt").read_text() == "a technician's notes\n"


def test_an_unwritable_socket_directory_is_a_message_with_the_path(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    for socket in (locked / "api.sock", locked / "run" / "api.sock"):
        script = textwrap.dedent(
            f"""
            import asyncio
            from pathlib import Path
            from posd.api import ApiStartError
            from tests.helpers.payment_service import MemoryPaymentService, local_api

            api = local_api(MemoryPaymentService(), Path({str(socket)!r}), group=None)
            try:
                asyncio.run(api.run(lambda: None))
            except ApiStartError as exc:
                print(exc)
            """
        )
        done = run_python("-c", script)
        assert done.returncode == 0, done.stderr
        assert str(socket.parent) in done.stdout and "Permission denied" in done.stdout
        assert "posd user" in done.stdout
