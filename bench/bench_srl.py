"""SRL/1 receive path throughput, single core: chip CARD_DATA frames through
the FrameDecoder and decode_message, and the same through a host link; and
the driver's PING round trip to the simulated reader over a real pty."""

from __future__ import annotations

import asyncio
import statistics
import time

from bench.timing import items_per_second
from drivers.card_reader import CardReader
from posd.sim import SimulatedCardReader
from protocols.ber_tlv import Tlv, encode_tlv
from protocols.srl_frame import Frame, FrameDecoder, encode_frame
from protocols.srl_link import SrlLink
from protocols.srl_messages import CardData, EntryMode, decode_message, encode_message

BATCH = 64


def chip_card_data() -> CardData:
    """CARD_DATA as a contact chip read sends it: the tags reader-link.md lists, with 57."""
    tlv = encode_tlv(
        [
            Tlv(0x5A, bytes.fromhex("9410123456789012")),
            Tlv(0x5F24, bytes.fromhex("281231")),
            Tlv(0x5F34, b"\x01"),
            Tlv(0x57, bytes.fromhex("9410123456789012D2812201123456789F")),
            Tlv(0x9F26, bytes.fromhex("1A2B3C4D5E6F7081")),
            Tlv(0x9F27, b"\x80"),
            Tlv(0x9F10, bytes.fromhex("0110A00003220000000000000000000000FF")),
            Tlv(0x9F37, bytes.fromhex("0BADF00D")),
            Tlv(0x9F36, b"\x00\x42"),
            Tlv(0x95, bytes(5)),
            Tlv(0x9A, bytes.fromhex("261125")),
            Tlv(0x9C, b"\x00"),
            Tlv(0x9F02, bytes.fromhex("000000012000")),
            Tlv(0x5F2A, bytes.fromhex("0410")),
            Tlv(0x82, bytes.fromhex("1980")),
            Tlv(0x84, bytes.fromhex("D4100000014601")),
            Tlv(0x9F1A, bytes.fromhex("0410")),
            Tlv(0x9F33, bytes.fromhex("E0F8C8")),
            Tlv(0x9F34, bytes.fromhex("420300")),
        ]
    )
    return CardData(EntryMode.CHIP, tlv)


async def _pty_round_trips(count: int = 200) -> list[float]:
    async with SimulatedCardReader() as sim:
        reader = CardReader(sim.port)
        running = asyncio.create_task(reader.run(lambda: None))
        try:
            async with asyncio.timeout(5):
                await reader.wait_for_state("ready")
            times = []
            for _ in range(count):
                start = time.perf_counter()
                await reader.ping()
                times.append(time.perf_counter() - start)
            return times
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)


def main() -> None:
    cmd, data = encode_message(chip_card_data())
    frame = encode_frame(1, cmd, data)
    stream = b"".join(encode_frame(seq, cmd, data) for seq in range(BATCH))
    decoder = FrameDecoder()

    def parse_batch() -> int:
        n = 0
        for event in decoder.feed(stream):
            if isinstance(event, Frame):
                decode_message(event.cmd, event.data)
                n += 1
        return n

    def parse_one() -> int:
        (event,) = decoder.feed(frame)
        assert isinstance(event, Frame)
        decode_message(event.cmd, event.data)
        return 1

    host = SrlLink("host")
    clock = [0.0]

    def link_batch() -> int:
        clock[0] += 1.0
        host.receive_data(stream, clock[0])
        host.data_to_send(clock[0])
        return len(host.events())

    print(f"srl: card_data frame size: {len(frame)} bytes")
    print(f"srl: frames parsed/s: {items_per_second(parse_batch):.0f}")
    print(f"srl: card_data frame decode: {1e6 / items_per_second(parse_one):.1f} us")
    print(f"srl: frames through host link/s: {items_per_second(link_batch):.0f}")
    encodes = items_per_second(lambda: bool(encode_frame(1, cmd, data)))
    print(f"srl: frame encode: {1e6 / encodes:.1f} us")
    trips = asyncio.run(_pty_round_trips())
    print(
        f"srl: PING->PONG over a pty (driver and simulator, one loop): "
        f"median {statistics.median(trips) * 1e6:.0f} us, "
        f"max {max(trips) * 1e6:.0f} us"
    )


if __name__ == "__main__":
    main()
