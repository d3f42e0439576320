"""Model audio to 8 kHz, and the accounting of what was heard, through the real resampler.

The claim under test: after the pacer sent ``S`` samples of an item, the caller heard exactly
the item's first ``S / 8`` ms of model audio, whatever the resampler still holds back of what
was received (nothing since issue 19, soxr's 10-32 ms before). Pulses at known model times
must come out at sample ``8 * t_ms`` (plus the filter's own 0.25 ms).
"""

from __future__ import annotations

import numpy as np

from gateway.bridge.model_audio import ModelAudio
from gateway.bridge.playback import ItemAccount, ItemKey, Playback
from gateway.media.g711 import PCMU
from gateway.media.minphase import DELAY_MS

RATE_IN = 24000
A = ItemKey("resp_1", "item_1")
B = ItemKey("resp_2", "item_2")
PULSE_EVERY_MS = 100
PULSE_AT_MS = 50


def pulses(seconds: float) -> np.ndarray:
    """Gaussian pulses (sigma 0.25 ms, well inside telephone band) at 50 ms + k * 100 ms."""
    t = np.arange(int(seconds * RATE_IN)) / RATE_IN * 1000
    x = np.zeros(t.size)
    for centre in np.arange(PULSE_AT_MS, seconds * 1000, PULSE_EVERY_MS):
        x += np.exp(-0.5 * ((t - centre) / 0.25) ** 2)
    return (x * 20000).astype(np.int16)


def deltas(x: np.ndarray, ms: int = 100) -> list[bytes]:
    step = RATE_IN * ms // 1000
    return [x[i : i + step].astype("<i2").tobytes() for i in range(0, x.size, step)]


def test_heard_audio_is_exactly_the_first_sent_ms_of_the_item() -> None:
    pb = Playback(160)
    audio = ModelAudio(pb, PCMU, passthrough=False)
    heard: list[np.ndarray] = []
    holdbacks = []
    chunks = deltas(pulses(3.0))
    # The service sends faster than real time: one 100 ms delta per 20 ms tick, so what was
    # received runs ahead of what was sent, and the resampler always holds some back.
    for tick in range(60):
        if tick < len(chunks):
            audio.delta(A, chunks[tick])
        frame = pb.next_frame()
        assert frame is not None
        heard.append(frame.copy())
        item = pb.items[A]
        queued_unsent_ms = (item.queued_samples - item.sent_samples) / 8
        # received = held in the resampler + queued here + sent: the sent part is the model's
        # timeline.
        assert abs(item.received_ms - audio.held_ms - queued_unsent_ms - item.sent_ms) <= 0.5
        holdbacks.append(audio.held_ms)
    out = np.concatenate(heard)
    item = pb.items[A]
    assert item.sent_samples == out.size == 60 * 160
    assert item.heard_ms == 1200
    # Every pulse is where its model time says, to the sample: heard sample n = n / 8 ms, plus
    # the resampler filter's own delay (0.25 ms, 2 samples: media/minphase.py).
    late = round(DELAY_MS * 8)
    expected = np.arange(PULSE_AT_MS, 1200, PULSE_EVERY_MS) * 8 + late
    for n in expected:
        window = out[n - 40 : n + 40].astype(np.float64)
        assert np.argmax(window) - 40 in (-1, 0, 1), f"pulse at {n / 8} ms misplaced"
    # The minimum-phase resampler holds back only the two 24 kHz samples after the last one an
    # output is made of (soxr MQ held 10-32 ms, which "received minus queued" would have
    # counted as heard).
    assert set(holdbacks) == {2 / 24}


def test_cut_drops_the_hold_back_and_the_next_item_starts_aligned() -> None:
    finished: list[ItemAccount] = []
    pb = Playback(160, on_finished=finished.append)
    audio = ModelAudio(pb, PCMU, passthrough=False)
    for chunk in deltas(pulses(1.0))[:5]:
        audio.delta(A, chunk)
    for _ in range(10):
        pb.next_frame()
    [cut] = pb.interrupt()
    audio.cut()
    assert audio.held_ms == 0.0
    assert cut.heard_ms == 200 and cut.received_ms == 500.0
    for chunk in deltas(pulses(1.0)):
        audio.delta(B, chunk)
    audio.done(B)
    out = np.concatenate([pb.next_frame().copy() for _ in range(50)])
    assert pb.next_frame() is None
    late = round(DELAY_MS * 8)  # the filter's own delay, 2 samples
    assert np.argmax(out[:800]) - late in (399, 400, 401)  # B's first pulse at 50 ms, not shifted
    item = finished[-1]
    assert item.key == B and item.played_in_full and item.heard_ms == 1000


def test_done_ends_the_item_at_its_exact_length() -> None:
    """With soxr, done released a held-back tail into the item; the minimum-phase filter holds
    none back, so the item is already complete: 8 samples per ms of model audio, no more."""
    pb = Playback(160)
    audio = ModelAudio(pb, PCMU, passthrough=False)
    audio.delta(A, deltas(pulses(0.33))[0])
    assert pb.items[A].queued_samples == 8 * 100
    audio.done(A)
    item = pb.items[A]
    assert item.done and item.queued_samples == 8 * 100 and audio.held_ms == 0.0
    # a new item's deltas never receive A's tail
    audio.delta(B, deltas(pulses(0.1))[0])
    assert pb.items[A].queued_samples == 800


def test_g711_passthrough_counts_one_byte_per_sample() -> None:
    pb = Playback(160)
    audio = ModelAudio(pb, PCMU, passthrough=True)
    audio.delta(A, bytes(PCMU.encode(np.full(400, 1000, np.int16))))
    item = pb.items[A]
    assert item.received_ms == 50.0 and item.queued_samples == 400 and audio.held_ms == 0.0
