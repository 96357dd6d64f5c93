"""SQLite side of the case-source store (see ``persistence.case_port``); mixed into ``SqliteStore``."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from core.errors import NotFound
from core.ids import CaseId, CourtId, PartyId, ProposalId, SystemClientId, UserId
from persistence.query_models import (
    Case,
    CaseStatus,
    PartyKind,
    PartyProposal,
    ProposalStatus,
    SystemClient,
)


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values)) or "NULL"


def _client(r: aiosqlite.Row) -> SystemClient:
    return SystemClient(SystemClientId(r["id"]), r["name"], CourtId(r["court_id"]), r["created_ms"], r["revoked_ms"])


def _proposal(r: aiosqlite.Row) -> PartyProposal:
    return PartyProposal(
        id=ProposalId(r["id"]),
        case_id=CaseId(r["case_id"]),
        kind=PartyKind(r["kind"]),
        name=r["name"],
        identifier=r["identifier"],
        reason=r["reason"],
        proposed_by=UserId(r["proposed_by"]),
        proposed_ms=r["proposed_ms"],
        status=ProposalStatus(r["status"]),
        decided_by=None if r["decided_by"] is None else UserId(r["decided_by"]),
        decided_ms=r["decided_ms"],
        note=r["note"],
        party_id=None if r["party_id"] is None else PartyId(r["party_id"]),
    )


class SqliteCaseSource:
    if TYPE_CHECKING:

        def _tx(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

        async def _q(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]: ...

        async def _cases(self, rows: list[aiosqlite.Row]) -> list[Case]: ...

    async def find_case(self, case_number: str) -> Case | None:
        rows = await self._q("SELECT * FROM cases WHERE case_number = ?", (case_number,))
        return (await self._cases(rows))[0] if rows else None

    async def update_case(self, case_id: CaseId, *, title: str, status: CaseStatus) -> None:
        await self._q("UPDATE cases SET title = ?, status = ? WHERE id = ?", (title, status.value, case_id))

    async def add_system_client(
        self, *, name: str, court_id: CourtId, secret_hash: str, created_ms: int
    ) -> SystemClient:
        await self._q(
            "INSERT INTO system_clients (name, court_id, secret_hash, created_ms) VALUES (?, ?, ?, ?)",
            (name, court_id, secret_hash, created_ms),
        )
        found = await self.find_system_client_by_name(name)
        assert found is not None
        return found

    async def get_system_client(self, client_id: SystemClientId) -> SystemClient:
        rows = await self._q("SELECT * FROM system_clients WHERE id = ?", (client_id,))
        if not rows:
            raise NotFound(f"system client {client_id} does not exist")
        return _client(rows[0])

    async def find_system_client_by_name(self, name: str) -> SystemClient | None:
        rows = await self._q("SELECT * FROM system_clients WHERE name = ?", (name,))
        return _client(rows[0]) if rows else None

    async def find_system_client_by_secret(self, secret_hash: str) -> SystemClient | None:
        rows = await self._q("SELECT * FROM system_clients WHERE secret_hash = ?", (secret_hash,))
        return _client(rows[0]) if rows else None

    async def list_system_clients(self) -> list[SystemClient]:
        return [_client(r) for r in await self._q("SELECT * FROM system_clients ORDER BY id")]

    async def revoke_system_client(self, client_id: SystemClientId, at_ms: int) -> SystemClient:
        await self._q("UPDATE system_clients SET revoked_ms = COALESCE(revoked_ms, ?) WHERE id = ?", (at_ms, client_id))
        return await self.get_system_client(client_id)

    async def add_party_proposal(
        self,
        *,
        case_id: CaseId,
        kind: PartyKind,
        name: str,
        identifier: str,
        reason: str,
        proposed_by: UserId,
        proposed_ms: int,
    ) -> PartyProposal:
        async with self._tx() as db:
            cursor = await db.execute(
                "INSERT INTO party_proposals (case_id, kind, name, identifier, reason, proposed_by, proposed_ms,"
                " status) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (case_id, kind.value, name, identifier, reason, proposed_by, proposed_ms,
                 ProposalStatus.AWAITING_APPROVAL.value),
            )  # fmt: skip
            proposal_id = cursor.lastrowid
            await cursor.close()
        assert proposal_id is not None
        return await self.get_party_proposal(ProposalId(proposal_id))

    async def get_party_proposal(self, proposal_id: ProposalId) -> PartyProposal:
        rows = await self._q("SELECT * FROM party_proposals WHERE id = ?", (proposal_id,))
        if not rows:
            raise NotFound(f"party proposal {proposal_id} does not exist")
        return _proposal(rows[0])

    async def list_party_proposals(
        self, *, case_ids: Sequence[CaseId] | None = None, statuses: Sequence[ProposalStatus] | None = None
    ) -> list[PartyProposal]:
        clauses: list[str] = []
        args: list[Any] = []
        if case_ids is not None:
            clauses.append(f"case_id IN ({_marks(case_ids)})")
            args.extend(case_ids)
        if statuses is not None:
            clauses.append(f"status IN ({_marks(statuses)})")
            args.extend(s.value for s in statuses)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        return [_proposal(r) for r in await self._q(f"SELECT * FROM party_proposals {where} ORDER BY id", args)]

    async def decide_party_proposal(
        self, proposal_id: ProposalId, *, approve: bool, decided_by: UserId, at_ms: int, note: str
    ) -> PartyProposal | None:
        async with self._tx() as db:
            cursor = await db.execute(
                "SELECT * FROM party_proposals WHERE id = ? AND status = ?",
                (proposal_id, ProposalStatus.AWAITING_APPROVAL.value),
            )
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return None
            party_id: int | None = None
            if approve:
                await db.execute(
                    "INSERT INTO case_parties (case_id, kind, name, identifier) VALUES (?, ?, ?, ?)"
                    " ON CONFLICT (case_id, identifier) DO NOTHING",
                    (row["case_id"], row["kind"], row["name"], row["identifier"]),
                )
                cursor = await db.execute(
                    "SELECT id FROM case_parties WHERE case_id = ? AND identifier = ?",
                    (row["case_id"], row["identifier"]),
                )
                found = await cursor.fetchone()
                await cursor.close()
                assert found is not None
                party_id = found[0]
            status = ProposalStatus.APPROVED if approve else ProposalStatus.REJECTED
            await db.execute(
                "UPDATE party_proposals SET status = ?, decided_by = ?, decided_ms = ?, note = ?, party_id = ?"
                " WHERE id = ?",
                (status.value, decided_by, at_ms, note, party_id, proposal_id),
            )
        return await self.get_party_proposal(proposal_id)
