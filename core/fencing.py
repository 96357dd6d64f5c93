"""Fencing tokens: a lease's holder carries the epoch of its grant into every write it makes under the lease.

A lease only says who *should* be working; a process paused longer than the lease (a stop signal, a long
collector pause, a frozen VM) wakes up believing it still holds it. The store therefore checks the epoch in
the same transaction as the write and refuses one older than the newest it has seen for that lease name
(``lease_fences``), so a stale holder stops instead of writing over, or sending again for, its successor.
Kleppmann, "How to do distributed locking" (2016), is the pattern.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from core.errors import FencedOut


@dataclass(frozen=True, slots=True)
class Fence:
    """The lease a write is made under and the epoch of the grant its writer holds."""

    name: str
    epoch: int


def next_epoch(last: int, now_us: int) -> int:
    """The epoch of a new grant: above every earlier one, and at least the clock in microseconds, so the
    sequence keeps rising when the counter itself is lost (Redis restarted empty, a single process
    restarted) as long as fewer than a million grants a second were made since it was seeded. Pure."""
    return max(last + 1, now_us)


def newest_per_lease(fences: Iterable[Fence | None]) -> dict[str, int]:
    """The epoch a batch of writes presents for each lease: the newest among them (an older one in the same
    batch is as stale as one the store has already seen). Sorted by name, the order locks are taken in. Pure."""
    newest: dict[str, int] = {}
    for fence in fences:
        if fence is not None and fence.epoch > newest.get(fence.name, -1):
            newest[fence.name] = fence.epoch
    return dict(sorted(newest.items()))


def admitted(fence: Fence | None, held: dict[str, int]) -> bool:
    """Whether a write under ``fence`` may go ahead, given the epochs the store accepted (``held``). Pure."""
    return fence is None or held.get(fence.name) == fence.epoch


def refusal(fence: Fence) -> FencedOut:
    """The error a stale write gets."""
    return FencedOut(f"lease {fence.name}: grant {fence.epoch} is stale; another process has taken the work over")
