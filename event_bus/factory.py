"""Pick the bus adapter from its URL: the one place that knows both adapters exist."""

from __future__ import annotations

from config.settings import BusSettings
from event_bus.port import EventBus


def build_bus(settings: BusSettings, *, namespace: str | None = None) -> EventBus:
    """Build (not yet started) the bus named by ``settings.url``."""
    if settings.url.startswith("memory://"):
        from event_bus.memory import MemoryBus

        return MemoryBus(history=settings.history)
    from event_bus.redis import RedisBus

    return RedisBus(settings.url, history=settings.history, namespace=namespace or settings.namespace,
                    subscribe_timeout=settings.subscribe_timeout_seconds)  # fmt: skip
