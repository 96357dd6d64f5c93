"""Event bus port and adapters: in-process (one server process) and Redis (several processes)."""

from event_bus.factory import build_bus
from event_bus.port import Event, EventBus, SubscriberLagged, Subscription

__all__ = ["Event", "EventBus", "SubscriberLagged", "Subscription", "build_bus"]
