"""The compiled media kernels (gateway/media/_dsp.c) against their numpy reference, bit for bit.

The suite runs where the module is built (``pip install -e .`` compiles it; CI has gcc), so
every other media test exercises the C path; these tests tie it to the numpy one, which an
install without a compiler uses.
"""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from gateway.media import g711
from gateway.media.minphase import MinPhaseResampler
from gateway.media.minphase_rational import RationalMinPhaseResampler
from gateway.media.native import dsp
from gateway.media.rtp import MAX_PACKET_SIZE, RtpSender

RATES = [(8000, 24000), (24000, 8000), (8000, 16000), (16000, 8000), (8000, 48000), (48000, 8000)]
# G.722's 16 <-> 24 kHz, and ratios whose phases and lanes differ from it (a 5/4, 4/5 too)
RATIONAL = [(16000, 24000), (24000, 16000), (8000, 24000), (24000, 8000), (16000, 20000),
            (20000, 16000)]  # fmt: skip


def test_the_module_is_built_here() -> None:
    assert dsp is not None, "gateway/media/_dsp.c did not build: pip install -e . needs gcc"


def _chunks(rate: int, seed: int) -> list[np.ndarray]:
    """Chunks of every length a call can feed: empty, one sample, 20 ms, a 100 ms delta,
    longer than the filter's 40 ms piece, at levels that clip."""
    rng = np.random.default_rng(seed)
    lengths = [0, 1, 2, 3, rate // 50, rate // 10, rate // 25 + 1, 7 * rate // 100]
    lengths += [int(n) for n in rng.integers(0, rate // 8, 40)]
    out = []
    for n in lengths:
        level = float(rng.choice([30.0, 3000.0, 60000.0]))
        out.append((rng.standard_normal(n) * level).clip(-32768, 32767).astype(np.int16))
    return out


@pytest.mark.parametrize(
    ("kind", "rates"),
    [(MinPhaseResampler, r) for r in RATES] + [(RationalMinPhaseResampler, r) for r in RATIONAL],
)
def test_the_fir_gives_numpys_samples_for_any_chunking(kind: type, rates: tuple[int, int]) -> None:
    native, reference = kind(*rates), kind(*rates, native=False)
    assert native._native is not None and reference._native is None
    for i, chunk in enumerate(_chunks(rates[0], sum(rates))):
        if i == 20:  # a barge-in mid-stream: both forget the same history and phase
            native.reset()
            reference.reset()
        got, want = native.process(chunk), reference.process(chunk)
        assert got.dtype == np.int16 and got.flags.writeable
        np.testing.assert_array_equal(got, want)
        assert native.delay_ms == reference.delay_ms


def test_the_fir_rounds_half_to_even_and_clips_like_numpy() -> None:
    """Full-scale square waves drive the sums past int16 both ways; a single sample at each
    level lands on every rounding case of the taps."""
    for kind, rates in [(MinPhaseResampler, r) for r in RATES[:2]] + [
        (RationalMinPhaseResampler, r) for r in RATIONAL[:2]
    ]:
        native, reference = kind(*rates), kind(*rates, native=False)
        square = np.tile(np.array([32767] * 6 + [-32768] * 6, dtype=np.int16), 40)
        np.testing.assert_array_equal(native.process(square), reference.process(square))
        for level in (-32768, -3, -1, 1, 2, 5, 32767):
            impulse = np.zeros(97, dtype=np.int16)
            impulse[0] = level
            np.testing.assert_array_equal(native.process(impulse), reference.process(impulse))


def test_the_fir_refuses_what_it_cannot_filter() -> None:
    assert dsp is not None
    fir = dsp.Fir(np.ones(6).tobytes(), 3, 1, 320)
    with pytest.raises(ValueError, match="int16"):
        fir.process(b"\x00\x01\x02")
    for weights, up, down, piece in [
        (np.ones(5), 3, 1, 320),  # not a whole number of phases
        (np.ones(0), 1, 3, 320),
        (np.ones(6), 0, 1, 320),
        (np.ones(6), 3, 0, 320),
        (np.ones(6), 3, 1, 0),
    ]:
        with pytest.raises(ValueError, match="bad weights"):
            dsp.Fir(weights.tobytes(), up, down, piece)
    with pytest.raises(ValueError, match="not initialised"):
        dsp.Fir.__new__(dsp.Fir).process(b"")
    with pytest.raises(ValueError, match="contiguous"):
        fir.process(np.zeros(8, dtype=np.int16)[::2])  # a strided view is not one buffer


def test_the_resampler_takes_a_strided_view_as_numpy_did() -> None:
    samples = (np.arange(960) * 37 % 2000 - 1000).astype(np.int16)
    native, reference = MinPhaseResampler(8000, 24000), MinPhaseResampler(8000, 24000, False)
    np.testing.assert_array_equal(native.process(samples[::2]), reference.process(samples[::2]))


@pytest.mark.parametrize("law", [g711.PCMU, g711.PCMA], ids=lambda c: c.name)
def test_g711_in_c_is_the_tables_for_every_sample_and_code(law: g711.G711) -> None:
    every = np.arange(-32768, 32768, dtype=np.int16)
    assert law.encode(every) == law._encode_lut.take(every.view(np.uint16)).tobytes()
    assert law.encode(every[::3]) == law._encode_lut.take(every[::3].view(np.uint16)).tobytes()
    decoded = law.decode(bytes(range(256)))
    np.testing.assert_array_equal(decoded, law._decode_lut)
    assert decoded.flags.writeable  # a new array the caller owns, as numpy's take gives
    assert law.decode(memoryview(bytes(range(256)))[10:20]).tolist() == (
        law._decode_lut[10:20].tolist()
    )


def test_the_gathers_refuse_tables_of_the_wrong_size() -> None:
    assert dsp is not None
    with pytest.raises(ValueError, match="65536"):
        dsp.take_u8(bytes(256), np.zeros(4, dtype=np.int16))
    with pytest.raises(ValueError, match="int16"):
        dsp.take_u8(bytes(65536), b"\x00")
    with pytest.raises(ValueError, match="256 int16"):
        dsp.take_i16(bytes(256), b"\x00")


def test_the_energy_in_c_is_numpys_float_dot_exactly() -> None:
    """The local voice detector's level (voice_onset.py): integer sums, so the same float."""
    assert dsp is not None
    rng = np.random.default_rng(19)
    extremes = np.array([-32768, 32767, -32768, 0, 1, -1], dtype=np.int16)
    frames = [extremes, np.full(480, -32768, dtype=np.int16), np.zeros(0, dtype=np.int16)]
    frames += [rng.integers(-32768, 32768, n, dtype=np.int16) for n in (1, 159, 160, 320, 4800)]
    for frame in frames:
        f = frame.astype(np.float64)
        assert dsp.energy(frame) == float(np.dot(f, f))
    assert dsp.energy(np.full(160, -32768, dtype=np.int16)) == 160 * 2.0**30


def test_the_energy_refuses_what_is_not_contiguous_int16() -> None:
    assert dsp is not None
    for wrong in (np.zeros(4, dtype=np.float64), np.zeros(4, dtype=np.int32), b"\x00\x00"):
        with pytest.raises(ValueError, match="int16"):
            dsp.energy(wrong)
    with pytest.raises((ValueError, BufferError)):
        dsp.energy(np.zeros(8, dtype=np.int16)[::2])


def test_gateway_numpy_media_keeps_to_numpy() -> None:
    """The switch bench_frame and bench_load compare with: the module is not loaded."""
    code = "from gateway.media.native import dsp; raise SystemExit(dsp is not None)"
    env = {**os.environ, "GATEWAY_NUMPY_MEDIA": "1"}
    assert subprocess.run([sys.executable, "-c", code], env=env, timeout=60).returncode == 0


@pytest.fixture
def udp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A sender and a receiver on loopback; the receiver's reads time out, never hang."""
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with tx, rx:
        tx.bind(("127.0.0.1", 0))
        rx.bind(("127.0.0.1", 0))
        rx.settimeout(5)
        yield tx, rx


@pytest.mark.parametrize("law", [g711.PCMU, g711.PCMA], ids=lambda c: c.name)
def test_a_packet_sent_in_c_is_the_one_python_builds(
    law: g711.G711, udp_pair: tuple[socket.socket, socket.socket]
) -> None:
    """Header, G.711 payload, marker, sequence and timestamp wrapping: the bytes on the wire
    are RtpSender.build's of law.encode's, packet for packet."""
    assert dsp is not None
    tx, rx = udp_pair
    dest = dsp.sockaddr(*rx.getsockname())
    rng = np.random.default_rng(7)
    native = RtpSender(
        law.payload_type, 160, ssrc=0xFEDCBA98, sequence=0xFFFE, timestamp=2**32 - 200
    )
    python = RtpSender(
        law.payload_type, 160, ssrc=0xFEDCBA98, sequence=0xFFFE, timestamp=2**32 - 200
    )
    for i in range(6):
        frame = rng.integers(-32768, 32768, 160, dtype=np.int16)
        marker = i in (0, 3)
        assert native.send(tx.fileno(), dest, frame, law.encode_table, marker) == 0
        assert rx.recv(2048) == bytes(python.build(law.encode(frame), marker=marker))
    raw = bytes(range(200))  # a coded payload (G.722, Opus, silence) goes as it is
    assert native.send(tx.fileno(), dest, raw, None, False) == 0
    assert rx.recv(2048) == bytes(python.build(raw))
    assert (native.sequence, native.timestamp) == (python.sequence, python.timestamp) == (5, 920)


def test_the_c_send_refuses_what_it_cannot_send_and_advances_nothing(
    udp_pair: tuple[socket.socket, socket.socket],
) -> None:
    assert dsp is not None
    tx, rx = udp_pair
    dest = dsp.sockaddr(*rx.getsockname())
    sender = RtpSender(0, 160, sequence=10, timestamp=1000)
    table = g711.PCMU.encode_table
    with pytest.raises(ValueError, match="too large"):
        sender.send(tx.fileno(), dest, bytes(MAX_PACKET_SIZE - 11), None, False)
    with pytest.raises(TypeError, match="int16"):
        sender.send(tx.fileno(), dest, np.zeros(160, dtype=np.float32), table, False)
    with pytest.raises((ValueError, BufferError)):
        sender.send(tx.fileno(), dest, np.zeros(320, dtype=np.int16)[::2], table, False)
    with pytest.raises(ValueError, match="65536"):
        sender.send(tx.fileno(), dest, np.zeros(160, dtype=np.int16), bytes(256), False)
    with pytest.raises(TypeError, match="sockaddr"):
        sender.send(tx.fileno(), rx.getsockname(), b"\x00", None, False)  # type: ignore[arg-type]
    assert (sender.sequence, sender.timestamp) == (10, 1000)
    # The largest payload goes; a refused send is an errno, counted by the stream, not raised.
    assert sender.send(tx.fileno(), dest, bytes(MAX_PACKET_SIZE - 12), None, False) == 0
    assert len(rx.recv(4096)) == MAX_PACKET_SIZE
    v6 = dsp.sockaddr("::1", 5004)
    assert sender.send(tx.fileno(), v6, b"\x00", None, False) == errno.EAFNOSUPPORT
    assert (sender.sequence, sender.timestamp) == (12, 1320)  # sent or not, the clock runs


def test_sockaddr_takes_numeric_addresses_only() -> None:
    """Never a lookup on the event loop: a name is refused, as sdp.py refuses one."""
    assert dsp is not None
    v4 = dsp.sockaddr("127.0.0.2", 5004)
    assert len(v4) == 16 and v4[2:8] == b"\x13\x8c\x7f\x00\x00\x02"  # port, then the address
    v6 = dsp.sockaddr("2001:db8::1", 5004)
    assert (
        len(v6) == 28
        and v6[2:4] == b"\x13\x8c"
        and v6[8:24] == socket.inet_pton(socket.AF_INET6, "2001:db8::1")
    )
    for name in ("localhost", "example.invalid", ""):
        with pytest.raises(ValueError, match="numeric"):
            dsp.sockaddr(name, 5004)
    with pytest.raises(ValueError, match="port"):
        dsp.sockaddr("127.0.0.1", 65536)
