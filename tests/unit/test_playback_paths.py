"""Playback: a frame stitched from two chunks is still 16-bit PCM, and an item that came in
several pieces is finished once, after its last piece was sent."""

from __future__ import annotations

import numpy as np

from gateway.bridge.playback import ItemAccount, ItemKey, Playback

KEY = ItemKey("r1", "a1", 0)


def test_a_frame_from_two_chunks_is_int16() -> None:
    playback = Playback(160, clock=lambda: 0.0)
    playback.push(KEY, np.full(100, 7, dtype=np.int16), 12.5)
    playback.push(KEY, np.full(100, 9, dtype=np.int16), 12.5)
    playback.mark_done(KEY)
    frame = playback.next_frame()
    assert frame is not None and frame.dtype == np.int16
    assert frame[:100].tolist() == [7] * 100 and frame[100:].tolist() == [9] * 60


def test_an_item_in_two_pieces_finishes_after_the_last_one() -> None:
    finished: list[ItemAccount] = []
    playback = Playback(160, on_finished=finished.append, clock=lambda: 0.0)
    for _ in range(2):
        playback.push(KEY, np.ones(800, dtype=np.int16), 100.0)  # 2 x 100 ms
    playback.mark_done(KEY)
    for _ in range(5):
        playback.next_frame()
    assert finished == []  # half of it sent
    for _ in range(5):
        playback.next_frame()
    [item] = finished
    assert (item.heard_ms, item.interrupted) == (200, False)
