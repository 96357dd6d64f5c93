"""One server process: every lease is this node's (nothing to contest, nothing to replicate)."""

from __future__ import annotations


class LocalCoordinator:
    shared = False

    def __init__(self, node_id: str, node_url: str) -> None:
        self.node_id = node_id
        self._url = node_url
        self._held: set[str] = set()

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._held.clear()

    async def claim(self, name: str) -> bool:
        self._held.add(name)
        return True

    async def release(self, name: str) -> None:
        self._held.discard(name)

    async def take(self, name: str) -> None:
        self._held.add(name)

    def want(self, name: str) -> None:
        self._held.add(name)

    def holds(self, name: str) -> bool:
        return name in self._held

    async def holder(self, name: str) -> str | None:
        return self.node_id if name in self._held else None

    async def holders(self, names: list[str]) -> list[str | None]:
        return [self.node_id if name in self._held else None for name in names]

    async def node_url(self, node_id: str) -> str | None:
        return self._url if node_id == self.node_id else None
