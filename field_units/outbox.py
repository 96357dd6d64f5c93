"""A unit's outbox: every position waits here, numbered, until the server acknowledges it.

Pure bookkeeping (no clock, no I/O). Sequence numbers increase by one per position and are never reused,
so the server's dedupe by (unit, seq) makes any resend safe. The outbox is bounded: when it is full, new
positions are refused and counted (``refused``) rather than older ones dropped silently — the caller
shows the count, and the older track (evidence of where the officer was) is kept.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any


class OutboxFull(Exception):
    """The outbox holds ``capacity`` unacknowledged positions."""


class Outbox:
    def __init__(self, capacity: int = 100_000, *, first_seq: int = 1) -> None:
        self.capacity = capacity
        self._next_seq = first_seq
        self._pending: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.refused = 0
        self.acked = 0

    def add(self, position: dict[str, Any]) -> int:
        """Number a position and keep it until acknowledged; raises OutboxFull."""
        if len(self._pending) >= self.capacity:
            self.refused += 1
            raise OutboxFull(f"{self.capacity} positions wait for acknowledgement")
        seq = self._next_seq
        self._next_seq += 1
        self._pending[seq] = {**position, "seq": seq}
        return seq

    def oldest(self, limit: int, *, after: int = 0) -> list[dict[str, Any]]:
        """Up to ``limit`` unacknowledged positions with seq > after, oldest first."""
        out: list[dict[str, Any]] = []
        for seq, position in self._pending.items():
            if seq > after:
                out.append(position)
                if len(out) == limit:
                    break
        return out

    def ack(self, seqs: list[int]) -> None:
        """Forget positions the server stored (new or duplicate)."""
        for seq in seqs:
            if self._pending.pop(seq, None) is not None:
                self.acked += 1

    def drop_rejected(self, seqs: list[int]) -> None:
        """Positions the server refused as invalid: resending them cannot help."""
        for seq in seqs:
            self._pending.pop(seq, None)

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def next_seq(self) -> int:
        return self._next_seq
