from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.hid_keyboard import MAX_CODE_CHARS, HidKeyboardDecoder, reports_for_text

RELEASE = bytes(8)
LSHIFT, RSHIFT, LCTRL = 0x02, 0x20, 0x01


def report(modifiers: int, *usages: int) -> bytes:
    return bytes([modifiers, 0, *usages, *[0] * (6 - len(usages))])


def feed_all(decoder: HidKeyboardDecoder, reports: list[bytes]) -> list[str]:
    codes: list[str] = []
    for r in reports:
        codes += decoder.feed(r)
    return codes


def test_a_scanner_typing_press_release() -> None:
    # "Ab1+" then Enter, each key pressed and released, as a Honeywell in USB keyboard mode.
    reports = [
        report(LSHIFT, 0x04), RELEASE,
        report(0, 0x05), RELEASE,
        report(0, 0x1E), RELEASE,
        report(RSHIFT, 0x2E), RELEASE,
        report(0, 0x28), RELEASE,
    ]  # fmt: skip
    decoder = HidKeyboardDecoder()
    assert feed_all(decoder, reports[:-2]) == []
    assert decoder.pending_chars == 4
    assert feed_all(decoder, reports[-2:]) == ["Ab1+"]
    assert decoder.pending_chars == 0


def test_shift_held_across_keys() -> None:
    reports = [report(LSHIFT), report(LSHIFT, 0x0B), report(LSHIFT), report(LSHIFT, 0x0C),
               RELEASE, report(0, 0x28), RELEASE]  # fmt: skip
    assert feed_all(HidKeyboardDecoder(), reports) == ["HI"]


def test_roll_over_types_each_key_once() -> None:
    # a down, b down (a held), a up, c down (b held), all up, Enter.
    reports = [report(0, 0x04), report(0, 0x04, 0x05), report(0, 0x05), report(0, 0x05, 0x06),
               RELEASE, report(0, 0x28), RELEASE]  # fmt: skip
    assert feed_all(HidKeyboardDecoder(), reports) == ["abc"]


def test_new_key_in_a_report_with_shift_takes_the_shift() -> None:
    reports = [report(0, 0x04), report(LSHIFT, 0x04, 0x05), RELEASE, report(0, 0x28), RELEASE]
    assert feed_all(HidKeyboardDecoder(), reports) == ["aB"]


def test_same_key_twice_needs_a_release_between() -> None:
    decoder = HidKeyboardDecoder()
    held = [report(0, 0x04), report(0, 0x04), report(0, 0x04), RELEASE, report(0, 0x28)]
    assert feed_all(decoder, held) == ["a"]
    again = [report(0, 0x04), RELEASE, report(0, 0x04), RELEASE, report(0, 0x28)]
    assert feed_all(decoder, [RELEASE, *again]) == ["aa"]


def test_two_new_keys_in_one_report_type_in_slot_order() -> None:
    reports = [report(0, 0x06, 0x04), RELEASE, report(0, 0x28)]
    assert feed_all(HidKeyboardDecoder(), reports) == ["ca"]


def test_error_roll_over_report_is_ignored_and_keeps_held_keys() -> None:
    decoder = HidKeyboardDecoder()
    reports = [report(0, 0x04), report(0, *[0x01] * 6), report(0, 0x04, 0x05), RELEASE,
               report(0, 0x28)]  # fmt: skip
    assert feed_all(decoder, reports) == ["ab"]
    assert decoder.rollover_errors == 1


@pytest.mark.parametrize("bad", [b"", bytes(7), bytes(9), b"\x01\x00\x04\x00\x00\x00\x00\x00\x00"])
def test_wrong_length_reports_are_counted_and_dropped(bad: bytes) -> None:
    decoder = HidKeyboardDecoder()
    reports = [report(0, 0x04), RELEASE, bad, report(0, 0x05), RELEASE, report(0, 0x28)]
    assert feed_all(decoder, reports) == ["ab"]
    assert decoder.malformed == 1


def test_enter_alone_yields_nothing_and_keypad_enter_ends_a_code() -> None:
    decoder = HidKeyboardDecoder()
    assert feed_all(decoder, [report(0, 0x28), RELEASE]) == []
    reports = [report(0, 0x59), RELEASE, report(0, 0x62), RELEASE, report(0, 0x57), RELEASE,
               report(0, 0x58)]  # fmt: skip
    assert feed_all(decoder, reports) == ["10+"]


def test_unknown_and_control_keys_are_dropped_and_counted() -> None:
    decoder = HidKeyboardDecoder()
    reports = [report(0, 0x04), RELEASE, report(0, 0x3A), RELEASE,  # F1
               report(LCTRL, 0x30), RELEASE,  # Ctrl+] (GS in GS1 codes)
               report(0, 0x05), RELEASE, report(0, 0x28)]  # fmt: skip
    assert feed_all(decoder, reports) == ["ab"]
    assert decoder.unknown_keys == 2


def test_cap_keeps_exactly_max_chars() -> None:
    decoder = HidKeyboardDecoder()
    text = "A" * MAX_CODE_CHARS
    assert feed_all(decoder, reports_for_text(text)) == [text]
    assert decoder.overflows == 0


def test_longer_input_is_discarded_up_to_the_next_enter() -> None:
    decoder = HidKeyboardDecoder()
    long = reports_for_text("b" * (MAX_CODE_CHARS + 1))
    assert feed_all(decoder, long) == []
    assert decoder.overflows == 1
    assert feed_all(decoder, reports_for_text("next")) == ["next"]


def test_reset_forgets_a_partial_code_and_held_keys() -> None:
    decoder = HidKeyboardDecoder()
    feed_all(decoder, [report(0, 0x04), RELEASE, report(0, 0x05)])
    decoder.reset()
    assert feed_all(decoder, [report(0, 0x05), RELEASE, report(0, 0x28)]) == ["b"]


def test_reports_for_text_refuses_untypable_characters() -> None:
    with pytest.raises(ValueError, match=r"U\+D55C"):
        reports_for_text("한")
    with pytest.raises(ValueError, match=r"U\+000A"):
        reports_for_text("a\nb")


def test_reports_for_text_with_roll_over_overlaps_keys() -> None:
    reports = reports_for_text("ab", rollover=True)
    assert reports == [report(0, 0x04), report(0, 0x04, 0x05), report(0, 0x05, 0x28), RELEASE]
    # A repeated key is released in between even with roll-over.
    assert reports_for_text("aa", rollover=True, enter=False) == [
        report(0, 0x04), RELEASE, report(0, 0x04), RELEASE
    ]  # fmt: skip


_TYPABLE = st.text(
    st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
        " !@#$%^&*()-_=+[{]}\\|;:'\",<.>/?`~"
    ),
    min_size=1,
    max_size=300,
)


@given(st.lists(_TYPABLE, min_size=1, max_size=4), st.booleans(), st.booleans())
def test_text_to_reports_to_text(codes: list[str], rollover: bool, right_shift: bool) -> None:
    decoder = HidKeyboardDecoder()
    reports = [
        r for c in codes for r in reports_for_text(c, rollover=rollover, right_shift=right_shift)
    ]
    assert feed_all(decoder, reports) == codes


@given(st.lists(st.binary(min_size=0, max_size=10), max_size=50))
def test_any_reports_never_raise(reports: list[bytes]) -> None:
    decoder = HidKeyboardDecoder()
    for code in feed_all(decoder, reports):
        assert 0 < len(code) <= MAX_CODE_CHARS
