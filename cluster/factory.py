"""Pick the coordinator from the bus URL: processes that share a Redis bus share its leases."""

from __future__ import annotations

import socket

from cluster.local import LocalCoordinator
from cluster.port import Coordinator
from config.settings import Settings


def node_identity(settings: Settings) -> tuple[str, str]:
    """This process's node id and direct URL: configured, or the host name and the port it serves on."""
    host = socket.gethostname()
    node_id = settings.cluster.node_id or f"{host}:{settings.server.port}"
    served = settings.server.host if settings.server.host not in ("0.0.0.0", "::", "") else host
    node_url = settings.cluster.node_url or f"http://{served}:{settings.server.port}"
    return node_id, node_url.rstrip("/")


def build_coordinator(settings: Settings, *, namespace: str | None = None) -> Coordinator:
    node_id, node_url = node_identity(settings)
    if settings.bus.url.startswith("memory://"):
        return LocalCoordinator(node_id, node_url)
    from cluster.redis import RedisCoordinator

    return RedisCoordinator(
        settings.bus.url,
        node_id=node_id,
        node_url=node_url,
        lease_seconds=settings.cluster.lease_seconds,
        namespace=namespace or settings.bus.namespace,
    )
