"""Full collections kept away from calls: only between calls, or once per so many calls."""

from __future__ import annotations

import gc

from gateway.gc_pauses import NEVER, FullCollections, GcPauses


def full_collections_so_far() -> int:
    return gc.get_stats()[2]["collections"]


class Cycle:
    def __init__(self) -> None:
        self.me = self


def test_install_turns_off_the_automatic_trigger_and_remove_restores_it() -> None:
    before = gc.get_threshold()
    policy = FullCollections()
    policy.install()
    try:
        assert gc.get_threshold() == (before[0], NEVER, NEVER)
        policy.install()  # twice: still restores the original, not NEVER
    finally:
        policy.remove()
    assert gc.get_threshold() == before


def test_only_the_youngest_generation_is_collected_automatically() -> None:
    """What survives a young collection (a call's suspended tasks) is not scanned again by
    a middle-generation collection every tenth one: it waits for the full collections."""
    policy = FullCollections()
    policy.install()
    try:
        young, middle = (gc.get_stats()[g]["collections"] for g in (0, 1))
        kept = []
        for _ in range(100_000):  # 10 million objects at most; 30 collections need ~21,000
            if gc.get_stats()[0]["collections"] >= young + 30:  # three times the old trigger
                break
            kept.append([[] for _ in range(100)])  # survivors, as suspended tasks are
        assert gc.get_stats()[0]["collections"] >= young + 30
        assert gc.get_stats()[1]["collections"] == middle
    finally:
        policy.remove()
    del kept


def test_a_full_collection_when_the_last_call_ends_or_every_n_calls() -> None:
    policy = FullCollections(every_calls=3)
    policy.install()
    try:
        start = full_collections_so_far()
        policy.call_ended(calls_left=5)
        policy.call_ended(calls_left=4)
        assert full_collections_so_far() == start  # calls still up: no pause for them
        assert policy.calls_since == 2
        for _ in range(10):
            Cycle()  # garbage only a collection can find
        policy.call_ended(calls_left=3)  # the third: the bound on what may pile up
        assert full_collections_so_far() == start + 1
        assert policy.calls_since == 0 and policy.last_calls == 3
        assert policy.last_found >= 10
        policy.call_ended(calls_left=0)  # nobody left to hear the pause
        assert full_collections_so_far() == start + 2
        assert policy.as_dict() == {
            "calls_since": 0,
            "last_after_calls": 1,
            "last_found_objects": policy.last_found,
        }
    finally:
        policy.remove()


def test_pauses_count_their_total_time() -> None:
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect(0)
        gc.collect(0)
    finally:
        pauses.remove()
    assert pauses.count[0] == 2
    assert 0 < pauses.max_ms[0] < pauses.total_ms[0]  # two pauses, neither of zero time
    assert pauses.as_dict()["gen0"]["total_ms"] == round(pauses.total_ms[0], 1)
