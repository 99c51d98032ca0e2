"""The fleet model: status, reordering, late wills, stale, deaf, events, and every bad input."""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from posd.fleet.model import (
    EVENT_BYTES,
    MAX_EVENTS,
    DeafChanged,
    FleetModel,
    MissedOrder,
)
from tests.posd.fleet.fleetdata import T0, event, order_event, rfc3339, state, terminal, topic

TID = terminal(1)
ROW_KEYS = {
    "terminal_id",
    "merchant_id",
    "status",
    "since",
    "deaf",
    "deaf_reason",
    "ledger_link",
    "card_reader",
    "saf_pending",
    "saf_oldest_age_s",
    "orders_alerting",
    "missed_today",
    "version",
    "last_state_ts",
}


def feed(
    model: FleetModel, leaf: str, payload: bytes, at: float, *, retain: bool = False
) -> object:
    return model.ingest(topic(TID, leaf), payload, retain, at)


def status(model: FleetModel, terminal_id: str = TID) -> str:
    return model.boxes[terminal_id].status


def connected(model: FleetModel, at: float, *, connects: int = 1, boot_id: str = "boot-a") -> None:
    feed(model, "availability", b"online", at)
    feed(model, "state", state(TID, at, connects=connects, boot_id=boot_id), at)


def test_a_connected_box_is_online_with_its_row() -> None:
    model = FleetModel()
    connected(model, T0)
    row = model.boxes[TID].row()
    assert set(row) == ROW_KEYS
    assert row == {
        "terminal_id": TID,
        "merchant_id": "M" + TID[1:] * 2,
        "status": "online",
        "since": rfc3339(T0),
        "deaf": False,
        "deaf_reason": None,
        "ledger_link": "up",
        "card_reader": "ready",
        "saf_pending": 0,
        "saf_oldest_age_s": None,
        "orders_alerting": 0,
        "missed_today": 0,
        "version": "0.1.0",
        "last_state_ts": rfc3339(T0),
    }
    assert model.summary_counts() == {
        "boxes": 1,
        "online": 1,
        "offline": 0,
        "stale": 0,
        "deaf": 0,
        "saf_old": 0,
        "readers_disconnected": 0,
    }


def test_a_will_marks_the_box_offline_since_it_arrived() -> None:
    model = FleetModel()
    connected(model, T0)
    change = feed(model, "availability", b"offline", T0 + 30)
    assert change is not None
    assert status(model) == "offline"
    assert model.boxes[TID].row()["since"] == rfc3339(T0 + 30)
    assert model.summary_counts()["offline"] == 1


def test_stale_after_twice_the_state_interval_and_online_again_with_a_fresh_state() -> None:
    model = FleetModel(state_interval_s=60)
    connected(model, T0)
    assert model.tick(T0 + 119) is None
    change = model.tick(T0 + 120)
    assert change is not None and change.rows == [TID]
    assert status(model) == "stale"
    assert model.boxes[TID].row()["since"] == rfc3339(T0 + 120)
    feed(model, "state", state(TID, T0 + 130), T0 + 130)
    assert status(model) == "online"
    assert model.tick(T0 + 200) is None  # the old deadline no longer counts
    assert model.tick(T0 + 250) is not None


def test_a_state_from_the_future_goes_stale_by_when_it_arrived() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0)
    feed(model, "state", state(TID, T0 + 3600), T0)  # the box's clock is an hour ahead
    model.tick(T0 + 121)
    assert status(model) == "stale"


def test_snapshot_of_a_dead_box_is_offline_since_its_last_state() -> None:
    model = FleetModel()
    feed(model, "state", state(TID, T0 - 7200), T0, retain=True)
    feed(model, "availability", b"offline", T0, retain=True)
    assert status(model) == "offline"
    assert model.boxes[TID].row()["since"] == rfc3339(T0 - 7200)


def test_snapshot_online_with_an_old_state_is_stale_since_the_state_went_old() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0, retain=True)
    feed(model, "state", state(TID, T0 - 600), T0, retain=True)
    assert status(model) == "stale"
    assert model.boxes[TID].row()["since"] == rfc3339(T0 - 600 + 120)


def test_snapshot_online_without_any_state_goes_stale_if_none_comes() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0, retain=True)
    assert status(model) == "online"
    assert model.boxes[TID].row()["since"] is None
    model.tick(T0 + 120)
    assert status(model) == "stale"


@pytest.mark.parametrize(
    ("first", "second", "kept"),
    [
        (dict(connects=3, ts=T0), dict(connects=2, ts=T0 + 60), "first"),  # lower connects
        (dict(connects=2, ts=T0 + 60), dict(connects=2, ts=T0), "first"),  # same conn, older
        (dict(connects=2, ts=T0), dict(connects=3, ts=T0 - 60), "second"),  # higher connects
        (dict(boot_id="b", connects=9, ts=T0), dict(boot_id="c", connects=1, ts=T0 - 1), "first"),
        (dict(boot_id="b", connects=9, ts=T0), dict(boot_id="c", connects=1, ts=T0 + 1), "second"),
    ],
)
def test_an_older_state_never_overwrites_a_newer_one(
    first: dict[str, object], second: dict[str, object], kept: str
) -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0)
    for n, fields in enumerate((first, second)):
        ts = float(fields.pop("ts"))  # type: ignore[arg-type]
        feed(model, "state", state(TID, ts, saf_pending=n, **fields), T0 + 1)  # type: ignore[arg-type]
    assert model.boxes[TID].saf_pending == (0 if kept == "first" else 1)
    assert model.old_states == (1 if kept == "first" else 0)


def test_a_late_will_after_the_new_connections_state_does_not_mark_it_offline() -> None:
    model = FleetModel()
    connected(model, T0, connects=1)
    # The box lost broker A and reconnected through broker B; A's will for connection 1 comes
    # over the bridge after connection 2's online and state.
    connected(model, T0 + 10, connects=2)
    assert feed(model, "availability", b"offline", T0 + 95) is None
    assert status(model) == "online"
    assert model.late_wills == 1
    # Connection 2's own will, later, does.
    feed(model, "availability", b"offline", T0 + 300)
    assert status(model) == "offline"


def test_a_late_will_between_online_and_the_new_state_is_undone_by_that_state() -> None:
    model = FleetModel()
    connected(model, T0, connects=1)
    feed(model, "availability", b"online", T0 + 10)
    feed(model, "availability", b"offline", T0 + 11)
    assert status(model) == "offline"  # nothing yet says which connection it ended
    feed(model, "state", state(TID, T0 + 10, connects=2), T0 + 12)
    assert status(model) == "online"
    assert model.boxes[TID].since == T0 + 12


def test_a_late_will_after_a_snapshot_is_undone_by_a_state_built_after_it() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0, retain=True)
    feed(model, "state", state(TID, T0, connects=2), T0, retain=True)
    feed(model, "availability", b"offline", T0 + 20)
    assert status(model) == "offline"
    # The same connection's next periodic state was built after that offline arrived.
    feed(model, "state", state(TID, T0 + 60, connects=2), T0 + 60)
    assert status(model) == "online"


def test_a_dead_boxs_reordered_last_state_does_not_revive_it() -> None:
    model = FleetModel()
    connected(model, T0)
    feed(model, "state", state(TID, T0 + 60), T0 + 60)
    feed(model, "availability", b"offline", T0 + 62)
    feed(model, "state", state(TID, T0 + 61), T0 + 63)  # built before it died, came late
    assert status(model) == "offline"
    feed(model, "availability", b"offline", T0 + 64)  # the will again (QoS 1 duplicate)
    assert status(model) == "offline"


def test_a_restart_with_its_offline_reordered_after_the_new_boot_stays_online() -> None:
    model = FleetModel()
    connected(model, T0, boot_id="boot-a", connects=4)
    feed(model, "availability", b"online", T0 + 30)
    feed(model, "state", state(TID, T0 + 30, boot_id="boot-b", connects=1), T0 + 30)
    feed(model, "availability", b"offline", T0 + 31)  # posd's own offline, from boot-a
    assert status(model) == "online"


def test_an_orderly_restart_in_order_is_offline_then_online() -> None:
    model = FleetModel()
    connected(model, T0, boot_id="boot-a")
    feed(model, "availability", b"offline", T0 + 30)
    assert status(model) == "offline"
    connected(model, T0 + 40, boot_id="boot-b")
    assert status(model) == "online"
    feed(model, "availability", b"offline", T0 + 50)
    assert status(model) == "offline"  # no debt was left by the orderly offline


def test_a_retained_offline_is_the_brokers_word_whatever_came_live_before() -> None:
    model = FleetModel()
    connected(model, T0, connects=1)
    connected(model, T0 + 10, connects=2)  # a debt: connection 1's offline is owed
    feed(model, "availability", b"offline", T0 + 500, retain=True)  # resubscribed: dead now
    assert status(model) == "offline"


def test_deaf_from_the_state_and_hearing_from_a_newer_event() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0)
    change = feed(model, "state", state(TID, T0, can_alert=False, reason="no audio output"), T0)
    assert change is not None
    assert (
        change.calls
        == [  # type: ignore[attr-defined]
            DeafChanged(TID, "M" + TID[1:] * 2, True, T0, "no audio output")
        ]
    )
    row = model.boxes[TID].row()
    assert (row["deaf"], row["deaf_reason"]) == (True, "no audio output")
    assert model.summary_counts()["deaf"] == 1
    assert list(model.select(deaf=True)) == [model.boxes[TID]]
    heard = feed(model, "event/order", order_event(T0 + 5, "-", "hearing"), T0 + 5)
    assert heard is not None and heard.calls[0].deaf is False  # type: ignore[attr-defined]
    # A state built before the hearing event, arriving after it, changes nothing.
    model.boxes[TID].state_ts = T0 - 10
    feed(model, "state", state(TID, T0 + 1, can_alert=False, reason="no audio output"), T0 + 6)
    assert model.boxes[TID].deaf is False
    assert model.summary_counts()["deaf"] == 0


def test_a_shop_with_orders_off_is_not_deaf() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0)
    feed(model, "state", state(TID, T0, can_alert=False, reason="no audio output"), T0)
    assert model.summary_counts()["deaf"] == 1
    # The technician turned orders off: posd says can_alert null, link disabled.
    off = state(TID, T0 + 60, can_alert=None, orders_link="disabled")
    change = feed(model, "state", off, T0 + 60)
    assert change is not None
    assert [c.deaf for c in change.calls] == [False]  # type: ignore[attr-defined]
    assert model.summary_counts()["deaf"] == 0 and model.boxes[TID].deaf_reason is None
    assert list(model.select(deaf=True)) == []
    # A null that is no such shop (the link up) says nothing either way.
    feed(model, "state", state(TID, T0 + 120, can_alert=False, reason="no audio"), T0 + 120)
    feed(model, "state", state(TID, T0 + 180, can_alert=None), T0 + 180)
    assert model.boxes[TID].deaf is True


def test_deaf_and_hearing_events_as_posd_sends_them_carry_no_order() -> None:
    model = FleetModel()
    connected(model, T0)
    shop_wide = {"order_id": None, "placed_at": None, "alerting_s": None}
    deaf = event("order", T0 + 1, None, state="deaf", reason="no working audio output", **shop_wide)
    assert feed(model, "event/order", deaf, T0 + 1) is not None
    box = model.boxes[TID]
    assert (box.deaf, box.deaf_reason) == (True, "no working audio output")
    heard = event("order", T0 + 2, None, state="hearing", reason=None, **shop_wide)
    feed(model, "event/order", heard, T0 + 2)
    assert model.boxes[TID].deaf is False
    # An order's own event still needs its order.
    missed = event("order", T0 + 3, state="missed", **shop_wide)
    assert feed(model, "event/order", missed, T0 + 3) is None
    assert model.bad.counts["shape"] == 1, model.bad.counts  # type: ignore[index]


def test_a_deaf_event_makes_the_shop_deaf_at_once() -> None:
    model = FleetModel()
    connected(model, T0)
    change = feed(
        model, "event/order", order_event(T0 + 1, "-", "deaf", reason="orders link down"), T0 + 1
    )
    assert change is not None
    assert model.boxes[TID].deaf_reason == "orders link down"


def test_a_missed_order_is_a_call_signal_once_even_when_redelivered() -> None:
    model = FleetModel()
    connected(model, T0)
    payload = order_event(T0 + 400, "O-77", "missed", placed_at=T0 + 100, event_id="e-1")
    change = feed(model, "event/order", payload, T0 + 400)
    assert change is not None
    assert (
        change.calls
        == [  # type: ignore[attr-defined]
            MissedOrder(TID, "M" + TID[1:] * 2, "O-77", T0 + 100)
        ]
    )
    assert feed(model, "event/order", payload, T0 + 401) is None
    assert model.duplicates == 1
    assert len(model.boxes[TID].recent_events()) == 1


def test_the_last_50_events_are_kept_within_a_byte_budget() -> None:
    model = FleetModel()
    connected(model, T0)
    for n in range(80):
        feed(model, "event/payment", event("payment", T0 + n, f"p-{n}", amount=n), T0 + n)
    kept = model.boxes[TID].recent_events()
    assert len(kept) == MAX_EVENTS
    assert [json.loads(raw)["id"] for raw in kept] == [f"p-{n}" for n in range(30, 80)]
    for n in range(30):
        noise = os.urandom(2000).hex()  # deflates to about half
        big = event("error", T0 + 100 + n, f"big-{n}", what="x", detail=noise)
        feed(model, "event/error", big, T0 + 100 + n)
    box = model.boxes[TID]
    kept = box.recent_events()
    assert box.event_bytes <= EVENT_BYTES and 0 < len(kept) < 30
    assert json.loads(kept[-1])["id"] == "big-29"
    assert json.loads(kept[-1])["detail"] == noise


def test_saf_backlog_and_reader_counts() -> None:
    model = FleetModel()
    feed(model, "availability", b"online", T0)
    feed(model, "state", state(TID, T0, saf_pending=3, saf_oldest_age_s=90_000.0), T0)
    other = terminal(2)
    model.ingest(topic(other, "state"), state(other, T0, reader="disconnected"), False, T0)
    counts = model.summary_counts()
    assert (counts["saf_old"], counts["readers_disconnected"], counts["boxes"]) == (1, 1, 2)
    feed(model, "state", state(TID, T0 + 60, saf_pending=0), T0 + 60)
    assert model.summary_counts()["saf_old"] == 0


def test_select_filters_by_status_deaf_and_text() -> None:
    model = FleetModel()
    for n in range(1, 6):
        tid = terminal(n)
        model.ingest(topic(tid, "availability"), b"online", False, T0)
        model.ingest(
            topic(tid, "state"), state(tid, T0, merchant_id=f"SHOP{n}", can_alert=n != 3), False, T0
        )
    model.ingest(topic(terminal(4), "availability"), b"offline", False, T0 + 1)
    assert [b.terminal_id for b in model.select(status="offline")] == [terminal(4)]
    assert [b.terminal_id for b in model.select(deaf=True)] == [terminal(3)]
    assert [b.terminal_id for b in model.select(status="online", deaf=True)] == [terminal(3)]
    assert len(list(model.select(status="online", deaf=False))) == 3
    assert [b.terminal_id for b in model.select(q="shop5")] == [terminal(5)]
    assert [b.terminal_id for b in model.select(q="T0000002")] == [terminal(2)]
    assert len(list(model.select())) == 5


def test_an_empty_retained_payload_clears_and_then_forgets_the_box() -> None:
    model = FleetModel()
    connected(model, T0)
    change = feed(model, "state", b"", T0 + 1, retain=True)
    assert change is not None and change.rows == [TID]  # type: ignore[attr-defined]
    change = feed(model, "availability", b"", T0 + 2, retain=True)
    assert change is not None and change.removed == [TID]  # type: ignore[attr-defined]
    assert model.boxes == {}
    assert model.summary_counts()["boxes"] == 0 and model.by_status["online"] == set()


BAD_TOPICS = [
    "posd/T0000001/state/extra",
    "posd/+/state",
    "posd/#",
    "posd/T000001/state",
    "posd/T00000001/state",
    "posd/ T000001/state",
    "posd/T00000\x001/state",
    "posd/T000000é/state",
    "other/T0000001/state",
    "posdx/T0000001/state",
    "posd/T0000001/event/unknown",
    "posd/T0000001/event/payment/x",
    "posd/T0000001/request/chime_test",
    "posd/T0000001/response/chime_test",
    "posd/T0000001",
    "posd/" + "T" * 600,
]


@pytest.mark.parametrize("bad_topic", BAD_TOPICS)
def test_a_topic_outside_the_three_shapes_is_counted_and_ignored(bad_topic: str) -> None:
    model = FleetModel()
    assert model.ingest(bad_topic, state(TID, T0), False, T0) is None
    assert model.boxes == {}
    assert model.bad.counts["topic"] == 1


def _state_with(**changes: object) -> bytes:
    obj = json.loads(state(TID, T0))
    for dotted, value in changes.items():
        target = obj
        *parents, leaf = dotted.split("__")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return json.dumps(obj).encode()


BAD_STATES = [
    (b"not json", "not_json"),
    (b"\xff\xfe\x00", "not_json"),
    (b"NaN", "not_json"),
    (b"[" * 100_00 + b"]" * 100_00, "too_large"),
    (b"[" * 4000 + b"]" * 4000, "not_json"),
    (b"[]", "shape"),
    (b'"online"', "shape"),
    (b"x" * 9000, "too_large"),
    (_state_with(terminal_id=terminal(2)), "mismatch"),
    (_state_with(terminal_id=None), "mismatch"),
    (_state_with(ts="yesterday"), "shape"),
    (_state_with(ts="2026-12-02T09:00:00"), "shape"),  # no offset
    (_state_with(ts=1764666000), "shape"),
    (_state_with(connects="1"), "shape"),
    (_state_with(connects=True), "shape"),
    (_state_with(connects=-1), "shape"),
    (_state_with(boot_id=None), "shape"),
    (_state_with(boot_id=""), "shape"),
    (_state_with(merchant_id=12), "shape"),
    (_state_with(merchant_id="M\n1"), "shape"),
    (_state_with(ledger="up"), "shape"),
    (_state_with(ledger__link="sideways"), "shape"),
    (_state_with(devices__card_reader__state="exploded"), "shape"),
    (_state_with(saf__pending=-1), "shape"),
    (_state_with(saf__pending=1.5), "shape"),
    (_state_with(saf__oldest_age_s="old"), "shape"),
    (_state_with(orders__can_alert="no"), "shape"),
    (_state_with(orders__reason=["x"]), "shape"),
    (_state_with(version="v" * 300), "shape"),
]


@pytest.mark.parametrize(("payload", "reason"), BAD_STATES)
def test_a_malformed_state_is_counted_and_ignored(payload: bytes, reason: str) -> None:
    model = FleetModel()
    connected(model, T0)
    before = model.boxes[TID].row()
    assert feed(model, "state", payload, T0 + 1) is None
    assert model.boxes[TID].row() == before
    assert model.bad.counts[reason] == 1, model.bad.counts  # type: ignore[index]


BAD_EVENTS = [
    ("event/payment", b"{}", "shape"),
    ("event/payment", event("order", T0), "mismatch"),
    (
        "event/payment",
        json.dumps({"id": 5, "ts": rfc3339(T0), "kind": "payment"}).encode(),
        "shape",
    ),
    ("event/payment", json.dumps({"id": "a", "ts": "now", "kind": "payment"}).encode(), "shape"),
    ("event/order", event("order", T0, state="missed", placed_at=rfc3339(T0)), "shape"),
    ("event/order", event("order", T0, order_id="O", state="lost", placed_at=rfc3339(T0)), "shape"),
    ("event/order", event("order", T0, order_id="O", state="missed", placed_at=None), "shape"),
    ("event/order", event("order", T0, order_id=1, state="missed", placed_at=rfc3339(T0)), "shape"),
    (
        "event/order",
        json.dumps({**json.loads(order_event(T0, "O", "deaf")), "reason": 7}).encode(),
        "shape",
    ),
    # A key given twice: which value counts would be a guess.
    ("event/order", order_event(T0, "O", "deaf")[:-1] + b',"reason":"x"}', "not_json"),
    ("event/error", event("error", T0, what="x", detail="x" * 9000), "too_large"),
    ("availability", b"ONLINE", "availability"),
    ("availability", b"online\n", "availability"),
    ("availability", b"\x00", "availability"),
]


@pytest.mark.parametrize(("leaf", "payload", "reason"), BAD_EVENTS)
def test_a_malformed_event_or_availability_is_counted_and_ignored(
    leaf: str, payload: bytes, reason: str
) -> None:
    model = FleetModel()
    connected(model, T0)
    assert feed(model, leaf, payload, T0 + 1) is None
    assert model.boxes[TID].recent_events() == []
    assert model.bad.counts[reason] == 1, model.bad.counts  # type: ignore[index]
    assert status(model) == "online"


def test_an_odd_but_printable_merchant_id_is_kept_as_text() -> None:
    model = FleetModel()
    hostile = '<img src=x onerror="alert(1)">'
    feed(model, "state", state(TID, T0, merchant_id=hostile), T0)
    assert model.boxes[TID].merchant_id == hostile


def test_too_many_boxes_are_refused_and_counted() -> None:
    model = FleetModel(max_boxes=3)
    for n in range(1, 6):
        model.ingest(topic(terminal(n), "availability"), b"online", False, T0)
    assert len(model.boxes) == 3
    assert model.bad.counts["too_many_boxes"] == 2


def test_a_flood_of_bad_messages_logs_a_few_lines_and_counts_them_all(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = FleetModel()
    caplog.set_level(logging.WARNING, logger="posd.fleet")
    for n in range(10_000):
        model.ingest("posd/T0000001/state", b"garbage", False, T0 + n / 500)  # 20 s of flood
        model.ingest("posd/bad/state", b"x", False, T0 + n / 500)
    assert model.bad.counts["not_json"] == 10_000
    assert model.bad.counts["topic"] == 10_000
    lines = [r.getMessage() for r in caplog.records if r.name == "posd.fleet"]
    assert 2 <= len(lines) <= 6
    assert any("more refused for not_json" in line for line in lines)
    assert all("garbage" not in line for line in lines)


@given(
    st.binary(max_size=2000),
    st.sampled_from(["availability", "state", "event/order"]),
    st.booleans(),
)
def test_any_bytes_on_any_subscribed_topic_never_crash(
    payload: bytes, leaf: str, retain: bool
) -> None:
    model = FleetModel()
    connected(model, T0)
    model.ingest(topic(TID, leaf), payload, retain, T0 + 1)
    model.tick(T0 + 1000)


_messages = st.lists(
    st.tuples(
        st.integers(1, 4),
        st.sampled_from(["online", "offline", "state", "deaf", "hearing", "clear"]),
        st.integers(1, 3),
        st.booleans(),
        st.integers(0, 400),
    ),
    max_size=40,
)


@given(_messages)
def test_the_indexes_always_match_the_boxes(
    messages: list[tuple[int, str, int, bool, int]],
) -> None:
    model = FleetModel()
    now = T0
    for n, what, connects, retain, dt in messages:
        now += dt
        tid = terminal(n)
        if what in ("online", "offline"):
            model.ingest(topic(tid, "availability"), what.encode(), retain, now)
        elif what == "state":
            model.ingest(topic(tid, "state"), state(tid, now - dt, connects=connects), retain, now)
        elif what == "clear":
            model.ingest(topic(tid, "state"), b"", True, now)
        else:
            model.ingest(topic(tid, "event/order"), order_event(now, "-", what), False, now)
        model.tick(now)
    for status_name, ids in model.by_status.items():
        assert ids == {t for t, b in model.boxes.items() if b.status == status_name}
    assert model.deaf == {t for t, b in model.boxes.items() if b.deaf}
    for box in model.boxes.values():
        if box.status == "online" and box.heard_at is not None:
            assert now < box.heard_at + model.stale_after_s
