"""The coordination port: named leases held by one node at a time, and each node's direct address.

A lease names a piece of work that must run in one process only: ``leader`` (the sweepers), ``query:<id>``
(a running asset query and its deadline), ``media:<unit>`` (the process holding a unit's live session),
``room:<room>`` (a consultation room's media home).
Its holder renews it in the background; a holder that dies loses it after ``lease_seconds`` and another
node may take it. Each grant carries an epoch (a fencing token) that the holder passes with the writes it
makes under the lease, so a holder that was only paused, not dead, is refused by the store when it wakes.
With one process (the memory bus) every lease is simply held locally.
"""

from __future__ import annotations

from typing import Protocol

from core.fencing import Fence

LEADER = "leader"


def media_lease(unit_id: str) -> str:
    return f"media:{unit_id}"


def room_lease(room_id: str) -> str:
    """The consultation room's media home: the process running its SFU (``command_center.forwarding``)."""
    return f"room:{room_id}"


class Coordinator(Protocol):
    node_id: str
    #: True when other processes may exist (leases are contested, live state must be replicated).
    shared: bool

    async def start(self) -> None: ...

    async def close(self) -> None:
        """Release every lease this node holds, so peers take over at once instead of after a lapse."""

    async def claim(self, name: str) -> bool:
        """Take the lease if it is free (or already ours) and keep renewing it; False if another node holds it."""

    async def release(self, name: str) -> None:
        """Give the lease up (only if this node holds it)."""

    async def take(self, name: str) -> None:
        """Hold the lease whoever held it (a unit's newest media session replaces its older one elsewhere)."""

    def want(self, name: str) -> None:
        """Keep trying to hold the lease in the background (leadership): ``holds`` tells when we have it."""

    def holds(self, name: str) -> bool:
        """Whether this node holds the lease now (renewed within its lifetime)."""

    def held(self) -> list[str]:
        """Every lease this node holds now (the 运维 page shows what each process leads)."""

    def epoch(self, name: str) -> int | None:
        """The fencing token of this node's grant of the lease (``core.fencing``): higher than every earlier
        grant of that name, unchanged by renewals; None if this node has not been granted it."""

    async def holder(self, name: str) -> str | None:
        """The node holding the lease, if any."""

    async def holders(self, names: list[str]) -> list[str | None]:
        """The holders of several leases at once."""

    async def node_url(self, node_id: str) -> str | None:
        """How to reach a live node directly; None if it is not alive."""


def fence_of(cluster: Coordinator | None, name: str) -> Fence | None:
    """The fence for writes made under this node's grant of the lease; None (unfenced) with no coordinator
    or no grant (Redis was away when the work started: it runs anyway, see docs/scale-out.md)."""
    epoch = None if cluster is None else cluster.epoch(name)
    return None if epoch is None else Fence(name, epoch)
