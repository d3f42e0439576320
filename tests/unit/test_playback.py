"""Playback buffer: frames for the pacer and the per-item accounting barge-in relies on."""

from __future__ import annotations

import numpy as np

from gateway.bridge.playback import ItemKey, Playback

A = ItemKey("resp_1", "item_1")
B = ItemKey("resp_2", "item_2")


def ramp(n: int, start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


def test_empty_buffer_gives_silence() -> None:
    assert Playback().next_frame() is None


def test_frames_come_out_in_order_across_chunk_edges() -> None:
    pb = Playback(160)
    pb.push(A, ramp(100), 100 / 8 * 3)  # any chunk size, as the resampler produces
    pb.push(A, ramp(300, 100), 300 / 8 * 3)
    out = [pb.next_frame().copy(), pb.next_frame().copy()]
    np.testing.assert_array_equal(np.concatenate(out), ramp(320))
    assert pb.items[A].sent_samples == 320
    assert pb.items[A].sent_ms == 40.0


def test_partial_frame_waits_while_streaming_and_is_padded_when_done() -> None:
    pb = Playback(160)
    pb.push(A, ramp(100), 12.5)
    assert pb.next_frame() is None  # more may come: do not pad mid-answer
    pb.mark_done(A)
    frame = pb.next_frame()
    assert frame is not None
    np.testing.assert_array_equal(frame[:100], ramp(100))
    assert not frame[100:].any()
    assert pb.next_frame() is None


def test_flush_drops_unsent_audio_and_names_the_items_cut() -> None:
    pb = Playback(160)
    pb.push(A, ramp(800), 100.0)
    pb.push(B, ramp(800), 100.0)
    pb.next_frame()
    assert pb.playing == A
    assert pb.flush() == [A, B]
    assert pb.next_frame() is None
    assert pb.buffered_ms == 0
    assert pb.items[A].sent_ms == 20.0
    assert pb.items[A].received_ms == 100.0


def test_frame_spanning_two_items_accounts_each() -> None:
    pb = Playback(160)
    pb.push(A, ramp(100), 12.5)
    pb.mark_done(A)
    pb.push(B, ramp(100), 12.5)
    pb.next_frame()
    assert pb.items[A].sent_samples == 100
    assert pb.items[B].sent_samples == 60
