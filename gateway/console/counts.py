"""The console's metrics, in the gateway's registry: pages open, pages dropped for being slow,
listen-ins started (each is also logged with who started it)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from ..metrics import PREFIX
from .hub import Hub


class ConsoleMetrics:
    def __init__(self, registry: CollectorRegistry, hub: Hub) -> None:
        p = PREFIX
        self.pages = Gauge(
            f"{p}_console_pages", "Console pages with a live stream open.", registry=registry
        )
        self.pages.set_function(lambda: len(hub.subscribers))
        self.dropped = Counter(
            f"{p}_console_pages_dropped",
            "Console pages whose stream was ended for not keeping up (they reconnect).",
            registry=registry,
        )
        self.listens = Counter(
            f"{p}_console_listens",
            "Listen-ins started from the console (logged as console.listen_started with the "
            "client's address and the console user's label).",
            registry=registry,
        )
        hub.on_drop = self.dropped.inc
