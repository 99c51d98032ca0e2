"""Failpoints: inert unless POSD_FAILPOINTS names one; `kill` is a SIGKILL at that instant;
a name or action that does not exist stops the process at import."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from posd.runtime import failpoints
from posd.runtime.failpoints import ENV, FailpointError, parse

# A child that passes the point, then says it got past it.
_PASS_POINT = (
    "from posd.runtime import failpoint\n"
    "failpoint('payments.before_0200')\n"
    "print('past the point', flush=True)\n"
)


def child(spec: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != ENV}
    if spec is not None:
        env[ENV] = spec
    return subprocess.run(
        [sys.executable, "-c", _PASS_POINT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_parse_reads_points_and_actions() -> None:
    assert parse("") == {}
    assert parse(" payments.before_0200 = kill ; ") == {"payments.before_0200": "kill"}


@pytest.mark.parametrize(
    "spec", ["payments.before_0201=kill", "payments.before_0200=sleep", "payments.before_0200"]
)
def test_parse_refuses_what_does_not_exist(spec: str) -> None:
    with pytest.raises(FailpointError, match="is not point=action"):
        parse(spec)


def test_inert_in_this_process() -> None:
    # The suite runs without POSD_FAILPOINTS: every point is a no-op here.
    assert ENV not in os.environ
    assert not failpoints._ARMED
    failpoints.failpoint("payments.before_0200")


def test_unset_the_point_is_passed() -> None:
    done = child(None)
    assert (done.returncode, done.stdout) == (0, "past the point\n"), done.stderr


def test_kill_is_a_sigkill_at_the_point() -> None:
    done = child("payments.before_0200=kill")
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert done.stdout == ""


def test_a_misspelt_point_stops_the_process_at_import() -> None:
    done = child("payments.before_200=kill")
    assert done.returncode == 1
    assert "FailpointError" in done.stderr and "payments.before_200" in done.stderr
