"""BER-TLV as EMV uses it (EMV Book 3 Annex B, ISO/IEC 7816-4 subset).

Decoding is strict about bounds and lazy about nesting: a constructed object keeps its
value as bytes and is only decoded when `.children()` is asked for, so a malformed
template deep inside card data does not stop the fields around it from being read.

Padding: EMV allows bytes 0x00 before, between and after objects (erased records), and
ISO/IEC 7816-4 reserves 0xFF as a first tag byte for the same purpose. Both are skipped
where a tag would start and never returned; `encode_tlv` writes none.

Lengths: short form, or long form with 1 to 3 length bytes (0x81, 0x82, 0x83). The
indefinite form (0x80) is a BER feature EMV forbids and is refused, as are longer
forms. Non-minimal long forms (0x81 0x05) are accepted on input because cards in the
field use them; encoding is always minimal.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MAX_DEPTH", "Tlv", "TlvError", "decode_tlv", "encode_tlv", "find_tag", "tag_bytes"]

_PADDING = (0x00, 0xFF)
_MAX_TAG_BYTES = 4
_MAX_LENGTH_BYTES = 3
# EMV templates nest three or four deep; the bound keeps a hostile input from costing
# quadratic copying in find_tag.
MAX_DEPTH = 16


class TlvError(ValueError):
    """Malformed BER-TLV; `offset` is the index in the outermost buffer where it shows."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Tlv:
    tag: int
    value: bytes
    # Where `value` starts in the buffer it was decoded from, so errors found later by
    # children() point into the original input. Not part of equality.
    value_offset: int = field(default=0, compare=False, repr=False)

    @property
    def constructed(self) -> bool:
        # Bit 6 of the first tag byte; the tag int holds that byte in its top octet.
        if self.tag <= 0:
            return False
        return bool((self.tag >> ((self.tag.bit_length() - 1) // 8 * 8)) & 0x20)

    def children(self) -> list[Tlv]:
        """Decode the value of a constructed object (a template) as TLV."""
        if not self.constructed:
            raise TlvError(f"tag {self.tag:X} is primitive, it has no children", self.value_offset)
        return _decode(self.value, self.value_offset)

    def __repr__(self) -> str:
        # Values can be card data: the repr tells the shape, never the content.
        return f"Tlv(tag=0x{self.tag:X}, len={len(self.value)})"


def tag_bytes(tag: int) -> bytes:
    """The encoded form of `tag`; ValueError when it is not a well-formed BER tag."""
    if tag <= 0:
        raise ValueError(f"tag {tag:#x} is not a BER-TLV tag")
    raw = tag.to_bytes((tag.bit_length() + 7) // 8, "big")
    if raw[0] in _PADDING:
        raise ValueError(f"tag {tag:#x}: first byte {raw[0]:#04x} is reserved for padding")
    if len(raw) > _MAX_TAG_BYTES:
        raise ValueError(f"tag {tag:#x} is longer than {_MAX_TAG_BYTES} bytes")
    multi = raw[0] & 0x1F == 0x1F
    if not multi:
        if len(raw) != 1:
            raise ValueError(f"tag {tag:#x}: first byte does not announce subsequent bytes")
        return raw
    if len(raw) == 1:
        raise ValueError(f"tag {tag:#x}: first byte announces subsequent bytes, none follow")
    if any(b & 0x80 == 0 for b in raw[1:-1]) or raw[-1] & 0x80:
        raise ValueError(f"tag {tag:#x}: only its last byte may have bit 8 clear")
    return raw


def _encode_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    width = (n.bit_length() + 7) // 8
    if width > _MAX_LENGTH_BYTES:
        raise ValueError(f"value of {n} bytes is too long for BER-TLV as EMV uses it")
    return bytes([0x80 | width]) + n.to_bytes(width, "big")


def encode_tlv(items: Iterable[Tlv]) -> bytes:
    return b"".join(tag_bytes(t.tag) + _encode_length(len(t.value)) + t.value for t in items)


def decode_tlv(data: bytes) -> list[Tlv]:
    """Decode one level of TLV objects; TlvError on anything out of bounds or malformed."""
    return _decode(bytes(data), 0)


def _decode(data: bytes, base: int) -> list[Tlv]:
    items: list[Tlv] = []
    pos = 0
    end = len(data)
    while pos < end:
        if data[pos] in _PADDING:
            pos += 1
            continue
        start = pos
        first = data[pos]
        pos += 1
        if first & 0x1F == 0x1F:
            while True:
                if pos >= end:
                    raise TlvError("tag runs past the end of the data", base + start)
                if pos - start >= _MAX_TAG_BYTES:
                    raise TlvError(f"tag longer than {_MAX_TAG_BYTES} bytes", base + start)
                b = data[pos]
                pos += 1
                if not b & 0x80:
                    break
        tag = int.from_bytes(data[start:pos], "big")
        if pos >= end:
            raise TlvError(f"tag {tag:X} has no length", base + pos)
        length_at = pos
        lb = data[pos]
        pos += 1
        if lb == 0x80:
            raise TlvError(f"tag {tag:X}: indefinite length is not allowed", base + length_at)
        if lb > 0x80:
            width = lb & 0x7F
            if width > _MAX_LENGTH_BYTES:
                raise TlvError(
                    f"tag {tag:X}: {width} length bytes, at most {_MAX_LENGTH_BYTES} allowed",
                    base + length_at,
                )
            if pos + width > end:
                raise TlvError(f"tag {tag:X}: length runs past the end", base + length_at)
            length = int.from_bytes(data[pos : pos + width], "big")
            pos += width
        else:
            length = lb
        if pos + length > end:
            raise TlvError(
                f"tag {tag:X}: length {length} exceeds the {end - pos} bytes left",
                base + length_at,
            )
        items.append(Tlv(tag, data[pos : pos + length], base + pos))
        pos += length
    return items


def find_tag(items: Iterable[Tlv], tag: int) -> Tlv | None:
    """The first object with `tag`, depth first through constructed templates.

    Templates are decoded on the way, so a malformed one raises TlvError; templates
    nested deeper than MAX_DEPTH raise TlvError too.
    """
    stack: list[tuple[int, list[Tlv]]] = [(0, list(items))]
    while stack:
        depth, level = stack.pop()
        for i, item in enumerate(level):
            if item.tag == tag:
                return item
            if item.constructed:
                if depth >= MAX_DEPTH:
                    raise TlvError(f"templates nested deeper than {MAX_DEPTH}", item.value_offset)
                # Resume this level after the template, then search the template first.
                stack.append((depth, level[i + 1 :]))
                stack.append((depth + 1, item.children()))
                break
    return None
