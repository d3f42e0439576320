"""The fail2ban-like block of sources that keep failing digest authentication, on a fake clock."""

from __future__ import annotations

from gateway.sip.blocklist import AuthBlocklist


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_nth_failure_within_the_window_blocks_for_block_s() -> None:
    clock = Clock()
    blocks = AuthBlocklist(3, window_s=60, block_s=600, clock=clock)
    assert [blocks.failed("198.51.100.7") for _ in range(2)] == [False, False]
    assert not blocks.blocked("198.51.100.7")
    assert blocks.failed("198.51.100.7") is True  # the third: the block starts
    assert blocks.blocked("198.51.100.7") and blocks.blocked_sources() == 1
    assert blocks.failed("198.51.100.7") is False  # already blocked: starts nothing new
    clock.now += 599
    assert blocks.blocked("198.51.100.7")
    clock.now += 1
    assert not blocks.blocked("198.51.100.7") and blocks.blocked_sources() == 0
    # Served its time: a clean slate, three more failures for the next block.
    assert [blocks.failed("198.51.100.7") for _ in range(3)] == [False, False, True]


def test_failures_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    blocks = AuthBlocklist(3, window_s=60, block_s=600, clock=clock)
    for _ in range(10):  # one every 30 s: never three within 60 s
        assert blocks.failed("198.51.100.7") is False
        clock.now += 30
    assert not blocks.blocked("198.51.100.7")


def test_sources_are_counted_apart() -> None:
    blocks = AuthBlocklist(2, window_s=60, block_s=600, clock=Clock())
    blocks.failed("198.51.100.7")
    blocks.failed("198.51.100.8")
    assert not blocks.blocked("198.51.100.7") and not blocks.blocked("198.51.100.8")
    assert blocks.failed("198.51.100.7") is True
    assert blocks.blocked("198.51.100.7") and not blocks.blocked("198.51.100.8")


def test_max_failures_zero_never_blocks_and_tracks_nothing() -> None:
    blocks = AuthBlocklist(0, window_s=60, block_s=600, clock=Clock())
    assert not any(blocks.failed("198.51.100.7") for _ in range(1000))
    assert not blocks.blocked("198.51.100.7") and len(blocks) == 0


def test_memory_is_bounded_and_idle_sources_are_forgotten() -> None:
    clock = Clock()
    blocks = AuthBlocklist(5, window_s=60, block_s=600, max_sources=100, clock=clock)
    for i in range(10_000):  # a spread of sources, one failure each
        blocks.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(blocks) <= 100
    clock.now += 61  # every failure has left the window: the next one forgets them all
    blocks.failed("198.51.100.7")
    assert len(blocks) == 1


def test_a_blocked_source_is_kept_while_idle_ones_are_dropped() -> None:
    clock = Clock()
    blocks = AuthBlocklist(2, window_s=60, block_s=600, max_sources=100, clock=clock)
    blocks.failed("198.51.100.7")
    blocks.failed("198.51.100.7")  # blocked, and the least recent record
    clock.now += 120
    for i in range(50):
        blocks.failed(f"10.0.0.{i}")
    assert blocks.blocked("198.51.100.7")
