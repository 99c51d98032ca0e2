"""`posd demo`'s scripted shift runs every step and exits 0."""

from __future__ import annotations

import pytest

from posd.demo import run_demo

pytestmark = pytest.mark.timeout(90)


async def test_demo_shift_behaves() -> None:
    lines: list[str] = []
    assert await run_demo(out=lines.append) == 0
    assert lines[-1] == "8 of 8 steps behaved"
    assert not [line for line in lines if line.startswith("FAIL")]
    assert any("approved_offline" in line for line in lines)
    assert any("forwarded" in line for line in lines)
