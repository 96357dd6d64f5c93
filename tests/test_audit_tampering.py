"""Tampering with any row of the audit log is found by ``audit verify``: every column of every entry changed
in the database behind the app's back, an entry deleted, two entries swapped. What the chain alone cannot see
(its tail cut off, an entry edited and every later hash recomputed) is found against signed checkpoints kept by a
witness; a forged checkpoint and a row whose details are not JSON are reported, with the entry's seq."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sqlite3
import stat
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from command_center.cli import main
from config.settings import StoreSettings
from core.checkpoint import sign
from core.hashchain import GENESIS, chain_hash
from persistence.factory import build_store
from persistence.port import Store
from persistence.query_models import AuditDraft, audit_content
from query_control.audit import AuditLog, VerifyResult, verify
from tests.conftest import POSTGRES_DSN

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


# --- signed checkpoints and witnesses: what the chain alone cannot see -------------------------------------
# A centre as its administrator runs it: the CLI (``main``) on a real SQLite file or PostgreSQL schema, a witness
# file beside it (on another volume in production), and someone with write access to the database behind it.

WITNESS_COURT = "HLJ01"


class Centre:
    def __init__(self, kind: str, tmp_path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.kind, self.url, self.capsys = kind, url, capsys
        self.database = tmp_path / "centre.db"
        self.data_dir = tmp_path / "data"
        self.witness = tmp_path / "witness-volume" / "audit-witness.jsonl"
        self.witness.parent.mkdir()
        self.recorded = 0

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(["audit", *args])
        out, err = self.capsys.readouterr()
        return code, out, err

    def record(self, count: int) -> None:
        async def append() -> None:
            store = build_store(StoreSettings(url=self.url))
            await store.open()
            await store.migrate()
            try:
                for _ in range(count):
                    self.recorded += 1
                    await AuditLog(store).record("query.view", None, reason=f"查看 {self.recorded}",
                                                 details={"party": f"p{self.recorded}"})  # fmt: skip
            finally:
                await store.close()

        asyncio.run(append())

    def sql(self, statement: str, *args: Any) -> list[tuple[Any, ...]]:
        """Behind the app's back, as whoever can write the database; SQL in SQLite's ``?`` style."""
        if self.kind == "sqlite":
            with sqlite3.connect(self.database) as db:
                return list(db.execute(statement, args).fetchall())

        async def run() -> list[tuple[Any, ...]]:
            conn = await asyncpg.connect(self.url)
            try:
                numbered = statement
                for i in range(statement.count("?")):
                    numbered = numbered.replace("?", f"${i + 1}", 1)
                if numbered.lstrip().upper().startswith("SELECT"):
                    return [tuple(r) for r in await conn.fetch(numbered, *args)]
                await conn.execute(numbered, *args)
                return []
            finally:
                await conn.close()

        return asyncio.run(run())

    def rewrite_from(self, seq: int, reason: str) -> None:
        """Edit entry ``seq`` and recompute every hash from it on, as a careful forger would."""
        self.sql("UPDATE audit_log SET reason = ? WHERE seq = ?", reason, seq)
        rows = self.sql("SELECT seq, action, actor_id, at_ms, reason, case_id, query_id, details FROM audit_log"
                        " ORDER BY seq")  # fmt: skip
        prev = GENESIS
        for s, action, actor, at_ms, why, case, query, details in rows:
            digest = chain_hash(prev, audit_content(s, action, actor, at_ms, why, case, query, json.loads(details)))
            self.sql("UPDATE audit_log SET prev_hash = ?, hash = ? WHERE seq = ?", prev, digest, s)
            prev = digest


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def centre(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[Centre]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "postgres":
        asyncio.run(_pg(f"CREATE SCHEMA {schema}"))
        url = f"{POSTGRES_DSN}?search_path={schema}"
    else:
        url = f"sqlite:///{tmp_path / 'centre.db'}"
    made = Centre(request.param, tmp_path, url, capsys)
    for name in [k for k in os.environ if k.startswith("CC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CC_STORE__URL", url)
    monkeypatch.setenv("CC_DATA_DIR", str(made.data_dir))
    monkeypatch.setenv("CC_AUDIT__COURT_ID", WITNESS_COURT)
    monkeypatch.setenv("CC_AUDIT__WITNESS_FILE", str(made.witness))
    try:
        yield made
    finally:
        if request.param == "postgres":
            asyncio.run(_pg(f"DROP SCHEMA {schema} CASCADE"))


async def _pg(statement: str) -> None:
    conn = await asyncpg.connect(POSTGRES_DSN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def test_the_signing_key_is_private_and_its_public_key_printable(centre: Centre) -> None:
    code, out, err = centre.cli("key")
    assert code == 0 and re.fullmatch(r"[0-9a-f]{64}\n", out), (out, err)
    key_file = centre.data_dir / "audit" / "signing-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert centre.cli("key")[1] == out  # created once, then the same key
    private = key_file.read_text()
    centre.record(2)
    for args in (("checkpoint",), ("verify",)):
        _, printed, logged = centre.cli(*args)
        assert "PRIVATE KEY" not in printed + logged and private.splitlines()[1] not in printed + logged


def test_a_deleted_tail_is_caught_by_the_witness_file(centre: Centre) -> None:
    centre.record(6)
    code, out, _ = centre.cli("checkpoint")
    assert code == 0 and "signed at entry 6" in out
    centre.record(2)
    assert centre.cli("verify")[0] == 0
    # Cut the last four entries, and the database's own checkpoint of them: the chain left is whole.
    centre.sql("DELETE FROM audit_log WHERE seq > 4")
    centre.sql("DELETE FROM audit_checkpoints")
    assert asyncio.run(_chain_alone(centre.url)).ok  # what `audit verify` saw before checkpoints
    code, _, err = centre.cli("verify")
    assert code == 1
    assert "chain ends at entry 4" in err and "entries 5 to 6 were deleted" in err, err
    assert f"witness file {centre.witness}" in err
    assert "first entry where the chain and its witnesses part: 5" in err


async def _chain_alone(url: str) -> VerifyResult:
    store = build_store(StoreSettings(url=url))
    await store.open()
    try:
        return await verify(store)
    finally:
        await store.close()


def test_an_edit_with_recomputed_hashes_is_caught_at_the_next_checkpoint(centre: Centre) -> None:
    centre.record(3)
    assert centre.cli("checkpoint")[0] == 0  # entry 3
    centre.record(3)
    assert centre.cli("checkpoint")[0] == 0  # entry 6
    centre.record(2)
    centre.rewrite_from(5, "查看 (改)")
    assert asyncio.run(_chain_alone(centre.url)).ok
    # The signer refuses to put its name to the rewritten chain ...
    code, _, err = centre.cli("checkpoint")
    assert code == 1 and "entry 6 no longer has the hash this centre signed" in err, err
    # ... and even a forger holding the key, who deletes the database's checkpoints and re-signs, is caught by
    # the witness, at the first checkpoint after the edit.
    centre.sql("DELETE FROM audit_checkpoints")
    assert centre.cli("checkpoint")[0] == 0
    code, _, err = centre.cli("verify")
    assert code == 1
    assert "TAMPERED at entry 6" in err and "rewritten between entries 4 and 6" in err, err
    assert "first entry where the chain and its witnesses part: 6" in err


def test_a_forged_checkpoint_is_caught(centre: Centre, tmp_path: Path) -> None:
    centre.record(4)
    assert centre.cli("checkpoint")[0] == 0
    # A checkpoint edited in the database (its head no longer what was signed) ...
    centre.sql("UPDATE audit_checkpoints SET head = ? WHERE seq = 4", "ab" * 32)
    code, _, err = centre.cli("verify")
    assert code == 1 and "database: FORGED checkpoint at seq 4" in err, err
    centre.sql("DELETE FROM audit_checkpoints")
    assert centre.cli("verify")[0] == 0
    # ... and one signed by another key, in a witness file handed to verify, are both refused.
    other = sign(Ed25519PrivateKey.generate(), court=WITNESS_COURT, seq=9, head="cd" * 32, at_ms=1)
    forged = tmp_path / "forged.jsonl"
    forged.write_text(other.to_line() + "not json\n")
    code, _, err = centre.cli("verify", "--witness", str(forged))
    assert code == 1
    assert f"witness file {forged}: FORGED checkpoint at seq 9" in err
    assert f"witness file {forged}, line 2: not valid JSON" in err


def test_a_row_with_corrupt_details_is_reported_with_its_seq(centre: Centre) -> None:
    centre.record(5)
    centre.sql("UPDATE audit_log SET details = ? WHERE seq = 4", '{"party": "p4"')
    code, _, err = centre.cli("verify")
    assert code == 1
    assert "TAMPERED at entry 4: the stored row is damaged: details are not valid JSON" in err, err
    centre.sql("UPDATE audit_log SET details = ? WHERE seq = 4", "[1, 2]")
    code, _, err = centre.cli("verify")
    assert code == 1 and "at entry 4: the stored row is damaged: details are not a JSON object" in err, err


def test_a_missing_witness_file_counts_once_something_was_signed(centre: Centre) -> None:
    centre.record(2)
    code, _, err = centre.cli("verify")
    assert code == 0 and "does not exist yet" in err, err
    assert centre.cli("checkpoint")[0] == 0
    centre.witness.rename(centre.witness.with_suffix(".gone"))
    code, _, err = centre.cli("verify")
    assert code == 1 and f"witness file {centre.witness}: cannot be read" in err, err


def test_a_process_with_another_key_does_not_sign(centre: Centre, monkeypatch: pytest.MonkeyPatch) -> None:
    centre.record(2)
    assert centre.cli("checkpoint")[0] == 0
    centre.record(1)
    monkeypatch.setenv("CC_DATA_DIR", str(centre.data_dir.with_name("another-process")))  # its own data dir
    code, _, err = centre.cli("checkpoint")
    assert code == 1 and "every process of a centre must share its data dir's audit key" in err, err
    monkeypatch.setenv("CC_DATA_DIR", str(centre.data_dir))
    code, out, _ = centre.cli("checkpoint")
    assert code == 0 and "signed at entry 3" in out
