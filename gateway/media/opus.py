"""Opus (RFC 6716) over RTP (RFC 7587), through libopus and the ``opuslib-next`` binding.

RFC 7587 §7: the rtpmap is always ``opus/48000/2`` and the RTP clock always 48 kHz, whatever
the audio's real bandwidth or channel count. libopus encodes and decodes at 8, 12, 16, 24 or
48 kHz natively, so this coder works at 24 kHz, the Realtime service's PCM16 rate: a call in
Opus is never resampled, either way. A stereo packet is decoded to mono by libopus itself;
we send mono.

Negotiation (RFC 7587 §6.1), from the peer's fmtp: ``maxplaybackrate`` caps the bandwidth we
encode (narrowband for 8000, wideband for 16000, super-wideband at 24 kHz and up);
``maxaveragebitrate`` caps our bitrate; ``useinbandfec=1`` says the peer decodes in-band FEC,
so we send it (with ``packet_loss_perc`` set, without which libopus adds none). Our fmtp tells
the peer the same of us: we play 24 kHz, capture 24 kHz, want mono and decode its FEC.

Loss: a gap before a packet is concealed from that packet when it carries FEC for the lost
frame (``decode_fec``: LBRR, the previous frame coded again at a lower rate), and by libopus'
PLC for the rest; a packet libopus cannot parse counts as lost.

Binding: ``opuslib-next`` (maintained; ``opuslib`` had no release since 2018, ``pyogg`` since
2020) loads the system's libopus (Debian's ``libopus0``) and creates the coder states and sets
their options through its API. Its ``decode`` copies every sample through a Python list (25 us
per 20 ms frame here), so frames go through the binding's own typed ``opus_decode`` and
``opus_encode`` entry points with numpy buffers instead (11 us).
"""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import numpy as np

__all__ = ["OPUS_SPEC", "OpusCodec", "OpusSpec", "encoder_settings", "load_libopus"]

PCM_RATE = 24000
CLOCK_RATE = 48000  # RFC 7587 §4.1
TICKS_PER_SAMPLE = CLOCK_RATE // PCM_RATE
MAX_FRAME = PCM_RATE * 120 // 1000  # the longest Opus packet: 120 ms
PLC_STEP = PCM_RATE * 5 // 2000  # 2.5 ms: libopus conceals in multiples of it
MAX_PACKET = 1500
DEFAULT_PT = 111  # our own offers (a dynamic type, RFC 3551 §3)
PTIMES = (10, 20, 40, 60)  # Opus frame sizes the gateway's ptimes can be (30 ms is not one)
LOSS_PERC = 10  # the expected loss libopus protects against with FEC
# WebRTC's default on mobile. Encoding a 20 ms frame of espeak-ng speech at 24 kHz, 32 kbit/s
# (CPU time on a loaded 2-core machine): complexity 0 48 us, 3 86, 5 108, 10 188; in-band
# FEC adds about 25 at 5. The default (9/10) would double the encoder's share of a call.
COMPLEXITY = 5
# Silence (the agent saying nothing: the pacer's zero frames) is encoded for this many frames,
# so the far end's decoder settles on it, then sent as a TOC byte alone: a frame of zero bytes,
# which decoders take as DTX (RFC 6716 §3.2.1: libopus conceals it; after silence, silence).
# The encoder is not run for those frames (about 90 us each: half of an Opus call's CPU while
# the caller talks); the packets keep flowing (a PBX hangs up on an RTP timeout).
SILENT_FRAMES_ENCODED = 3
OUR_FMTP = "maxplaybackrate=24000;sprop-maxcapturerate=24000;stereo=0;sprop-stereo=0;useinbandfec=1"


@functools.cache
def _lib() -> Any:
    """opuslib-next's modules, imported on first use: a gateway that does not offer Opus
    starts without libopus."""
    import opuslib_next
    import opuslib_next.api.decoder as dec
    import opuslib_next.api.encoder as enc

    nb_samples = ctypes.CDLL(opuslib_next.api.lib_location).opus_packet_get_nb_samples
    nb_samples.argtypes = (ctypes.c_char_p, ctypes.c_int32, ctypes.c_int32)
    nb_samples.restype = ctypes.c_int
    return opuslib_next, dec.libopus_decode, enc.libopus_encode, nb_samples


def load_libopus() -> None:
    """Load libopus now (the daemon's start-up check); raises what opuslib-next raises."""
    _lib()


def parse_fmtp(fmtp: str | None) -> dict[str, str]:
    """``a=fmtp`` parameters (``k=v;k=v``), bounded: a hostile line yields at most 16."""
    params: dict[str, str] = {}
    for part in (fmtp or "")[:512].split(";")[:16]:
        key, _, value = part.strip().partition("=")
        if key:
            params[key.strip().lower()] = value.strip()
    return params


def _int(params: dict[str, str], key: str, default: int) -> int:
    value = params.get(key, "")
    return int(value) if value.isdigit() and len(value) <= 9 else default


def encoder_settings(peer_fmtp: str | None) -> dict[str, int]:
    """What the peer's fmtp asks of our encoder: bandwidth, bitrate, FEC."""
    params = parse_fmtp(peer_fmtp)
    playback = _int(params, "maxplaybackrate", 48000)
    bandwidth = next(
        (bw for rate, bw in ((8000, 1101), (12000, 1102), (16000, 1103)) if playback <= rate),
        1104,  # super-wideband: all a 24 kHz coder has
    )
    bitrate = min(max(_int(params, "maxaveragebitrate", 32000), 6000), 32000)
    fec = params.get("useinbandfec") == "1"
    return {"max_bandwidth": bandwidth, "bitrate": bitrate, "fec": int(fec)}


def packet_ticks(payload: bytes) -> int:
    """A packet's duration in 48 kHz RTP clock ticks (0 when libopus cannot parse it)."""
    n = _lib()[3](payload, len(payload), CLOCK_RATE)
    return n if n > 0 else 0


class OpusCodec:
    """One call's Opus coder at 24 kHz mono, configured by the peer's fmtp."""

    name = "opus"
    rate = PCM_RATE
    clock_rate = CLOCK_RATE
    silence = None
    ticks = staticmethod(packet_ticks)

    def __init__(self, peer_fmtp: str | None = None) -> None:
        opuslib, self._decode, self._encode, _ = _lib()
        self.settings = encoder_settings(peer_fmtp)
        self._enc = opuslib.Encoder(PCM_RATE, 1, opuslib.APPLICATION_VOIP)
        self._enc.complexity = COMPLEXITY
        self._enc.bitrate = self.settings["bitrate"]
        self._enc.max_bandwidth = self.settings["max_bandwidth"]
        if self.settings["fec"]:
            self._enc.inband_fec = 1
            self._enc.packet_loss_perc = LOSS_PERC
        self._dec = opuslib.Decoder(PCM_RATE, 1)
        self._pcm = np.zeros(MAX_FRAME, dtype=np.int16)
        self._pcm_ptr = self._pcm.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        self._out = ctypes.create_string_buffer(MAX_PACKET)
        self._silent = 0  # zero frames in a row
        self._dtx: dict[int, bytes] = {}  # frame length -> the TOC byte of its DTX packet
        self.dtx_frames = 0  # silent frames sent as a TOC byte, the encoder not run
        self.bad_packets = 0  # payloads libopus could not decode (concealed as lost)
        self.fec_frames = 0  # losses decoded from the next packet's FEC (PLC if it had none)
        self.concealed_samples = 0

    def encode(self, pcm: np.ndarray) -> bytes:
        """One frame of 24 kHz int16 samples (10, 20, 40 or 60 ms) -> one Opus packet."""
        frame = np.ascontiguousarray(pcm, dtype=np.int16)
        if frame.any():
            self._silent = 0
        else:
            self._silent += 1
            dtx = self._dtx.get(len(frame))
            if dtx is not None and self._silent > SILENT_FRAMES_ENCODED:
                self.dtx_frames += 1
                return dtx
        ptr = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
        n = self._encode(self._enc.encoder_state, ptr, len(frame), self._out, MAX_PACKET)
        if n < 0:
            raise ValueError(f"opus_encode failed ({n}) on a frame of {len(frame)} samples")
        packet = self._out.raw[:n]
        if len(frame) not in self._dtx:  # its configuration, code 0: one frame (of 0 bytes)
            self._dtx[len(frame)] = bytes([packet[0] & 0xFC])
        return packet

    def decode(self, payload: bytes) -> np.ndarray:
        """One packet -> its 24 kHz int16 samples (a new array); empty if it is not Opus."""
        n = self._decode(self._dec.decoder_state, bytes(payload), len(payload), self._pcm_ptr,
                         MAX_FRAME, 0)  # fmt: skip
        if n < 0:
            self.bad_packets += 1
            return np.zeros(0, dtype=np.int16)
        return self._pcm[:n].copy()

    def counters(self) -> dict[str, int]:
        """For ``rtp.stats``: losses read from FEC, packets libopus refused."""
        return {
            "opus_fec_frames": self.fec_frames,
            "opus_bad_packets": self.bad_packets,
            "opus_dtx_frames": self.dtx_frames,
        }

    def conceal(self, ticks: int, following: bytes | None = None) -> np.ndarray:
        """Audio for ``ticks`` lost 48 kHz ticks: the last lost frame from ``following``'s
        in-band FEC when it has some (libopus conceals otherwise), PLC before it."""
        lost = ticks // TICKS_PER_SAMPLE
        lost -= lost % PLC_STEP
        if lost <= 0:
            return np.zeros(0, dtype=np.int16)
        fec = 0
        if following:
            fec = min(lost, packet_ticks(following) // TICKS_PER_SAMPLE)
            fec -= fec % PLC_STEP
        pieces = []
        plc = lost - fec
        while plc > 0:
            step = min(plc, MAX_FRAME)
            pieces.append(self._run(None, step, 0))
            plc -= step
        if fec:
            pieces.append(self._run(following, fec, 1))
            self.fec_frames += 1
        out = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
        self.concealed_samples += len(out)
        return out

    def _run(self, data: bytes | None, frame: int, fec: int) -> np.ndarray:
        n = self._decode(self._dec.decoder_state, data, len(data) if data else 0, self._pcm_ptr,
                         frame, fec)  # fmt: skip
        return self._pcm[:n].copy() if n > 0 else np.zeros(frame, dtype=np.int16)


class OpusSpec:
    """What SDP says of Opus (RFC 7587 §7), and the per-call coder it opens."""

    name = "opus"
    rate = PCM_RATE
    clock_rate = CLOCK_RATE
    channels = 2
    payload_type = None  # dynamic: the offer's, or DEFAULT_PT in ours

    def open(self, fmtp: str | None = None) -> OpusCodec:
        return OpusCodec(fmtp)

    def rtpmap(self, pt: int) -> str:
        return f"{pt} opus/{CLOCK_RATE}/2"

    def fmtp(self, pt: int, peer: str | None, ptime_ms: int) -> str | None:
        return f"{pt} {OUR_FMTP};minptime=10"

    def ptime(self, offered: int, peer_fmtp: str | None) -> int:
        """The offer's ptime if Opus can frame it and it is at least the peer's minptime."""
        minimum = _int(parse_fmtp(peer_fmtp), "minptime", 10)
        fits = [p for p in PTIMES if p >= minimum]
        if offered in fits:
            return offered
        return 20 if 20 in fits else (fits[0] if fits else 20)

    def __repr__(self) -> str:
        return "OpusSpec()"


OPUS_SPEC = OpusSpec()
