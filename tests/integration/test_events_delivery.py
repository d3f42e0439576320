"""Call events delivered at least once, over real HTTP on loopback: retried with the same id,
on disk before the first attempt and until a 2xx, kept across a stop, bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from gateway.config.hooks import EventsHook
from gateway.hooks.delivery import EventDelivery
from gateway.metrics import EventMetrics

from .event_receiver import SECRET, EventReceiver

pytestmark = pytest.mark.integration


def delivery(url: str, box: Path, registry: CollectorRegistry, **cfg: object) -> EventDelivery:
    hook = EventsHook.model_validate({"url": url, "retry_max_s": 0.2, **cfg})
    return EventDelivery(hook, box, EventMetrics(registry), SECRET)


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels or None) or 0.0


async def test_a_failing_receiver_gets_the_same_event_until_it_says_2xx(tmp_path: Path) -> None:
    """500, 500, 200: three requests, one id (body and webhook-id header), each signed; the
    event's file is in the outbox at every attempt and gone after the 2xx."""
    box = tmp_path / "outbox"
    registry = CollectorRegistry()
    on_disk: list[bool] = []
    async with EventReceiver(answers=[500, 500]) as receiver:
        receiver.on_request = lambda e: on_disk.append(any(box.glob(f"*_{e['id']}.json")))
        sender = delivery(receiver.url, box, registry)
        await sender.start()
        sender.emit("call.started", {"caller": "+4930123"}, call_id="c1")
        await receiver.wait_until(lambda r: len(r.delivered) == 1, 15, "a delivery")
        async with asyncio.timeout(10):
            await sender.wait_empty()  # the 2xx has reached the sender, the file is gone
        await sender.close()
    ids = {r.event["id"] for r in receiver.received}
    assert [r.status for r in receiver.received] == [500, 500, 200]
    assert len(ids) == 1 and {r.headers["webhook-id"] for r in receiver.received} == ids
    assert receiver.delivered[0]["data"] == {"caller": "+4930123"}
    assert receiver.delivered[0]["type"] == "call.started"
    assert on_disk == [True, True, True]
    assert not list(box.glob("*.json*"))
    assert sample(registry, "sipgw_events_delivered_total", type="call.started") == 1
    assert sample(registry, "sipgw_events_failed_total") == 2
    assert sample(registry, "sipgw_events_retried_total") == 2
    assert sample(registry, "sipgw_events_pending") == 0


async def test_a_stop_keeps_undelivered_events_for_the_next_start(tmp_path: Path) -> None:
    """The receiver is down: the events stay on disk through a stop; the next start sends
    them, in order, with their ids, and only the types configured are sent at all."""
    box = tmp_path / "outbox"
    receiver = EventReceiver()  # not listening yet: connection refused
    first = delivery(receiver.url, box, CollectorRegistry(), events=["call.started", "call.ended"])
    await first.start()
    for kind in ("call.started", "call.answered", "call.ended"):
        first.emit(kind, {}, call_id="c1")
    first.emit("call.started", {}, call_id="c2")
    ids = [e.event.id for e in first.pending.entries.values()]
    await first.close()
    assert len(ids) == 3 and len(list(box.glob("*.json"))) == 3

    async with receiver:
        second = delivery(receiver.url, box, CollectorRegistry())
        await second.start()
        async with asyncio.timeout(15):
            await second.wait_empty()
        await second.close()
    got = receiver.delivered
    assert sorted(e["id"] for e in got) == sorted(ids)
    c1 = [e["type"] for e in got if e["call_id"] == "c1"]
    assert c1 == ["call.started", "call.ended"]
    assert not list(box.glob("*.json"))


async def test_the_outbox_bound_drops_the_oldest_and_counts_it(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    registry = CollectorRegistry()
    receiver = EventReceiver()  # down
    sender = delivery(receiver.url, box, registry, max_pending=3)
    await sender.start()
    for n in range(5):
        sender.emit("call.started", {"n": n}, call_id=f"c{n}")
    assert sample(registry, "sipgw_events_dropped_total") == 2
    assert sample(registry, "sipgw_events_pending") == 3
    await sender.close()
    assert len(list(box.glob("*.json"))) == 3

    async with receiver:
        again = delivery(receiver.url, box, CollectorRegistry())
        await again.start()
        await receiver.wait_until(lambda r: len(r.delivered) == 3, 15, "three deliveries")
        await again.close()
    assert sorted(e["data"]["n"] for e in receiver.delivered) == [2, 3, 4]


async def test_a_redirect_is_not_followed_and_counts_as_failed(tmp_path: Path) -> None:
    box = tmp_path / "outbox"
    registry = CollectorRegistry()
    async with EventReceiver(answers=[307]) as receiver:
        sender = delivery(receiver.url, box, registry)
        await sender.start()
        sender.emit("call.ended", {}, call_id="c1")
        await receiver.wait_until(lambda r: len(r.delivered) == 1, 15, "a delivery")
        await sender.close()
    assert [r.status for r in receiver.received] == [307, 200]
    assert sample(registry, "sipgw_events_failed_total") == 1
