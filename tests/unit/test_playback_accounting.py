"""Playback accounting at its edges: the buffer cap, the clock stamps a call record reads, a
frame that lies inside one chunk, and what stays after a barge-in.

Every figure here ends up in a truncate (`audio_end_ms`) or a call record, so a planted
off-by-one in the buffer must change one of these assertions.
"""

from __future__ import annotations

import numpy as np

from gateway.bridge import playback as playback_module
from gateway.bridge.playback import (
    LIVE,
    MAX_BUFFER_S,
    RATE,
    START_MS,
    ItemAccount,
    ItemKey,
    Playback,
)

A = ItemKey("resp_1", "item_1")
B = ItemKey("resp_2", "item_2")


def ramp(n: int, start: int = 1) -> np.ndarray:
    return (np.arange(start, start + n) % 30000).astype(np.int16)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_constants_are_the_documented_ones() -> None:
    assert (RATE, MAX_BUFFER_S, START_MS) == (8000, 120.0, 40)
    assert ItemKey("r", "i").content_index == 0
    assert Playback().frame_samples == 160
    assert Playback().max_buffer_s == 120.0


def test_every_buffer_is_listed_while_alive() -> None:
    pb = Playback()
    assert pb in LIVE


def test_the_cap_drops_the_rest_of_an_overflowing_answer_only() -> None:
    pb = Playback(160, max_buffer_s=0.1)  # 800 samples
    pb.push(A, ramp(800), 300.0)  # exactly the cap: kept
    assert pb.items[A].queued_samples == 800 and not pb.items[A].overflowed
    assert pb.buffered_ms == 100.0
    pb.push(A, ramp(1), 3.0)  # one more sample: dropped, and the item is marked
    item = pb.items[A]
    assert item.overflowed and pb.dropped_samples == 1
    assert item.received_ms == 303.0  # received is counted even when dropped
    for _ in range(5):
        pb.next_frame()
    assert pb.buffered_ms == 0
    pb.push(A, ramp(160), 60.0)  # room again, but the overflowed answer stays cut
    assert pb.dropped_samples == 161 and item.queued_samples == 800
    pb.push(B, ramp(800), 300.0)  # another item fits
    assert pb.items[B].queued_samples == 800 and not pb.items[B].overflowed


def test_an_empty_chunk_counts_received_time_only() -> None:
    pb = Playback(160)
    pb.push(A, ramp(0), 7.5)
    assert pb.items[A].received_ms == 7.5
    assert pb.items[A].queued_samples == 0 and pb.dropped_samples == 0
    assert pb.next_frame() is None


def test_first_sent_and_finished_are_stamped_by_the_clock() -> None:
    clock = Clock()
    finished: list[ItemAccount] = []
    pb = Playback(160, clock=clock, on_finished=finished.append)
    pb.push(A, ramp(320), 120.0)
    pb.mark_done(A)
    clock.now = 101.0
    pb.next_frame()
    clock.now = 102.0
    pb.next_frame()  # the second frame does not move first_sent_at
    assert finished and finished[0].first_sent_at == 101.0
    assert finished[0].finished_at == 102.0
    assert finished[0].played_in_full and not finished[0].interrupted


def test_a_frame_inside_one_chunk_is_that_chunk_exactly() -> None:
    pb = Playback(160)
    audio = ramp(480)
    pb.push(A, audio, 180.0)
    frames = [pb.next_frame() for _ in range(3)]
    for i, frame in enumerate(frames):
        np.testing.assert_array_equal(frame, audio[160 * i : 160 * (i + 1)])
    assert pb.items[A].sent_samples == 480 and pb.buffered_ms == 0


def test_a_frame_across_chunks_is_filled_then_padded() -> None:
    pb = Playback(160)
    pb.push(A, ramp(100, 1), 37.5)
    pb.push(A, ramp(100, 101), 37.5)
    pb.mark_done(A)
    first = pb.next_frame().copy()
    np.testing.assert_array_equal(first, ramp(160, 1))
    second = pb.next_frame()
    np.testing.assert_array_equal(second[:40], ramp(40, 161))
    assert not second[40:].any()
    assert pb.next_frame() is None


def test_talk_spurt_start_threshold_is_exactly_40_ms() -> None:
    pb = Playback(160)
    pb.push(A, ramp(319), 119.0)
    assert pb.next_frame() is None  # 39.9 ms queued, the answer still streaming
    pb.push(A, ramp(1), 1.0)
    assert pb.next_frame() is not None  # 40 ms: it starts
    assert pb.next_frame() is not None  # talking: one frame is enough now
    assert pb.next_frame() is None  # empty


def test_after_an_underrun_the_next_spurt_waits_for_40_ms_again() -> None:
    pb = Playback(160)
    pb.push(A, ramp(320), 120.0)
    pb.next_frame()
    pb.next_frame()
    assert pb.next_frame() is None  # underrun: talking stops
    pb.push(A, ramp(160), 60.0)
    assert pb.next_frame() is None  # one frame is not enough to start again


def test_interrupt_clears_hold_and_keeps_finished_items_out() -> None:
    clock = Clock()
    pb = Playback(160, clock=clock)
    pb.push(A, ramp(160), 60.0)
    pb.mark_done(A)
    pb.next_frame()  # A played in full: finished and forgotten
    pb.push(B, ramp(800), 300.0)
    pb.hold()
    assert pb.next_frame() is None
    clock.now = 150.0
    cut = pb.interrupt()
    assert [item.key for item in cut] == [B]
    assert cut[0].interrupted and cut[0].finished_at == 150.0
    assert not pb.held and not pb.items
    pb.push(A, ramp(320), 120.0)  # a new answer after the cut starts from the beginning
    frame = pb.next_frame()
    np.testing.assert_array_equal(frame, ramp(160))


def test_done_before_the_last_frame_finishes_when_it_goes_out() -> None:
    finished: list[ItemAccount] = []
    pb = Playback(160, on_finished=finished.append)
    pb.push(A, ramp(320), 120.0)
    pb.mark_done(A)
    assert not finished  # queued, not sent
    pb.next_frame()
    assert not finished
    pb.next_frame()
    assert [item.key for item in finished] == [A]
    pb.mark_done(A)  # after it finished: a new account, played in full at once (nothing)
    assert len(finished) == 2 and finished[1] is not finished[0]


def test_buffered_ms_follows_queue_and_sends() -> None:
    pb = Playback(160)
    pb.push(A, ramp(400), 150.0)
    assert pb.buffered_ms == 50.0
    pb.next_frame()
    assert pb.buffered_ms == 30.0
    assert playback_module.Playback(80)._start_samples == 320
