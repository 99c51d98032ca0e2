from __future__ import annotations

import pytest

from protocols.srl_frame import ACK, NAK, FrameDecoder, encode_frame
from protocols.srl_link import (
    ACK_TIMEOUT_S,
    DUPLICATE_HOLDOFF_S,
    LINE_IDLE_S,
    MAX_RETRANSMITS,
    FrameRejected,
    LinkDown,
    MessageReceived,
    MessageRejected,
    SrlLink,
)
from protocols.srl_messages import (
    CardInserted,
    Ping,
    Pong,
    ReadStarted,
    SrlMessageError,
    StartRead,
)

PONG = Pong("SR-200", "1.0", "0001")


def frame_of(out: bytes) -> bytes:
    """The frame in ``out`` (which may start with ACK/NAK bytes)."""
    return out.lstrip(bytes([ACK, NAK]))


def test_ping_pong_exchange() -> None:
    host, device = SrlLink("host"), SrlLink("device")
    host.send(Ping())
    device.receive_data(host.data_to_send(0.0), 0.0)
    assert device.events() == [MessageReceived(Ping(), 0)]
    device.send(PONG)
    out = device.data_to_send(0.0)
    assert out[0] == ACK, "the ACK goes out before the device's own frame"
    host.receive_data(out, 0.001)
    assert host.events() == [MessageReceived(PONG, 0)]
    assert host.idle
    assert not device.idle
    ack = host.data_to_send(0.002)
    assert ack == bytes([ACK])
    device.receive_data(ack, 0.002)
    assert device.idle


def test_stop_and_wait_holds_the_second_frame_until_ack() -> None:
    device = SrlLink("device")
    device.send(ReadStarted())
    device.send(CardInserted())
    first = device.data_to_send(0.0)
    assert device.data_to_send(0.01) == b""
    assert device.queued == 2
    device.receive_data(bytes([ACK]), 0.02)
    second = device.data_to_send(0.02)
    assert FrameDecoder().feed(first)[0].seq + 1 == FrameDecoder().feed(second)[0].seq  # type: ignore[union-attr]


def test_seq_wraps_after_255() -> None:
    host = SrlLink("host", initial_seq=255)
    host.send(Ping())
    host.send(Ping())
    assert frame_of(host.data_to_send(0.0))[3] == 255
    host.receive_data(bytes([ACK]), 0.0)
    assert frame_of(host.data_to_send(0.0))[3] == 0


def test_nak_makes_an_immediate_retransmission_with_the_same_seq() -> None:
    host = SrlLink("host")
    host.send(Ping())
    first = host.data_to_send(0.0)
    host.receive_data(bytes([NAK]), 0.01)
    assert host.data_to_send(0.01) == first
    assert host.stats.retransmits == 1 and host.stats.naks_received == 1


def test_silence_retransmits_three_times_then_link_down() -> None:
    host = SrlLink("host")
    host.send(Ping())
    host.send(StartRead(amount=1000, currency=410, modes=1, timeout_s=30))
    sent = [host.data_to_send(0.0)]
    now = 0.0
    for _ in range(MAX_RETRANSMITS):
        deadline = host.next_deadline()
        assert deadline is not None and deadline >= now + ACK_TIMEOUT_S
        now = deadline
        host.handle_timeout(now)
        sent.append(host.data_to_send(now))
    assert len(set(sent)) == 1, "every retransmission repeats the same frame"
    assert host.events() == []
    deadline = host.next_deadline()
    assert deadline is not None
    host.handle_timeout(deadline)
    assert host.events() == [LinkDown(dropped=2)]
    assert host.idle and host.next_deadline() is None
    assert host.stats.retransmits == MAX_RETRANSMITS and host.stats.link_downs == 1


def test_early_timeout_call_changes_nothing() -> None:
    host = SrlLink("host")
    host.send(Ping())
    host.data_to_send(0.0)
    host.handle_timeout(ACK_TIMEOUT_S / 2)
    assert host.data_to_send(ACK_TIMEOUT_S / 2) == b""


def test_ack_wait_includes_the_frame_transmission_time() -> None:
    slow = SrlLink("device", baudrate=9600)
    slow.send(Pong("m" * 1000, "f", "s"))
    out = slow.data_to_send(0.0)
    deadline = slow.next_deadline()
    assert deadline == pytest.approx(len(out) * 10 / 9600 + ACK_TIMEOUT_S)
    assert deadline is not None and deadline > 1.0


def test_duplicate_is_acked_again_but_delivered_once() -> None:
    device = SrlLink("device")
    wire = encode_frame(7, 0x01)
    device.receive_data(wire, 0.0)
    assert device.data_to_send(0.0) == bytes([ACK])
    device.receive_data(wire, 0.35)
    assert device.data_to_send(0.35) == bytes([ACK])
    assert device.events() == [MessageReceived(Ping(), 7)]
    assert device.stats.duplicates == 1


def test_immediate_duplicate_is_not_acked_again() -> None:
    device = SrlLink("device")
    wire = encode_frame(7, 0x01)
    device.receive_data(wire + wire, 0.0)
    assert device.data_to_send(0.0) == bytes([ACK])
    device.receive_data(wire, DUPLICATE_HOLDOFF_S / 2)
    assert device.data_to_send(DUPLICATE_HOLDOFF_S / 2) == b""
    assert device.events() == [MessageReceived(Ping(), 7)]


def test_same_seq_different_content_is_a_new_frame() -> None:
    host = SrlLink("host")
    host.receive_data(encode_frame(3, 0xB0), 0.0)
    host.receive_data(encode_frame(3, 0xB1), 0.01)
    assert len(host.events()) == 2


def test_bad_frame_is_naked_and_reported() -> None:
    host = SrlLink("host")
    bad = bytearray(encode_frame(1, 0x90))
    bad[-1] ^= 0xFF
    host.receive_data(bytes(bad), 0.0)
    assert host.data_to_send(0.0) == bytes([NAK])
    assert host.events() == [FrameRejected("crc")]
    assert host.stats.bad_crc == 1 and host.stats.naks_sent == 1


def test_good_frame_after_a_bad_copy_cancels_the_pending_nak() -> None:
    host = SrlLink("host")
    good = encode_frame(1, 0x90)
    bad = bytearray(good)
    bad[4] ^= 0x01
    # LEN_LO of an empty frame is 0x02, so the rescan after the bad copy meets a
    # false STX whose "frame" swallows the good copy until the line rests.
    host.receive_data(bytes(bad) + good, 0.0)
    host.handle_timeout(LINE_IDLE_S)
    assert host.events()[-1] == MessageReceived(ReadStarted(), 1)
    assert host.data_to_send(LINE_IDLE_S) == bytes([ACK])


def test_unknown_cmd_is_acked_but_rejected() -> None:
    host = SrlLink("host")
    host.receive_data(encode_frame(1, 0xC5, b"?"), 0.0)
    assert host.data_to_send(0.0) == bytes([ACK])
    (event,) = host.events()
    assert isinstance(event, MessageRejected) and event.cmd == 0xC5


def test_wrong_direction_is_rejected() -> None:
    host = SrlLink("host")
    host.receive_data(encode_frame(1, 0x01), 0.0)
    (event,) = host.events()
    assert isinstance(event, MessageRejected) and "host does not accept Ping" in event.reason
    with pytest.raises(SrlMessageError):
        host.send(ReadStarted())
    with pytest.raises(SrlMessageError):
        SrlLink("device").send(Ping())


def test_truncated_frame_is_dropped_after_line_idle() -> None:
    host = SrlLink("host")
    wire = encode_frame(2, 0xB0)
    host.receive_data(wire[:5], 0.0)
    assert host.next_deadline() == pytest.approx(LINE_IDLE_S)
    host.handle_timeout(LINE_IDLE_S)
    assert host.events()[0] == FrameRejected("truncated")
    assert host.data_to_send(LINE_IDLE_S) == bytes([NAK])
    assert host.next_deadline() is None
    host.receive_data(wire, LINE_IDLE_S + 0.3)
    assert host.events() == [MessageReceived(CardInserted(), 2)]


def test_ack_after_noise_is_not_trusted_until_the_line_rests() -> None:
    host = SrlLink("host")
    host.send(Ping())
    host.data_to_send(0.0)
    host.receive_data(b"\x41\x06", 0.01)
    assert not host.idle and host.stats.ignored_acks == 1
    host.handle_timeout(0.31)
    host.data_to_send(0.31)
    host.receive_data(bytes([ACK]), 0.32)
    assert host.idle


def test_reset_drops_queue_keeps_seq_and_duplicate_memory() -> None:
    host = SrlLink("host")
    host.receive_data(encode_frame(9, 0xB0), 0.0)
    host.send(Ping())
    assert frame_of(host.data_to_send(0.0))[3] == 0
    host.send(Ping())
    host.reset()
    assert host.idle
    host.send(Ping())
    assert frame_of(host.data_to_send(1.0))[3] == 1
    host.events()
    host.receive_data(encode_frame(9, 0xB0), 2.0)
    assert host.events() == []


def test_stats_dict_has_every_counter() -> None:
    stats = SrlLink("host").stats.as_dict()
    assert {
        "frames_in",
        "frames_out",
        "retransmits",
        "naks_sent",
        "naks_received",
        "bad_crc",
        "resyncs",
        "noise_bytes",
    } <= stats.keys()
