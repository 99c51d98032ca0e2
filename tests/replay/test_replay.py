"""Recorded SRL/1 sessions replayed against the real driver through a pty.

A failure shows the difference between what the driver now makes of the
session and what it made when the expected file was written; if the change
is intended, run `make replay-regen` and review the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.replay.replayer import (
    SessionError,
    check_path,
    parse_session,
    replay,
    replay_file,
    session_names,
)


def test_the_corpus_is_there() -> None:
    assert len(session_names()) >= 12
    for name in session_names():
        assert check_path(name).exists(), f"{name}.srl has no expected file"


@pytest.mark.parametrize("name", session_names())
async def test_session(name: str, tmp_path: Path) -> None:
    expected = check_path(name).read_text(encoding="utf-8").splitlines()
    assert await replay_file(name, tmp_path) == expected


async def test_a_host_that_deviates_from_the_session_is_reported(tmp_path: Path) -> None:
    lines = parse_session("> 0 0200020001030000\n")
    events = await replay(lines, tmp_path)
    assert events[0].startswith("line 1: host wrote 020002000103")


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("< 12\n", "expected"),
        ("? 1 00\n", "expected"),
        ("< x 00\n", "whole milliseconds"),
        ("< 1 0g\n", "not hex"),
    ],
)
def test_bad_session_lines_are_refused(text: str, complaint: str) -> None:
    with pytest.raises(SessionError, match=complaint):
        parse_session("# fine\n\n" + text, "bad.srl")


def test_parse_reads_all_three_kinds() -> None:
    lines = parse_session("# c\n> 0 06\n< 5 0215\n! 7 read_card 1 7 30\n")
    assert [(line.kind, line.t, line.data, line.text) for line in lines] == [
        (">", 0.0, b"\x06", ""),
        ("<", 0.005, b"\x02\x15", ""),
        ("!", 0.007, b"", "read_card 1 7 30"),
    ]
