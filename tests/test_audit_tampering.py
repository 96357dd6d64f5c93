"""Tampering with any row of the audit log is found by ``audit verify``: every column of every entry changed
in the database behind the app's back, an entry deleted, two entries swapped. (Cutting entries off the end
leaves a shorter chain that is still whole; ``audit verify`` prints the head hash and count so a centre can
note them, e.g. in the duty log, and notice a chain that shrank.)"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from config.settings import StoreSettings
from persistence.factory import build_store
from persistence.port import Store
from persistence.query_models import AuditDraft
from query_control.audit import verify

ROWS = 6
CHANGES = {  # column -> a different value of the right type
    "action": "'query.submit'",
    "actor_id": "7",
    "at_ms": "at_ms + 1",
    "reason": "reason || '。'",
    "case_id": "42",
    "query_id": "'forged-query'",
    "details": '\'{"party": "someone else"}\'',
    "prev_hash": "(CASE substr(prev_hash, 1, 1) WHEN 'f' THEN 'e' ELSE 'f' END) || substr(prev_hash, 2)",
    "hash": "(CASE substr(hash, 1, 1) WHEN 'f' THEN 'e' ELSE 'f' END) || substr(hash, 2)",
}


@pytest.fixture
async def audited(tmp_path: Path) -> AsyncIterator[tuple[Store, Path]]:
    database = tmp_path / "audit.db"
    store = build_store(StoreSettings(url=f"sqlite:///{database}"))
    await store.open()
    await store.migrate()
    try:
        for i in range(ROWS):
            await store.append_audit(AuditDraft("query.view", None, 1_700_000_000_000 + i, reason=f"查看 {i}",
                                                details={"party": f"p{i}"}))  # fmt: skip
        yield store, database
    finally:
        await store.close()


async def test_the_untouched_log_verifies(audited: tuple[Store, Path]) -> None:
    result = await verify(audited[0])
    assert result.ok and result.entries == ROWS


@pytest.mark.parametrize("column", sorted(CHANGES))
@pytest.mark.parametrize("seq", range(1, ROWS + 1))
async def test_changing_any_column_of_any_entry_is_found_at_that_entry(
    audited: tuple[Store, Path], column: str, seq: int
) -> None:
    store, database = audited
    with sqlite3.connect(database) as db:
        assert db.execute(f"UPDATE audit_log SET {column} = {CHANGES[column]} WHERE seq = ?", (seq,)).rowcount == 1
    result = await verify(store)
    assert not result.ok and result.bad_seq == seq, (column, seq, result)


async def test_a_deleted_entry_is_found(audited: tuple[Store, Path]) -> None:
    store, database = audited
    with sqlite3.connect(database) as db:
        db.execute("DELETE FROM audit_log WHERE seq = 3")
    result = await verify(store)
    assert not result.ok and result.bad_seq == 4


async def test_swapped_entries_are_found(audited: tuple[Store, Path]) -> None:
    store, database = audited
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_log SET seq = -2 WHERE seq = 2")
        db.execute("UPDATE audit_log SET seq = 2 WHERE seq = 5")
        db.execute("UPDATE audit_log SET seq = 5 WHERE seq = -2")
    result = await verify(store)
    assert not result.ok and result.bad_seq == 2
