"""One meaning per document: duplicate keys and NaN/Infinity are refused, everywhere."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.strict_json import DuplicateKey, RequestBodyError, loads, request_object

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    max_leaves=20,
)


@given(_json)
def test_every_json_value_reads_back_as_itself(value: object) -> None:
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value).encode()) == value


@pytest.mark.parametrize(
    "document", ['{"a": 1, "a": 2}', '[{"x": {"k": 1, "k": 1}}]', '{"a": {}, "a": {}}']
)
def test_a_key_given_twice_is_refused_at_any_depth(document: str) -> None:
    with pytest.raises(DuplicateKey):
        loads(document)


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_constants_that_are_not_json_are_refused(constant: str) -> None:
    with pytest.raises(ValueError, match="is not JSON"):
        loads(f'{{"amount": {constant}}}')


def test_bytes_that_are_not_utf8_are_refused() -> None:
    with pytest.raises(UnicodeDecodeError):
        loads(b'{"a": "\xff"}')


@pytest.mark.parametrize(
    ("body", "code", "field"),
    [
        (b"\xff", "invalid_json", None),
        (b"[" * 100_000, "invalid_json", None),
        (b'{"amount": 1, "amount": 2}', "invalid_request", "amount"),
        (b"{", "invalid_json", None),
        (b"[1]", "invalid_json", None),
        (b'{"amount": 1, "tip": 2}', "invalid_request", "tip"),
    ],
)
def test_request_bodies_are_refused_with_the_apis_code_and_field(
    body: bytes, code: str, field: str | None
) -> None:
    with pytest.raises(RequestBodyError) as refused:
        request_object(body, frozenset({"amount"}))
    assert (refused.value.code, refused.value.field) == (code, field)


def test_a_request_body_with_allowed_keys_is_its_object() -> None:
    assert request_object(b'{"amount": 5}', frozenset({"amount", "method"})) == {"amount": 5}
