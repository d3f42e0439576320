"""A real call, end to end: baresip dials the gateway on the embedded echo agent and hears
its own words back through SIP, RTP, G.711, soxr, the Realtime WebSocket and the pacer."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pytest

from gateway.agent import EmbeddedRealtimeServer
from tests.audio import active_bounds, normalized_xcorr, read_wav, speech_wav
from tests.realtime_schema import validate_client_event

from .gateway_proc import GatewayProcess
from .peers import Baresip, missing_peer_tools

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        bool(missing_peer_tools("baresip", "espeak-ng", "sox")),
        reason="needs baresip, espeak-ng and sox (scripts/install-test-peers.sh)",
    ),
]

SENTENCE = "Hello, this is a test call to the echo line, please say it back to me"
RATE = 8000


@pytest.mark.parametrize(
    ("codec", "audio_format", "kernels"),
    [("PCMU", "pcm16", "c"), ("PCMA", "pcm16", "c"), ("PCMU", "g711", "c"),
     ("PCMA", "g711", "c"), ("PCMU", "pcm16", "numpy")],
)  # fmt: skip
async def test_caller_hears_their_own_words_back(
    tmp_path: Path, codec: str, audio_format: str, kernels: str
) -> None:
    """pcm16: G.711 <-> 24 kHz PCM through the minimum-phase filters; g711: audio/pcmu|pcma to
    the model as is. kernels "numpy": the gateway as installed without a C compiler
    (GATEWAY_NUMPY_MEDIA=1: the media arithmetic in numpy, not gateway/media/_dsp.c)."""
    # Lead silence, the sentence, then enough silence for the echo to come back and play
    # out: baresip hangs up when its WAV ends.
    speech = speech_wav(tmp_path / "speech.wav", SENTENCE, RATE, 0.5, 9.0)
    start, end = active_bounds(speech, RATE)
    reference = speech[start:end]
    assert 2.0 < len(reference) / RATE < 6.0, "espeak-ng produced an unexpected sentence length"

    # The echo agent runs here rather than inside the gateway, so that the test can read what
    # the gateway really sent it.
    async with EmbeddedRealtimeServer() as service:
        config = {
            "realtime": {
                "url": service.url,
                "auth": {"method": "none"},
                "audio_format": audio_format,
            }
        }
        env = {"GATEWAY_NUMPY_MEDIA": "1"} if kernels == "numpy" else {}
        async with GatewayProcess(tmp_path, config, env=env) as gateway:
            [ready] = gateway.find("gateway.ready")
            assert ready["media_kernels"] == kernels
            caller = Baresip(
                tmp_path / "baresip", tmp_path / "speech.wav", gateway.uri(), codecs=codec
            )
            result = (await caller.run(timeout=60)).check()
            ended = await gateway.wait_for("call.ended", timeout=15)
    [session] = service.sessions
    for event in session.received:
        validate_client_event(event)
    appends = [base64.b64decode(e["audio"]) for e in session.received
               if e["type"] == "input_audio_buffer.append"]  # fmt: skip
    assert appends
    if audio_format == "g711":
        # Passed through: the caller's 20 ms G.711 payloads, byte for byte, as the format says.
        assert session.config["audio"]["input"]["format"] == {"type": f"audio/{codec.lower()}"}
        assert {len(a) for a in appends} == {160}
    else:
        assert session.config["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        # Every 20 ms packet goes out whole at once: 480 samples at 24 kHz, nothing held back
        # for a block (soxr MQ sent 23 ms blocks, one packet in 7-8 late; see minphase.py)
        assert {len(a) for a in appends} == {960}

    answered = gateway.find("call.answered")
    assert len(answered) == 1 and answered[0]["codec"] == codec
    assert ended["reason"] == "caller_bye"
    assert answered[0]["call_id"] == ended["call_id"]

    assert result.received_wav is not None
    rate, heard = read_wav(result.received_wav)
    assert rate == RATE
    peak, lag = normalized_xcorr(reference, heard)
    # The gateway sends RTP continuously (silence when idle), so the received file is on the
    # wall clock: the echo must start only after the caller finished the sentence.
    lag_s = lag / RATE
    print(
        f"\necho {codec} {audio_format} ({kernels}): correlation {peak:.3f},"
        f" echo starts {lag_s:.2f} s into the call"
    )
    assert peak >= 0.8
    assert lag_s > end / RATE, "the echo started before the caller finished speaking"
    before_echo = heard[: max(lag - RATE // 4, 0)].astype(np.float64)
    assert np.sqrt(np.mean(before_echo**2)) < 300, "the gateway sent noise before the echo"
