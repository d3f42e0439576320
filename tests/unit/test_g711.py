"""G.711 against golden vectors from a scalar port of ITU-T G.191, and against audioop."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from gateway.media.g711 import G711, PCMA, PCMU, codec_by_name, codec_by_payload_type

DATA = Path(__file__).resolve().parents[1] / "data" / "g711"
ALL_INT16 = np.arange(-32768, 32768, dtype=np.int32).astype(np.int16)
CODES = bytes(range(256))
LAWS = {"PCMU": PCMU, "PCMA": PCMA}


def _load_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("g711_reference", DATA / "g711_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ref = _load_reference()
ITU = {
    "PCMU": (ref.itu_ulaw_compress, ref.itu_ulaw_expand),
    "PCMA": (ref.itu_alaw_compress, ref.itu_alaw_expand),
}


def golden(name: str) -> bytes:
    return (DATA / name).read_bytes()


def golden_decode(law: str) -> np.ndarray:
    return np.frombuffer(golden(f"{law.lower()}_decode.bin"), dtype="<i2").astype(np.int16)


@pytest.fixture(scope="module")
def audioop() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import audioop
        except ImportError:
            pytest.skip("audioop is not importable (removed in Python 3.13, PEP 594)")
    return audioop


# --- golden vectors --------------------------------------------------------------------------


@pytest.mark.parametrize("law", LAWS)
def test_encode_every_int16_matches_golden(law: str) -> None:
    assert LAWS[law].encode(ALL_INT16) == golden(f"{law.lower()}_encode_all.bin")


@pytest.mark.parametrize("law", LAWS)
def test_encode_log_sweep_matches_golden(law: str) -> None:
    sweep = np.frombuffer(golden("log_sweep_s16le.bin"), dtype="<i2").astype(np.int16)
    assert sweep.min() == -32768 and sweep.max() == 32767 and 0 in sweep
    assert LAWS[law].encode(sweep) == golden(f"{law.lower()}_encode_log.bin")


@pytest.mark.parametrize("law", LAWS)
def test_decode_every_code_matches_golden(law: str) -> None:
    decoded = LAWS[law].decode(CODES)
    assert decoded.dtype == np.int16
    np.testing.assert_array_equal(decoded, golden_decode(law))


@pytest.mark.parametrize("law", LAWS)
def test_golden_files_are_the_scalar_reference(law: str) -> None:
    """Guards the files themselves: regenerate them with the scalar port and compare."""
    compress, expand = ITU[law]
    assert bytes(compress(x) for x in range(-32768, 32768)) == golden(
        f"{law.lower()}_encode_all.bin"
    )
    assert [expand(c) for c in range(256)] == golden_decode(law).tolist()


# --- properties ------------------------------------------------------------------------------


@pytest.mark.parametrize("law", LAWS)
def test_decode_encode_is_idempotent_on_decoded_values(law: str) -> None:
    codec = LAWS[law]
    once = codec.decode(codec.encode(ALL_INT16))
    np.testing.assert_array_equal(codec.decode(codec.encode(once)), once)
    # Every code survives decode -> encode, except µ-law's negative zero (0x7F), which
    # decodes to 0 like 0xFF and so comes back as 0xFF.
    again = codec.encode(codec.decode(CODES))
    changed = [c for c in range(256) if again[c] != c]
    assert changed == ([0x7F] if law == "PCMU" else [])


@pytest.mark.parametrize("law", LAWS)
def test_quantiser_is_monotonic_and_mirror_symmetric(law: str) -> None:
    """G.711 is sign-magnitude; with one's complement (G.191) x and -1 - x differ in sign only."""
    codec = LAWS[law]
    codes = np.frombuffer(codec.encode(ALL_INT16), dtype=np.uint8)
    levels = codec.decode(codes.tobytes()).astype(np.int32)
    assert np.all(np.diff(levels) >= 0)
    non_negative = ALL_INT16 >= 0
    np.testing.assert_array_equal(codes[~non_negative][::-1], codes[non_negative] ^ 0x80)
    # Each code's inputs are one contiguous run, and its level lies inside the run.
    runs = np.flatnonzero(np.diff(codes.astype(np.int32))) + 1
    starts, ends = np.r_[0, runs], np.r_[runs, len(codes)]
    assert len(set(codes[starts].tolist())) == len(starts)
    x = ALL_INT16.astype(np.int32)
    assert np.all((x[starts] <= levels[starts]) & (levels[starts] <= x[ends - 1] + 1))


def test_silence_codes() -> None:
    assert PCMU.silence == 0xFF and PCMA.silence == 0xD5
    assert PCMU.encode(np.zeros(160, np.int16)) == b"\xff" * 160
    assert PCMA.encode(np.zeros(160, np.int16)) == b"\xd5" * 160
    assert PCMU.decode(b"\xff").tolist() == [0]
    assert PCMA.decode(b"\xd5").tolist() == [8]  # A-law has no zero level; +8 is the nearest


@pytest.mark.parametrize("law", LAWS)
def test_encode_accepts_strided_views_and_rejects_other_dtypes(law: str) -> None:
    codec = LAWS[law]
    strided = ALL_INT16[::7]
    assert codec.encode(strided) == codec.encode(strided.copy())
    for bad in (
        ALL_INT16.astype(np.int32),
        ALL_INT16.astype(np.float32),
        ALL_INT16.byteswap().view(">i2"),
    ):
        with pytest.raises(TypeError, match="int16"):
            codec.encode(bad)
    with pytest.raises(TypeError):
        codec.encode(b"\x00\x00")  # type: ignore[arg-type]


@pytest.mark.parametrize("law", LAWS)
def test_decode_accepts_any_bytes_like_and_returns_a_fresh_array(law: str) -> None:
    codec = LAWS[law]
    expected = codec.decode(CODES)
    for payload in (bytearray(CODES), memoryview(CODES), memoryview(b"xx" + CODES)[2:]):
        np.testing.assert_array_equal(codec.decode(payload), expected)
    expected[:] = 0  # writable, and not the lookup table
    assert codec.decode(CODES).any()
    assert codec.decode(b"").shape == (0,)


def test_lookup() -> None:
    assert codec_by_name("pcmu") is PCMU and codec_by_name("PCMA") is PCMA
    assert codec_by_name("PcMa") is PCMA
    assert codec_by_payload_type(0) is PCMU and codec_by_payload_type(8) is PCMA
    assert (PCMU.name, PCMU.payload_type, PCMA.name, PCMA.payload_type) == ("PCMU", 0, "PCMA", 8)
    with pytest.raises(ValueError, match="PCMU, PCMA"):
        codec_by_name("G722")
    with pytest.raises(ValueError, match="PCMU"):
        codec_by_payload_type(9)
    assert isinstance(PCMU, G711)


# --- other implementations -------------------------------------------------------------------


@pytest.mark.parametrize("law", LAWS)
def test_decode_matches_audioop(law: str, audioop: ModuleType) -> None:
    to_linear = audioop.ulaw2lin if law == "PCMU" else audioop.alaw2lin
    assert LAWS[law].decode(CODES).astype("<i2").tobytes() == to_linear(CODES, 2)


def test_alaw_encode_matches_audioop_exactly(audioop: ModuleType) -> None:
    assert PCMA.encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.astype("<i2").tobytes(), 2)


def test_ulaw_encode_matches_audioop_except_its_negative_rounding(audioop: ModuleType) -> None:
    """audioop's µ-law is off on 508 negative samples; G.191 is the reference, not audioop.

    ``audioop.lin2ulaw`` (Sun's 14-bit ``linear2ulaw``) shifts right by 2 and *then* negates,
    so a negative sample's 14-bit magnitude is ceil(-x/4) where G.191 takes floor((-x-1)/4),
    the one's complement.  Net effect: for x < 0 audioop encodes x as G.191 encodes x - 4,
    which moves each of the 127 negative decision thresholds by 4 LSB and gives 4 samples per
    threshold the next larger magnitude: -1..-4, for instance, become 0x7E (-8) instead of 0x7F
    (0), while +1..+4 give 0xFF (0).  Positive samples agree exactly.
    """
    ours = np.frombuffer(PCMU.encode(ALL_INT16), dtype=np.uint8)
    theirs = np.frombuffer(audioop.lin2ulaw(ALL_INT16.astype("<i2").tobytes(), 2), dtype=np.uint8)
    differs = ALL_INT16[ours != theirs]
    assert len(differs) == 508 and differs.max() < 0
    negative = ALL_INT16 < 0
    np.testing.assert_array_equal(ours[~negative], theirs[~negative])
    # audioop(x) == G.191(x - 4) for every negative x where x - 4 still fits in int16
    # (both saturate to 0x00 below that).
    shifted = np.frombuffer(PCMU.encode((ALL_INT16[4:32768] - 4).astype(np.int16)), np.uint8)
    np.testing.assert_array_equal(theirs[4:32768], shifted)
    assert theirs[:4].tolist() == ours[:4].tolist() == [0, 0, 0, 0]
    assert PCMU.encode(np.array([-1, -4, -5], np.int16)) == b"\x7f\x7f\x7e"


def test_classic_sun_g711_differs_only_on_negative_samples() -> None:
    """Why the golden files follow G.191 rather than the classic Sun ``g711.c``.

    Decoding agrees.  µ-law (BIAS 0x84, CLIP 32635) uses the two's complement magnitude -x, so
    it encodes x as G.191 encodes x - 1: one LSB off at each negative threshold (x = -4, -12,
    ...).  A-law uses -x - 8, i.e. G.191's x + 7, and for -7 <= x <= -1 the magnitude goes
    negative and the code is 0x5A (-248): the bug WebRTC fixed in its copy to be bit-exact.
    """
    for c in range(256):
        assert ref.sun_ulaw2linear(c) == ref.itu_ulaw_expand(c)
        assert ref.sun_alaw2linear(c) == ref.itu_alaw_expand(c)
    for x in range(0, 32768):
        assert ref.sun_linear2ulaw(x) == ref.itu_ulaw_compress(x)
        assert ref.sun_linear2alaw(x) == ref.itu_alaw_compress(x)
    for x in range(-32767, 0):
        assert ref.sun_linear2ulaw(x) == ref.itu_ulaw_compress(x - 1)
    for x in range(-32768, -7):
        assert ref.sun_linear2alaw(x) == ref.itu_alaw_compress(x + 7)
    assert {ref.sun_linear2alaw(x) for x in range(-7, 0)} == {0x5A}
    assert ref.itu_alaw_expand(0x5A) == -248
    assert {ref.itu_alaw_compress(x) for x in range(-7, 0)} == {0x55}
