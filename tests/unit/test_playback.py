"""Playback buffer: frames for the pacer and the per-item accounting barge-in relies on."""

from __future__ import annotations

import numpy as np

from gateway.bridge.playback import ItemAccount, ItemKey, Playback

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


def test_interrupt_drops_unsent_audio_and_returns_the_items_cut() -> None:
    finished: list[ItemAccount] = []
    pb = Playback(160, on_finished=finished.append)
    pb.push(A, ramp(800), 100.0)
    pb.mark_done(A)
    pb.push(B, ramp(800), 100.0)
    pb.next_frame()
    cut = pb.interrupt()
    assert [item.key for item in cut] == [A, B]
    assert pb.next_frame() is None
    assert pb.buffered_ms == 0
    a = cut[0]
    assert a.interrupted and a.sent_ms == 20.0 and a.received_ms == 100.0 and a.heard_ms == 20
    assert cut[1].sent_samples == 0 and cut[1].heard_ms == 0
    assert finished == cut and not pb.items  # finished items are forgotten


def test_item_played_in_full_finishes_once_and_is_not_cut() -> None:
    finished: list[ItemAccount] = []
    clock = iter(range(100)).__next__
    pb = Playback(160, on_finished=finished.append, clock=lambda: float(clock()))
    pb.push(A, ramp(320), 40.0)
    pb.mark_done(A)
    assert pb.next_frame() is not None and not finished
    assert pb.next_frame() is not None
    assert [item.key for item in finished] == [A]
    item = finished[0]
    assert item.played_in_full and not item.interrupted and item.heard_ms == 40
    assert item.first_sent_at is not None and item.finished_at > item.first_sent_at
    assert pb.interrupt() == []  # nothing left to truncate
    assert len(finished) == 1


def test_streaming_item_with_everything_sent_is_still_cut() -> None:
    """All audio received so far went out, but the model was still talking: not heard in
    full, so it gets truncated at what was sent."""
    pb = Playback(160)
    pb.push(A, ramp(320), 40.0)
    pb.next_frame()
    pb.next_frame()
    [item] = pb.interrupt()
    assert item.key == A and item.interrupted and item.heard_ms == 40


def test_heard_ms_is_clamped_to_what_was_received() -> None:
    item = ItemAccount(A, received_ms=99.4, sent_samples=800)
    assert item.sent_ms == 100.0 and item.heard_ms == 99


def test_hold_keeps_the_queue_and_its_place() -> None:
    pb = Playback(160)
    pb.push(A, ramp(480), 60.0)
    pb.next_frame()
    pb.hold()
    assert pb.next_frame() is None and pb.next_frame() is None
    assert pb.items[A].sent_samples == 160
    pb.release()
    np.testing.assert_array_equal(pb.next_frame(), ramp(160, 160))


def test_frame_spanning_two_items_accounts_each() -> None:
    pb = Playback(160)
    pb.push(A, ramp(100), 12.5)
    pb.mark_done(A)
    pb.push(B, ramp(300), 37.5)
    pb.next_frame()
    assert A not in pb.items  # played in full
    assert pb.items[B].sent_samples == 60


def test_a_talk_spurt_starts_only_with_40_ms_queued_or_the_whole_item() -> None:
    """The first delta comes out of the resampler short: starting on one frame would leave
    a gap two frames later. Once talking, one frame is enough."""
    pb = Playback(160)
    pb.push(A, ramp(300), 37.5)
    assert pb.next_frame() is None
    pb.push(A, ramp(20, 300), 2.5)
    np.testing.assert_array_equal(pb.next_frame(), ramp(160))
    np.testing.assert_array_equal(pb.next_frame(), ramp(160, 160))  # 160 left: enough now
    pb.push(B, ramp(200), 25.0)
    pb.mark_done(B)
    assert pb.next_frame() is not None  # a short item that is complete needs no 40 ms
