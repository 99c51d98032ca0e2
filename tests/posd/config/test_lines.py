"""Key line location in TOML text, and config parsing of arbitrary well-formed TOML."""

from __future__ import annotations

import string
import tomllib
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from posd.config import Config, ConfigError, parse_config
from posd.config.lines import KeyPath, format_key_path, line_of, locate_keys
from tests.helpers.configs import to_toml

keys = st.text(alphabet=string.ascii_letters + string.digits + "_-. \"'#=[]{}é", min_size=1)
scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.text(),
)
values = st.one_of(
    scalars, st.lists(scalars, max_size=4), st.dictionaries(keys, scalars, max_size=3)
)
documents = st.dictionaries(keys, st.dictionaries(keys, values, max_size=5), max_size=5)


@given(documents)
def test_every_key_and_element_is_found_on_the_line_it_was_written(
    sections: dict[str, dict[str, object]],
) -> None:
    text = to_toml(sections)
    assert tomllib.loads(text) == sections
    lines = locate_keys(text)
    row = 1
    for name, section in sections.items():
        assert lines[(name,)] == row
        row += 1
        for key, value in section.items():
            assert lines[(name, key)] == row
            if isinstance(value, list):
                assert all(lines[(name, key, i)] == row for i in range(len(value)))
            if isinstance(value, dict):
                assert all(lines[(name, key, k)] == row for k in value)
            row += 1
        row += 1


def test_multiline_strings_arrays_and_comments_keep_lines_straight() -> None:
    text = (
        'a.b = """one\n'  # 1
        'two = "not a key"\n'  # 2
        '"""\n'  # 3
        "[t]  # [not.a.header]\n"  # 4
        "list = [ # start\n"  # 5
        "  '''x\n"  # 6
        "y''',\n"  # 7
        '  "z\\"]",\n'  # 8
        "  [1, 2],\n"  # 9
        "]\n"  # 10
        "'lit.key' = 1\n"  # 11
        "[[arr]]\n"  # 12
        "k = 1\n"  # 13
        "[[arr]]\n"  # 14
        "k = 2\n"  # 15
    )
    lines = locate_keys(text)
    assert lines[("a",)] == lines[("a", "b")] == 1
    assert ("two",) not in lines and ("a", "two") not in lines
    assert lines[("t",)] == 4 and lines[("t", "list")] == 5
    assert [lines[("t", "list", i)] for i in range(3)] == [6, 8, 9]
    assert lines[("t", "list", 2, 1)] == 9
    assert lines[("t", "lit.key")] == 11
    assert lines[("arr", 0, "k")] == 13 and lines[("arr", 1, "k")] == 15


def test_line_of_falls_back_to_the_parent_then_line_1() -> None:
    lines: dict[KeyPath, int] = {("ledger",): 7, ("ledger", "host"): 8}
    assert line_of(lines, ("ledger", "host")) == 8
    assert line_of(lines, ("ledger", "port")) == 7
    assert line_of(lines, ("mqtt", "port")) == 1


def test_key_paths_are_written_the_toml_way() -> None:
    assert format_key_path(("ledger", "ca_file")) == "ledger.ca_file"
    assert format_key_path(("card_reader", "accepted_prefixes", 2)) == (
        "card_reader.accepted_prefixes[2]"
    )
    assert format_key_path(("qr", "platform_keys", "1")) == "qr.platform_keys.1"
    assert format_key_path(("qr", "platform_keys", 'a."b')) == 'qr.platform_keys."a.\\"b"'


known = st.sampled_from(
    ["terminal", "card_reader", "qr_scanner", "qr", "ledger", "offline", "mqtt", "orders",
     "audio", "api", "storage", "logging"]
)  # fmt: skip
known_keys = st.sampled_from(
    ["id", "port", "host", "tls", "kind", "platform_keys", "accepted_prefixes", "operator_keys",
     "topic", "base_topic", "timeout_s", "repeat_s", "volume", "usb_vendor_id", "level"]
)  # fmt: skip


@given(st.dictionaries(known | keys, st.dictionaries(known_keys | keys, values, max_size=6)))
def test_any_well_formed_toml_gives_a_config_or_placed_problems(
    sections: dict[str, dict[str, object]],
) -> None:
    text = to_toml(sections)
    try:
        config = parse_config(text, Path("fuzz.toml"))
    except ConfigError as exc:
        assert exc.problems
        for problem in exc.problems:
            assert problem.line is not None and 1 <= problem.line <= max(1, text.count("\n"))
            assert problem.key_path and problem.message
    else:
        assert isinstance(config, Config)
