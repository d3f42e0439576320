"""HD voice, end to end: baresip calls in G.722 and in Opus with 16 kHz speech, the embedded
echo agent says it back, and the model is shown to receive the wideband band (energy above
4 kHz, which a G.711 call cannot carry)."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest
import soxr

from gateway.agent import EmbeddedRealtimeServer
from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import Baresip, missing_peer_tools
from .test_outbound_calls import ENV, FROM, TO, outbound_config, place

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_peer_tools("baresip", "espeak-ng", "sox")),
        reason="needs baresip, espeak-ng and sox (scripts/install-test-peers.sh)",
    ),
]

SENTENCE = "Hello, this is a test call to the echo line, please say it back to me"
RATE = 16000  # the caller's microphone and speaker: wideband
MODEL_RATE = 24000
# baresip names its codecs by their audio rate: G.722's 16 kHz, though its SDP clock is 8000.
BARESIP_CODEC = {"G722": "G722/16000/1", "opus": "opus/48000/2", "PCMU": "PCMU"}


def high_band_share(pcm: np.ndarray, rate: int, low_hz: float = 4000.0) -> float:
    """The share of the signal's energy above ``low_hz`` (up to 8 kHz, G.722's band)."""
    power = np.abs(np.fft.rfft(pcm.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    return float(power[(freqs > low_hz) & (freqs < 8000)].sum() / power.sum())


@pytest.mark.parametrize("codec", ["G722", "opus", "PCMU"])
async def test_wideband_caller_is_heard_in_wideband_and_hears_the_echo(
    tmp_path: Path, codec: str
) -> None:
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 9.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    assert 2.0 < len(reference) / RATE < 6.0, "espeak-ng produced an unexpected sentence length"
    sent_share = high_band_share(reference, RATE)
    assert sent_share > 0.01, "the speech has no energy above 4 kHz to look for"

    async with EmbeddedRealtimeServer() as service:
        # A wideband call talks PCM16 even where the profile asks for G.711 passthrough; the
        # G.711 control asks for PCM16 itself, or its audio would pass through as mu-law.
        audio_format = "pcm16" if codec == "PCMU" else "g711"
        config = {
            "realtime": {
                "url": service.url,
                "auth": {"method": "none"},
                "audio_format": audio_format,
            },
            "media": {"codecs": ["opus", "G722", "PCMU", "PCMA"]},
        }
        async with GatewayProcess(tmp_path, config) as gateway:
            caller = Baresip(
                tmp_path / "baresip", tmp_path / "speech.wav", gateway.uri(),
                codecs=BARESIP_CODEC[codec], srate=RATE,
            )  # fmt: skip
            result = (await caller.run(timeout=60)).check()
            ended = await gateway.wait_for("call.ended", timeout=15)
    answered = gateway.find("call.answered")
    assert len(answered) == 1 and answered[0]["codec"] == codec
    assert ended["reason"] == "caller_bye"

    [session] = service.sessions
    for event in session.received:
        validate_client_event(event)
    assert session.config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": MODEL_RATE}
    appends = [e["audio"] for e in session.received if e["type"] == "input_audio_buffer.append"]
    appended = np.frombuffer(b"".join(map(base64.b64decode, appends)), dtype="<i2")
    a0, a1 = active_bounds(appended, MODEL_RATE)
    model_share = high_band_share(appended[a0:a1], MODEL_RATE)
    print(
        f"\n{codec}: energy above 4 kHz: {sent_share:.2%} of the caller's speech,"
        f" {model_share:.2%} of what the model received"
    )
    if codec == "PCMU":
        # The control: the same wideband caller in G.711 reaches the model without its upper
        # band (8 kHz audio, and the minimum-phase filter stops at 70 dB).
        assert model_share < 0.05 * sent_share
    else:
        assert model_share > 0.5 * sent_share  # most of the caller's upper band arrives

    assert result.received_wav is not None
    rate, heard = read_wav(result.received_wav)
    if rate != RATE:
        heard = soxr.resample(heard, rate, RATE).astype(np.int16)
    peak, _ = normalized_xcorr(reference, heard)
    print(f"echo {codec}: correlation {peak:.3f} ({rate} Hz heard)")
    assert peak >= 0.8


@pytest.mark.parametrize(("codecs", "answered"), [("G722", "G722"), ("opus,G722", "opus")])
async def test_an_outbound_call_offers_every_codec_and_baresip_answers_one(
    tmp_path: Path, codecs: str, answered: str
) -> None:
    """The gateway dials baresip offering opus, G722 and PCMU: baresip answers in the first
    it has (with G722 only, it would have refused an offer of opus alone), the model hears
    it in wideband, and baresip hears the echo."""
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 1.5, 9.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    async with EmbeddedRealtimeServer() as service:
        callee = Baresip(
            tmp_path / "baresip", tmp_path / "speech.wav", 0, caller_user=TO, answer=True,
            codecs=",".join(BARESIP_CODEC[c] for c in codecs.split(",")), srate=RATE,
        )  # fmt: skip
        api_port, config = outbound_config(service, callee.caller_port)
        config["media"] = {"codecs": ["opus", "G722", "PCMU"]}
        config["realtime"]["audio_format"] = "g711"  # several codecs offered: PCM16 anyway
        async with GatewayProcess(tmp_path, config, env=ENV) as gateway:
            await callee.start()
            try:
                code, body = await place(api_port, {"to": TO, "from": FROM})
                assert code == 202, body
                result = (await callee.wait(timeout=60)).check()
            finally:
                await callee.stop()
            ended = await gateway.wait_for("call.ended", timeout=15)
    answer = gateway.find("call.answered")
    assert len(answer) == 1 and answer[0]["codec"] == answered
    assert ended["reason"] == "caller_bye"
    [session] = service.sessions
    assert session.config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": MODEL_RATE}
    appends = [e["audio"] for e in session.received if e["type"] == "input_audio_buffer.append"]
    appended = np.frombuffer(b"".join(map(base64.b64decode, appends)), dtype="<i2")
    a0, a1 = active_bounds(appended, MODEL_RATE)
    model_share = high_band_share(appended[a0:a1], MODEL_RATE)
    assert result.received_wav is not None
    rate, heard = read_wav(result.received_wav)
    if rate != RATE:
        heard = soxr.resample(heard, rate, RATE).astype(np.int16)
    peak, _ = normalized_xcorr(reference, heard)
    print(f"\noutbound {answered}: model's share above 4 kHz {model_share:.2%}, echo {peak:.3f}")
    assert model_share > 0.5 * high_band_share(reference, RATE) and peak >= 0.8
