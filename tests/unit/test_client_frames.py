"""The uplink's hand-built WebSocket frames, read back by websockets' own parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from gateway.realtime.client import ClientFrames


def parse_all(data: bytes) -> list[Frame]:
    """Frames as a server parses them (it requires masked frames from a client)."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=True)
        try:
            next(parser)
        except StopIteration as done:
            frames.append(done.value)
        else:
            raise AssertionError("a frame was cut short")
    return frames


@pytest.mark.parametrize("size", [0, 1, 125, 126, 1350, 65535, 65536, 200_000])
def test_each_length_encoding_parses_back_to_the_same_text(size: int) -> None:
    payload = bytes(ord("a") + i % 26 for i in range(size))
    [frame] = parse_all(ClientFrames().text(payload))
    assert frame.opcode is Opcode.TEXT and frame.fin
    assert frame.data == payload


def test_every_frame_has_its_own_mask_key_across_refills() -> None:
    frames = ClientFrames()
    payload = b'{"type":"input_audio_buffer.append","audio":"AAAA"}'
    sent = [frames.text(payload) for _ in range(3 * ClientFrames.MASKS + 7)]
    assert all(f.data == payload for f in parse_all(b"".join(sent)))
    keys = [s[2:6] for s in sent]  # after the 2-byte header of a payload under 126 bytes
    # 32-bit keys from os.urandom: a repeat among ~3,000 is a 1-in-~4,000 event at most.
    assert len(set(keys)) >= len(keys) - 2
    assert all(s[1] & 0x80 for s in sent)  # the MASK bit
