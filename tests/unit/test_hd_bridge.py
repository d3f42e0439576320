"""The bridge's audio at a wideband codec's rate: Opus untouched at 24 kHz, G.722 at 16 kHz
through the rational minimum-phase filter, the heard accounting in the codec's samples, and
loss concealed in order."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.bridge.model_audio import ModelAudio
from gateway.bridge.playback import ItemKey, Playback
from gateway.bridge.uplink import CallerAudio
from gateway.config import parse_config
from gateway.media.codecs import codec_spec

A = ItemKey("resp_1", "item_1")


def speech(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * 300 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(
        np.int16
    )


@pytest.mark.parametrize(("name", "rate"), [("opus", 24000), ("G722", 16000)])
def test_model_audio_reaches_playback_at_the_codecs_rate_and_heard_ms_follows(
    name: str, rate: int
) -> None:
    codec = codec_spec(name).open()
    playback = Playback(rate // 50, rate=rate)
    audio = ModelAudio(playback, codec, passthrough=False)
    model = speech(1.0, 24000)
    for i in range(0, len(model), 2400):  # 100 ms deltas
        audio.delta(A, model[i : i + 2400].tobytes())
    audio.done(A)
    item = playback.items[A]
    assert item.received_ms == pytest.approx(1000.0)
    assert abs(item.queued_samples - rate) <= rate // 100  # a second at the codec's rate
    if name == "opus":  # nothing resampled: the model's own samples
        assert item.queued_samples == rate
    for _ in range(25):
        playback.next_frame()
    assert item.heard_ms == 500  # 25 frames of 20 ms, counted at the codec's rate


def test_caller_audio_in_opus_goes_to_the_model_as_it_is_with_a_loss_concealed() -> None:
    agent = parse_config({}).agent
    sender, codec = codec_spec("opus").open("useinbandfec=1"), codec_spec("opus").open()
    caller = CallerAudio(codec, False, agent, 20, None, lambda: None)
    pcm = speech(0.2, 24000)
    packets = [sender.encode(pcm[i : i + 480]) for i in range(0, len(pcm), 480)]
    out = [caller.convert(packets[0], False)]
    caller.lost(960)  # packet 1 lost: the receiver said so before packet 2
    out.append(caller.convert(packets[2], False))
    assert [len(b) for b in out] == [960, 2 * 960]  # 24 kHz int16: the lost 20 ms, then packet 2
    assert codec.fec_frames == 1


def test_caller_audio_in_g722_is_resampled_to_24k() -> None:
    agent = parse_config({}).agent
    sender, codec = codec_spec("G722").open(), codec_spec("G722").open()
    caller = CallerAudio(codec, False, agent, 20, None, lambda: None)
    pcm = speech(1.0, 16000)
    total = sum(
        len(caller.convert(sender.encode(pcm[i : i + 320]), False)) // 2
        for i in range(0, len(pcm), 320)
    )
    assert total == 24000  # every 20 ms packet out whole at once: nothing held back
