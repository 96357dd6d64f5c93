"""One server process: every lease is this node's (nothing to contest, nothing to replicate).

Epochs still rise per grant (seeded from the clock, so they keep rising across a restart on the same
database): the fenced writes then behave the same with one process as with several.
"""

from __future__ import annotations

import time

from core.fencing import next_epoch


class LocalCoordinator:
    shared = False

    def __init__(self, node_id: str, node_url: str) -> None:
        self.node_id = node_id
        self._url = node_url
        self._held: set[str] = set()
        self._epochs: dict[str, int] = {}
        self._last_epoch = 0

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        self._held.clear()
        self._epochs.clear()

    def _grant(self, name: str, *, again: bool) -> None:
        self._held.add(name)
        if again or name not in self._epochs:
            self._last_epoch = next_epoch(self._last_epoch, time.time_ns() // 1000)
            self._epochs[name] = self._last_epoch

    async def claim(self, name: str) -> bool:
        self._grant(name, again=False)
        return True

    async def release(self, name: str) -> None:
        self._held.discard(name)
        self._epochs.pop(name, None)

    async def take(self, name: str) -> None:
        self._grant(name, again=True)

    def want(self, name: str) -> None:
        self._grant(name, again=False)

    def epoch(self, name: str) -> int | None:
        return self._epochs.get(name) if name in self._held else None

    def holds(self, name: str) -> bool:
        return name in self._held

    def held(self) -> list[str]:
        return sorted(self._held)

    async def holder(self, name: str) -> str | None:
        return self.node_id if name in self._held else None

    async def holders(self, names: list[str]) -> list[str | None]:
        return [self.node_id if name in self._held else None for name in names]

    async def node_url(self, node_id: str) -> str | None:
        return self._url if node_id == self.node_id else None
