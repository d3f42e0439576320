"""CPU cost of one 20 ms frame on the inbound and outbound media paths.

Inbound:  RtpStream.datagram_received (source check, RTP parse, reorder buffer, audio clock,
          payload-type dispatch) -> G.711 decode -> 8k->24k (minphase.py) -> base64 + JSON append.
Outbound: JSON delta parse (base64) -> 24k->8k (minphase.py) -> playback push/next_frame ->
          G.711 encode -> RTP build.
The ``_g711`` variants are ``realtime.audio_format: g711`` (no decode, no resampling).
``timeline``: the call timeline's work per 20 ms frame (``bridge/timeline.py``): one caller
payload through its energy gate and one pacer frame (the clock read only when the agent starts
or stops), with turns every 2 s.
``inbound_G722``/``outbound_G722`` and ``inbound_opus``/``outbound_opus``: the same paths for a
call in G.722 (libg722; 16k <-> 24k through minphase_rational.py) and in Opus (libopus at
24 kHz, nothing resampled); ``outbound_*_idle``, the pacer's packet while the agent is
silent; ``codec_us`` is the coder alone (encode, decode) per 20 ms frame.
``caller_audio*``: the uplink's own work on a decoded RTP payload (``bridge/uplink.py``:
decode, local barge-in, 8k->24k) on a voice (tests/unit/data's words, -20 dBFS, 200 ms pauses):
``caller_audio`` with ``agent.local_barge_in: null``; ``_local_silent``, the default, the agent
silent (the detector learns the caller's level); ``_local_talking``, the agent talking (the
detector at work: the worst case, the caller talking over it all the time); ``_g711``, the same
with ``realtime.audio_format: g711`` (without local barge-in the payload goes as it came).
``pacer_packet``: the pacer's packet out of a UDP socket (``rtp_out.py``: a speech frame
G.711-encoded, the RTP built, ``sendto``; in one C call where the module is built, through
Python with ``GATEWAY_NUMPY_MEDIA=1``); ``pacer_packet_silence``, the same for silence; sent
to a loopback peer that never reads (what overflows its buffer, the kernel drops).
``srtp_*``: libsrtp's protect and unprotect of one 20 ms G.711 packet, per suite, and the
inbound path with SRTP (``inbound_srtp``, AES_CM_128_HMAC_SHA1_80: unprotect first).
Exactly the gateway's code, no sockets but the pacer's. Prints a JSON report.

    .venv/bin/python tests/perf/bench_frame.py [--frames N]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import platform
import socket
import statistics
import sys
import time
import wave
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gateway.bridge.playback import ItemKey, Playback
from gateway.bridge.timeline import Timeline
from gateway.bridge.uplink import CallerAudio
from gateway.config import AgentConfig
from gateway.media.codecs import codec_spec
from gateway.media.conversion import converter
from gateway.media.g711 import PCMU
from gateway.media.minphase import MinPhaseResampler as Resampler
from gateway.media.receiver import RtpStats
from gateway.media.rtp import RtpSender
from gateway.media.rtp_out import RtpOut
from gateway.media.srtp import SUITES, CryptoAttribute, SrtpSession
from gateway.media.stream import RtpStream
from gateway.realtime.protocol import GaDialect


def speechlike(seconds: float, rate: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    signal = rng.normal(0, 6000, t.size) * envelope + 4000 * np.sin(2 * np.pi * 220 * t)
    return np.clip(signal, -32768, 32767).astype(np.int16)


def per_frame_us(fn, frames: int, repeats: int = 5) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(frames)
        runs.append((time.perf_counter() - start) / frames * 1e6)
    return {"median_us": round(statistics.median(runs), 2), "min_us": round(min(runs), 2)}


def keys(suite: str) -> tuple[CryptoAttribute, CryptoAttribute]:
    return CryptoAttribute.generate(1, suite), CryptoAttribute.generate(1, suite)


def inbound(frames: int, passthrough: bool = False, srtp: str | None = None):
    dialect = GaDialect()
    sender = RtpSender(0, 160)
    up = Resampler(8000, 24000)
    caller = speechlike(frames * 0.02, 8000)
    packets = [
        bytes(sender.build(PCMU.encode(caller[i * 160 : (i + 1) * 160]))) for i in range(frames)
    ]
    if srtp is not None:
        theirs, ours = keys(srtp)
        tx = SrtpSession(theirs, ours)
        packets = [tx.protect(p) for p in packets]
    addr = ("127.0.0.1", 40000)

    def run(n: int) -> None:
        payloads: list[bytes] = []
        # the caller its SDP names; a new SRTP session each run (the packets are new to it)
        session = SrtpSession(ours, theirs) if srtp is not None else None
        stream = RtpStream(PCMU, 0, addr, payloads.append, srtp=session)
        # Packets come back to back here, not every 20 ms: the flood guard must not count them.
        stream.receiver.flood_burst = stream.receiver.flood_tokens = float(n + 1)

        async def go() -> None:  # datagram_received reads the running loop's clock
            for i in range(n):
                stream.datagram_received(packets[i % len(packets)], addr)
                payload = payloads.pop()
                if passthrough:
                    dialect.append_audio(payload)
                else:
                    dialect.append_audio(up.process(PCMU.decode(payload)).tobytes())

        asyncio.run(go())

    return run


def outbound(frames: int, passthrough: bool = False):
    dialect = GaDialect()
    rate, per_ms = (8000, 8) if passthrough else (24000, 48)
    model = speechlike(frames * 0.02, rate, seed=2)
    chunk = rate // 10
    audio = PCMU.encode(model) if passthrough else model.tobytes()
    width = 1 if passthrough else 2
    # The service sends ~100 ms deltas in bursts; one delta per 5 frames.
    deltas = [
        json.dumps(
            {
                "type": "response.output_audio.delta",
                "event_id": f"e{i}",
                "response_id": "r",
                "item_id": "i",
                "output_index": 0,
                "content_index": 0,
                "delta": base64.b64encode(
                    audio[i * chunk * width : (i + 1) * chunk * width]
                ).decode(),
            }
        )
        for i in range(frames // 5)
    ]

    def run(n: int) -> None:
        down = Resampler(24000, 8000)
        playback = Playback(160)
        sender = RtpSender(0, 160)
        key = ItemKey("r", "i")
        for i in range(n):
            if i % 5 == 0:
                event = dialect.parse(deltas[i // 5])
                if passthrough:
                    pcm = PCMU.decode(event.audio)
                else:
                    pcm = down.process(np.frombuffer(event.audio, dtype="<i2"))
                playback.push(key, pcm, len(event.audio) / per_ms)
            frame = playback.next_frame()
            payload = PCMU.encode(frame) if frame is not None else b"\xff" * 160
            sender.build(payload)

    return run


def pacer_packet(frames: int, talking: bool = True):
    model = speechlike(frames * 0.02, 8000, seed=3)
    silence = b"\xff" * 160
    tx, rx = socket.socket(type=socket.SOCK_DGRAM), socket.socket(type=socket.SOCK_DGRAM)
    tx.bind(("127.0.0.1", 0))
    rx.bind(("127.0.0.1", 0))
    tx.setblocking(False)

    def run(n: int) -> None:
        out = RtpOut(PCMU, 0, 160, RtpStats())
        out.attach(tx)
        out.to(rx.getsockname())
        for i in range(n):
            if talking:
                out.frame(model[i * 160 : (i + 1) * 160], i == 0)
            else:
                out.payload(silence)
        if out.stats.send_errors or out.stats.packets_out != n:
            raise RuntimeError(f"{out.stats.send_errors} of {n} packets refused")

    return run


def timeline(frames: int):
    """Caller speech 1 s on, 1 s off; the agent talks while the caller does not."""
    caller = speechlike(frames * 0.02, 8000, seed=3)
    payloads = [
        PCMU.encode(caller[i * 160 : (i + 1) * 160] if (i // 50) % 2 == 0 else caller[:160] // 200)
        for i in range(frames)
    ]

    def run(n: int) -> None:
        tl = Timeline(0.0, PCMU)
        for i in range(n):
            tl.caller_frame(payloads[i % frames], i * 0.02)
            tl.agent_frame((i // 50) % 2 == 1)

    return run


def voice(frames: int) -> np.ndarray:
    """The golden words of tests/unit/data at -20 dBFS peak-ish, 200 ms apart, looped."""
    data = Path(__file__).resolve().parents[1] / "unit" / "data"
    words = []
    for name in ("vad_no.wav", "vad_wait.wav"):
        with wave.open(str(data / name), "rb") as w:
            x = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
        words += [x * (3277.0 / np.sqrt(np.mean(x * x))), np.zeros(1600)]
    one = np.concatenate(words)
    return np.resize(one, frames * 160).astype(np.int16)


def caller_audio(frames: int, passthrough: bool, local: bool, talking: bool = False):
    agent = AgentConfig.model_validate({"local_barge_in": {} if local else None})
    pcm = voice(frames)
    payloads = [PCMU.encode(pcm[i * 160 : (i + 1) * 160]) for i in range(frames)]

    def run(n: int) -> None:
        up = CallerAudio(PCMU, passthrough, agent, 20, None, lambda: None)
        for i in range(n):
            up.convert(payloads[i % frames], talking)

    return run


def inbound_codec(frames: int, name: str):
    """``inbound`` for a call in G.722 or Opus (payload type 9 or 111)."""
    dialect = GaDialect()
    spec = codec_spec(name)
    pt = spec.payload_type or 111
    encoder = spec.open()
    n_pcm, n_ticks = spec.rate // 50, spec.clock_rate // 50
    sender = RtpSender(pt, n_ticks)
    caller = speechlike(frames * 0.02, spec.rate)
    packets = [
        bytes(sender.build(encoder.encode(caller[i * n_pcm : (i + 1) * n_pcm])))
        for i in range(frames)
    ]
    addr = ("127.0.0.1", 40000)

    def run(n: int) -> None:
        payloads: list[bytes] = []
        codec = spec.open()
        up = converter(spec.rate, 24000)
        stream = RtpStream(codec, pt, addr, payloads.append)
        stream.receiver.flood_burst = stream.receiver.flood_tokens = float(n + 1)

        async def go() -> None:
            for i in range(n):
                stream.datagram_received(packets[i % len(packets)], addr)
                pcm = codec.decode(payloads.pop())
                dialect.append_audio((pcm if up is None else up.process(pcm)).tobytes())

        asyncio.run(go())

    return run


def outbound_codec(frames: int, name: str):
    """``outbound`` for a call in G.722 or Opus."""
    dialect = GaDialect()
    spec = codec_spec(name)
    model = speechlike(frames * 0.02, 24000, seed=2).tobytes()
    chunk = 2400 * 2  # 100 ms deltas, one per 5 frames
    deltas = [
        json.dumps(
            {"type": "response.output_audio.delta", "event_id": f"e{i}", "response_id": "r",
             "item_id": "i", "output_index": 0, "content_index": 0,
             "delta": base64.b64encode(model[i * chunk : (i + 1) * chunk]).decode()}
        )
        for i in range(frames // 5)
    ]  # fmt: skip

    def run(n: int) -> None:
        codec = spec.open()
        down = converter(24000, spec.rate)
        playback = Playback(spec.rate // 50, rate=spec.rate)
        sender = RtpSender(spec.payload_type or 111, spec.clock_rate // 50)
        silence = np.zeros(spec.rate // 50, dtype=np.int16)
        key = ItemKey("r", "i")
        for i in range(n):
            if i % 5 == 0:
                event = dialect.parse(deltas[i // 5])
                pcm = np.frombuffer(event.audio, dtype="<i2")
                pcm = pcm.astype(np.int16) if down is None else down.process(pcm).copy()
                playback.push(key, pcm, len(event.audio) / 48)
            frame = playback.next_frame()
            sender.build(codec.encode(frame if frame is not None else silence))

    return run


def outbound_idle(frames: int, name: str):
    """The pacer's packet while the agent says nothing (a caller talking): its silence
    encoded and the RTP built (Opus: DTX once settled, ``opus.SILENT_FRAMES_ENCODED``)."""
    spec = codec_spec(name)

    def run(n: int) -> None:
        codec = spec.open()
        sender = RtpSender(spec.payload_type or 111, spec.clock_rate // 50)
        silence = np.zeros(spec.rate // 50, dtype=np.int16)
        for _ in range(n):
            sender.build(codec.encode(silence))

    return run


def coder_alone(name: str, frames: int = 500) -> dict[str, float]:
    """Encode and decode of one 20 ms frame, the coder alone (median of 5 runs, us)."""
    spec = codec_spec(name)
    pcm = speechlike(frames * 0.02, spec.rate)
    n = spec.rate // 50
    chunks = [pcm[i * n : (i + 1) * n] for i in range(frames)]
    payloads = [spec.open().encode(c) for c in chunks]
    enc = per_frame_us(lambda k: _encode(spec, chunks), frames)
    dec = per_frame_us(lambda k: _decode(spec, payloads), frames)
    return {"encode_us": enc["median_us"], "decode_us": dec["median_us"]}


def _encode(spec, chunks) -> None:
    codec = spec.open()
    for chunk in chunks:
        codec.encode(chunk)


def _decode(spec, payloads) -> None:
    codec = spec.open()
    for payload in payloads:
        codec.decode(payload)


def srtp_protect(frames: int, suite: str):
    sender = RtpSender(0, 160)
    tx = SrtpSession(*keys(suite))
    payload = PCMU.encode(speechlike(0.02, 8000))

    def run(n: int) -> None:
        for _ in range(n):
            tx.protect(sender.build(payload))

    return run


def srtp_unprotect(frames: int, suite: str):
    sender = RtpSender(0, 160)
    theirs, ours = keys(suite)
    tx = SrtpSession(theirs, ours)
    payload = PCMU.encode(speechlike(0.02, 8000))
    packets = [tx.protect(sender.build(payload)) for _ in range(frames)]

    def run(n: int) -> None:
        rx = SrtpSession(ours, theirs)  # new each run: the packets are new to it
        for i in range(n):
            rx.unprotect(packets[i % frames])

    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=3000, help="frames per run (60 s = 3000)")
    args = parser.parse_args()
    frames = args.frames - args.frames % 5
    runs = {
        "inbound": inbound(frames),
        "outbound": outbound(frames),
        "inbound_g711": inbound(frames, passthrough=True),
        "outbound_g711": outbound(frames, passthrough=True),
        "inbound_srtp": inbound(frames, srtp="AES_CM_128_HMAC_SHA1_80"),
        "timeline": timeline(frames),
        "pacer_packet": pacer_packet(frames),
        "pacer_packet_silence": pacer_packet(frames, talking=False),
    }
    for suffix, g711 in (("", False), ("_g711", True)):
        runs[f"caller_audio{suffix}"] = caller_audio(frames, g711, local=False)
        runs[f"caller_audio_local_silent{suffix}"] = caller_audio(frames, g711, local=True)
        runs[f"caller_audio_local_talking{suffix}"] = caller_audio(frames, g711, True, True)
    for name in ("G722", "opus"):  # HD voice
        runs[f"inbound_{name}"] = inbound_codec(frames, name)
        runs[f"outbound_{name}"] = outbound_codec(frames, name)
        runs[f"outbound_{name}_idle"] = outbound_idle(frames, name)
    for suite in SUITES:
        runs[f"srtp_protect_{suite}"] = srtp_protect(frames, suite)
        runs[f"srtp_unprotect_{suite}"] = srtp_unprotect(frames, suite)
    for run in runs.values():
        run(50)  # warm up numpy
    report = {
        "benchmark": "media_frame_cpu",
        "frame_ms": 20,
        "frames_per_run": frames,
        "python": platform.python_version(),
        "machine": platform.machine(),
        **{name: per_frame_us(run, frames) for name, run in runs.items()},
    }
    report["codec_us"] = {name: coder_alone(name) for name in ("G722", "opus")}
    budget = 20_000 / (report["inbound"]["median_us"] + report["outbound"]["median_us"])
    report["calls_per_core_media_only"] = int(budget)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
