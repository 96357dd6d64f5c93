"""The hash-chained audit log: who queried whom, viewed what, asked for and approved which follow-up.

Each entry stores ``sha256(prev_hash + canonical JSON of the entry)`` (``core.hashchain``); the store
appends under a lock so the chain has no forks. ``ChainVerifier`` is the pure check: fed the entries in
order, it names the first one whose sequence, link or hash is wrong. ``verify`` walks the whole store.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core.hashchain import GENESIS, chain_hash
from core.ids import CaseId, QueryId, UserId
from persistence.query_models import AuditDraft, AuditEntry
from persistence.query_port import AuditStore


class AuditLog:
    """Append entries; the one way the query work writes to the audit chain."""

    def __init__(self, store: AuditStore) -> None:
        self._store = store

    async def record(
        self,
        action: str,
        actor_id: UserId | None,
        *,
        reason: str = "",
        case_id: CaseId | None = None,
        query_id: QueryId | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditEntry:
        draft = AuditDraft(action, actor_id, int(time.time() * 1000), reason, case_id, query_id, details or {})
        return await self._store.append_audit(draft)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    entries: int  # entries checked (up to and including the first bad one)
    head: str  # hash of the last good entry (GENESIS when none)
    bad_seq: int | None = None
    problem: str | None = None


class ChainVerifier:
    """Feed entries oldest first; ``problem`` is set at the first entry that breaks the chain."""

    def __init__(self) -> None:
        self.expected_seq = 1
        self.head = GENESIS
        self.checked = 0
        self.problem: str | None = None
        self.bad_seq: int | None = None

    def feed(self, entry: AuditEntry) -> bool:
        """Check one entry; False (and ``problem`` set) when it breaks the chain."""
        if self.problem is not None:
            return False
        self.checked += 1
        if entry.seq != self.expected_seq:
            return self._fail(entry.seq, f"expected entry {self.expected_seq}, found {entry.seq} (missing entries)")
        if entry.corrupt is not None:
            return self._fail(entry.seq, f"the stored row is damaged: {entry.corrupt}")
        if entry.prev_hash != self.head:
            return self._fail(entry.seq, "prev_hash does not match the hash of the entry before it")
        try:
            digest = chain_hash(entry.prev_hash, entry.content())
        except (TypeError, ValueError) as exc:  # a value of another type (SQLite keeps whatever is written)
            return self._fail(entry.seq, f"the stored row is damaged: {exc}")
        if digest != entry.hash:
            return self._fail(entry.seq, "content does not match its hash (the entry was altered)")
        self.head = entry.hash
        self.expected_seq += 1
        return True

    def _fail(self, seq: int, problem: str) -> bool:
        self.bad_seq, self.problem = seq, problem
        return False

    def result(self) -> VerifyResult:
        return VerifyResult(self.problem is None, self.checked, self.head, self.bad_seq, self.problem)


def verify_entries(entries: Iterable[AuditEntry]) -> VerifyResult:
    verifier = ChainVerifier()
    for entry in entries:
        if not verifier.feed(entry):
            break
    return verifier.result()


async def walk(store: AuditStore, feed: Callable[[AuditEntry], bool], *, page: int = 1000) -> None:
    """Feed the whole audit log, oldest first, in pages; stop when ``feed`` returns False."""
    after = 0
    while True:
        entries = await store.audit_entries(after_seq=after, limit=page)
        for entry in entries:
            if not feed(entry):
                return
        if len(entries) < page:
            return
        after = entries[-1].seq


async def verify(store: AuditStore, *, page: int = 1000) -> VerifyResult:
    """Walk the whole audit log in pages; stop at the first broken entry."""
    verifier = ChainVerifier()
    await walk(store, verifier.feed, page=page)
    return verifier.result()
