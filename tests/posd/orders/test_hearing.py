"""Deaf or hearing, decided from the link's and the audio's states: the threshold, several
causes at once, the events, and a box that takes no orders."""

from __future__ import annotations

from drivers.audio import AudioStatus
from posd.mqtt import LinkState
from posd.orders.hearing import Hearing

READY = AudioStatus("ready", "alsa", "default")
BROKEN = AudioStatus("error", "auto", "alsa: no sound card")


def link(status: str, since_monotonic: float = 100.0, error: str | None = None) -> LinkState:
    return LinkState("orders", status, 0.0, 1, error, True, 0, 0, 0, since_monotonic)  # type: ignore[arg-type]


def hearing(enabled: bool = True) -> tuple[Hearing, list[tuple[bool, str | None]]]:
    told: list[tuple[bool, str | None]] = []
    return Hearing(enabled=enabled, deaf_after_s=60, tell=lambda d, r: told.append((d, r))), told


def test_the_link_makes_the_shop_deaf_only_past_the_threshold() -> None:
    h, told = hearing()
    down = link("down", 100.0, "connection refused")
    h.update(down, READY, None, 159.9)
    assert (h.can_alert, told) == (True, [])
    assert h.link_deadline(down, 159.9) < 0.2
    h.update(down, READY, None, 160.0)
    assert h.can_alert is False
    assert told == [(True, "orders link down for more than 60 s (connection refused)")]
    h.update(link("up"), READY, None, 161.0)
    assert (h.can_alert, h.reason, told[-1]) == (True, None, (False, None))


def test_several_causes_are_one_deaf_episode_with_every_reason() -> None:
    h, told = hearing()
    h.update(link("up"), BROKEN, None, 0.0)
    h.update(link("down", 0.0), BROKEN, "disk full", 61.0)
    assert h.reason == (
        "orders link down for more than 60 s (it has not connected yet); "
        "no working audio output (alsa: no sound card); orders cannot be stored (disk full)"
    )
    h.update(link("up"), BROKEN, None, 62.0)
    assert h.reason == "no working audio output (alsa: no sound card)"
    assert [deaf for deaf, _ in told] == [True]  # one episode: one event
    h.update(link("up"), READY, None, 63.0)
    assert [deaf for deaf, _ in told] == [True, False]


def test_a_box_without_orders_is_never_deaf() -> None:
    h, told = hearing(enabled=False)
    h.update(None, AudioStatus("disabled", "none", None), None, 1e6)
    assert (h.can_alert, h.reason, told) == (None, None, [])
    assert h.link_deadline(link("down"), 0.0) == float("inf")


def test_no_output_at_all_is_deaf() -> None:
    h, told = hearing()
    h.update(link("up"), AudioStatus("disabled", "none", 'audio.output is "none"'), None, 0.0)
    assert told == [(True, 'no working audio output (audio.output is "none")')]
