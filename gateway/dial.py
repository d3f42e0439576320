"""A built-in test caller: place a call, play a WAV (or espeak-ng speech), record what comes back.

PBX admins use it to check a route end to end: `python -m gateway dial sip:echo@pbx:5060`.
It reuses the gateway's own SIP transport, RTP stream and pacer, so what it measures is what
a phone would hear.
"""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
import socket
import tempfile
import time
import wave
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from aiosipua import OutgoingCall, SdpMessage, SipUAC, SipUAS, build_sdp
from aiosipua.header_codec import parse_uri

from . import __version__
from .media.g711 import G711, codec_by_name, codec_by_payload_type
from .media.rates import TELEPHONE_RATE
from .media.resample import Resampler
from .media.stream import RtpStream, local_ip_towards
from .sip.door import Door
from .sip.transport import bound_port
from .sip.udp import UdpTransport

AUDIO_RMS = 300  # about -40 dBFS: quieter frames count as silence for "time to first audio"


class DialError(Exception):
    """The call could not be placed (bad target, no audio to play)."""


@dataclass
class DialReport:
    target: str
    answered: bool
    status: int | None = None
    reason: str = ""
    codec: str | None = None
    setup_ms: float | None = None
    time_to_first_audio_ms: float | None = None
    duration_s: float = 0.0
    packets_sent: int = 0
    packets_received: int = 0
    ended_by: str = ""
    recording: str | None = None

    def lines(self) -> list[str]:
        if not self.answered:
            status = f"{self.status} " if self.status else ""
            return [f"{self.target}: NOT answered: {status}{self.reason}"]
        first = (
            f"{self.time_to_first_audio_ms:.0f} ms"
            if self.time_to_first_audio_ms is not None
            else "no audio heard"
        )
        out = [
            f"{self.target}: answered ({self.codec}) in {self.setup_ms:.0f} ms",
            f"  time to first audio: {first}",
            f"  duration: {self.duration_s:.1f} s, ended by {self.ended_by}",
            f"  RTP packets sent/received: {self.packets_sent}/{self.packets_received}",
        ]
        if self.recording:
            out.append(f"  recording: {self.recording}")
        return out

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Player:
    """Frames of the audio to play; silence once it is over."""

    def __init__(self, samples: np.ndarray, frame: int) -> None:
        self._samples = samples
        self._frame = frame
        self._pos = 0
        self.finished = asyncio.Event()

    def next_frame(self) -> np.ndarray | None:
        if self._pos >= len(self._samples):
            self.finished.set()
            return None
        chunk = self._samples[self._pos : self._pos + self._frame]
        self._pos += self._frame
        if len(chunk) < self._frame:
            chunk = np.pad(chunk, (0, self._frame - len(chunk)))
        return chunk


class _Recorder:
    def __init__(self, codec: G711) -> None:
        self.codec = codec
        self.frames: list[np.ndarray] = []
        self.first_audio_at: float | None = None

    def on_payload(self, payload: bytes | memoryview) -> None:
        pcm = self.codec.decode(payload)
        self.frames.append(pcm)
        if (
            self.first_audio_at is None
            and np.sqrt(np.mean(pcm.astype(np.float32) ** 2)) > AUDIO_RMS
        ):
            self.first_audio_at = time.monotonic()

    def save(self, path: Path) -> None:
        audio = np.concatenate(self.frames) if self.frames else np.zeros(0, np.int16)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(TELEPHONE_RATE)
            out.writeframes(audio.astype("<i2").tobytes())


def load_wav(path: Path) -> np.ndarray:
    """A WAV file as 8 kHz mono int16 (first channel, resampled with soxr)."""
    try:
        with wave.open(str(path), "rb") as wav:
            if wav.getsampwidth() != 2:
                raise DialError(f"{path}: only 16-bit PCM WAV files are supported")
            rate, channels = wav.getframerate(), wav.getnchannels()
            data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    except (OSError, EOFError, wave.Error) as exc:
        raise DialError(f"{path}: cannot read WAV: {exc}") from None
    samples = data[::channels].astype(np.int16)
    if rate != TELEPHONE_RATE:
        resampler = Resampler(rate, TELEPHONE_RATE)
        samples = np.concatenate([resampler.process(samples), resampler.flush()])
    return samples


async def speak(text: str) -> np.ndarray:
    """Speech from espeak-ng (when installed), as 8 kHz mono int16."""
    if shutil.which("espeak-ng") is None:
        raise DialError("--say needs espeak-ng (apt-get install espeak-ng); use --wav instead")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "speech.wav"
        proc = await asyncio.create_subprocess_exec(
            "espeak-ng", "-w", str(out), text,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
        if proc.returncode != 0:
            raise DialError(f"espeak-ng failed: {err.decode(errors='replace').strip()}")
        return load_wav(out)


def _target(uri: str) -> tuple[str, int]:
    if not uri.lower().startswith("sip:"):
        raise DialError(f"not a sip: URI: {uri!r} (e.g. sip:echo@192.0.2.10:5060)")
    try:
        parsed = parse_uri(uri)
    except (ValueError, IndexError) as exc:
        raise DialError(f"not a SIP URI: {uri!r} ({exc})") from None
    if parsed.scheme != "sip" or not parsed.host:
        raise DialError(f"not a sip: URI with a host: {uri!r}")
    return parsed.host, parsed.port or 5060


@dataclass(slots=True)
class _Answered:
    """What a 200 OK settled: the call, the codec it chose, where its RTP goes, and when."""

    call: OutgoingCall
    payload_type: int
    rtp_address: tuple[str, int]
    answered_at: float


async def dial(
    uri: str,
    audio: np.ndarray,
    *,
    codec: str = "PCMU",
    listen_s: float = 5.0,
    max_duration_s: float = 120.0,
    answer_timeout_s: float = 30.0,
    bind: str | None = None,
    record: Path | None = None,
) -> DialReport:
    """Call `uri`, play `audio` (8 kHz int16), keep listening `listen_s`, hang up."""
    host, port = _target(uri)
    remote_ip = await _resolve(host, port)
    local_ip = bind or local_ip_towards(remote_ip)
    report = DialReport(target=uri, answered=False)
    offered = codec_by_name(codec)

    transport = UdpTransport((local_ip, 0), Door([ipaddress.ip_network(remote_ip)]))
    uac = SipUAC(transport)
    uas = SipUAS(transport, uac=uac, user_agent=f"gateway-dial/{__version__}")
    hung_up = asyncio.Event()
    uas.on_bye = lambda call, request: hung_up.set()
    rtp_sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rtp_sock.bind((local_ip, 0))
    stream: RtpStream | None = None
    await uas.start()
    try:
        transport.local_addr = (local_ip, bound_port(transport) or 0)
        offer = build_sdp(local_ip, rtp_sock.getsockname()[1], offered.payload_type, offered.name)
        answered = await _place_call(
            uac, f"sip:dial@{local_ip}:{transport.local_addr[1]}", uri, (remote_ip, port),
            offer, answer_timeout_s, report,
        )  # fmt: skip
        if answered is None:
            return report
        chosen = codec_by_payload_type(answered.payload_type)
        report.codec = chosen.name
        recorder = _Recorder(chosen)
        player = _Player(audio, TELEPHONE_RATE * 20 // 1000)
        stream = RtpStream(chosen, answered.payload_type, answered.rtp_address, recorder.on_payload)
        stream.attach(rtp_sock)
        report.ended_by = await _play_and_listen(stream, player, hung_up, listen_s, max_duration_s)
        if not hung_up.is_set():
            answered.call.hangup(uac)
        _report_media(report, answered.answered_at, stream, recorder, record)
        return report
    finally:
        if stream is not None:
            stream.close()
        else:
            rtp_sock.close()
        await uas.stop()


async def _resolve(host: str, port: int) -> str:
    """The IPv4 address to call, resolved without blocking the loop."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
        )
        return str(infos[0][4][0])
    except (OSError, IndexError) as exc:
        raise DialError(f"cannot resolve {host!r}: {getattr(exc, 'strerror', exc)}") from None


async def _place_call(
    uac: SipUAC,
    from_uri: str,
    uri: str,
    remote: tuple[str, int],
    offer: SdpMessage,
    answer_timeout_s: float,
    report: DialReport,
) -> _Answered | None:
    """INVITE and wait for the final answer; None when there is no call to talk on (the
    report says why: no answer, a rejection, or a 200 OK without usable SDP)."""
    started = time.monotonic()
    call = uac.send_invite(
        from_uri, uri, remote, sdp_offer=offer, user_agent=f"gateway-dial/{__version__}"
    )
    rejection: list[tuple[int, str]] = []
    call.on_rejected = lambda _call, status, reason: rejection.append((status, reason))
    try:
        await call.wait_answered(timeout=answer_timeout_s)
    except TimeoutError:
        report.reason = f"no final response within {answer_timeout_s:g} s"
        call.cancel(uac)
        return None
    except RuntimeError:
        report.status, report.reason = rejection[-1] if rejection else (None, "rejected")
        return None
    answered_at = time.monotonic()
    report.answered, report.status = True, 200
    report.setup_ms = (answered_at - started) * 1000
    answer = call.sdp_answer
    if answer is None or answer.audio is None or answer.rtp_address is None:
        report.reason = "200 OK without a usable SDP answer"
        call.hangup(uac)
        return None
    return _Answered(call, int(answer.audio.formats[0]), answer.rtp_address, answered_at)


async def _play_and_listen(
    stream: RtpStream, player: _Player, hung_up: asyncio.Event, listen_s: float, max_s: float
) -> str:
    """Pace the player's frames out until the call ends; how it ended."""
    pacer = asyncio.create_task(stream.pace(player))
    try:
        return await _wait_end(player.finished, hung_up, listen_s, max_s)
    finally:
        pacer.cancel()
        await asyncio.gather(pacer, return_exceptions=True)


def _report_media(
    report: DialReport,
    answered_at: float,
    stream: RtpStream,
    recorder: _Recorder,
    record: Path | None,
) -> None:
    """What the call carried: duration, first audio heard, packets; the recording saved."""
    report.duration_s = time.monotonic() - answered_at
    if recorder.first_audio_at is not None:
        report.time_to_first_audio_ms = (recorder.first_audio_at - answered_at) * 1000
    report.packets_sent = stream.stats.packets_out
    report.packets_received = stream.stats.packets_in
    if record is not None:
        recorder.save(record)
        report.recording = str(record)


async def _wait_end(
    finished: asyncio.Event, hung_up: asyncio.Event, listen_s: float, max_s: float
) -> str:
    """How the call ends: the far end hangs up, or we do after playing and listening."""

    async def played_then_listened() -> None:
        await finished.wait()
        await asyncio.sleep(listen_s)  # listening time is the point here, not synchronisation

    tasks = [
        asyncio.create_task(played_then_listened()),
        asyncio.create_task(hung_up.wait()),
    ]
    try:
        done, _ = await asyncio.wait(tasks, timeout=max_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    if hung_up.is_set():
        return "remote BYE"
    return "us (audio played, listened)" if done else "us (max duration)"
