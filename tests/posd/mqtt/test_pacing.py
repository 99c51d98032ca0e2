"""The token bucket that bounds what a broker peer can make posd answer or report."""

from __future__ import annotations

from posd.mqtt import TokenBucket


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_then_one_per_interval_and_the_rest_counted() -> None:
    clock = _Clock()
    bucket = TokenBucket(3, 10.0, clock)
    assert [bucket.take() for _ in range(5)] == [True, True, True, False, False]
    assert bucket.held == 2
    clock.now += 9.9
    assert not bucket.take()
    clock.now += 0.1
    assert bucket.take()
    assert not bucket.take()
    assert bucket.held == 4


def test_a_long_quiet_refills_only_up_to_the_burst() -> None:
    clock = _Clock()
    bucket = TokenBucket(2, 1.0, clock)
    assert bucket.take() and bucket.take()
    clock.now += 3600
    assert [bucket.take() for _ in range(3)] == [True, True, False]
