"""The case-source store (``persistence.case_port``): system clients, cases by number, party proposals;
written once for both databases (``persistence.database``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from core.errors import NotFound
from core.ids import CaseId, CourtId, PartyId, ProposalId, SystemClientId, UserId
from persistence.database import Database, Row
from persistence.query_models import (
    Case,
    CaseStatus,
    PartyKind,
    PartyProposal,
    ProposalStatus,
    SystemClient,
)


def _client(r: Row) -> SystemClient:
    return SystemClient(SystemClientId(r["id"]), r["name"], CourtId(r["court_id"]), r["created_ms"], r["revoked_ms"])


def _proposal(r: Row) -> PartyProposal:
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


class CaseSourceSql:
    if TYPE_CHECKING:
        database: Database

        async def _cases(self, rows: list[Row]) -> list[Case]: ...

    async def find_case(self, case_number: str) -> Case | None:
        rows = await self.database.fetch("SELECT * FROM cases WHERE case_number = $1", case_number)
        return (await self._cases(list(rows)))[0] if rows else None

    async def update_case(self, case_id: CaseId, *, title: str, status: CaseStatus) -> None:
        await self.database.execute(
            "UPDATE cases SET title = $1, status = $2 WHERE id = $3", title, status.value, case_id
        )

    async def add_system_client(
        self, *, name: str, court_id: CourtId, secret_hash: str, created_ms: int
    ) -> SystemClient:
        row = await self.database.fetchrow(
            "INSERT INTO system_clients (name, court_id, secret_hash, created_ms) VALUES ($1, $2, $3, $4)"
            " RETURNING *",
            name, court_id, secret_hash, created_ms,
        )  # fmt: skip
        assert row is not None
        return _client(row)

    async def get_system_client(self, client_id: SystemClientId) -> SystemClient:
        row = await self.database.fetchrow("SELECT * FROM system_clients WHERE id = $1", client_id)
        if row is None:
            raise NotFound(f"system client {client_id} does not exist")
        return _client(row)

    async def find_system_client_by_name(self, name: str) -> SystemClient | None:
        row = await self.database.fetchrow("SELECT * FROM system_clients WHERE name = $1", name)
        return None if row is None else _client(row)

    async def find_system_client_by_secret(self, secret_hash: str) -> SystemClient | None:
        row = await self.database.fetchrow("SELECT * FROM system_clients WHERE secret_hash = $1", secret_hash)
        return None if row is None else _client(row)

    async def list_system_clients(self) -> list[SystemClient]:
        return [_client(r) for r in await self.database.fetch("SELECT * FROM system_clients ORDER BY id")]

    async def revoke_system_client(self, client_id: SystemClientId, at_ms: int) -> SystemClient:
        await self.database.execute(
            "UPDATE system_clients SET revoked_ms = COALESCE(revoked_ms, $1) WHERE id = $2", at_ms, client_id
        )
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
        row = await self.database.fetchrow(
            "INSERT INTO party_proposals (case_id, kind, name, identifier, reason, proposed_by, proposed_ms,"
            " status) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
            case_id, kind.value, name, identifier, reason, proposed_by, proposed_ms,
            ProposalStatus.AWAITING_APPROVAL.value,
        )  # fmt: skip
        assert row is not None
        return _proposal(row)

    async def get_party_proposal(self, proposal_id: ProposalId) -> PartyProposal:
        row = await self.database.fetchrow("SELECT * FROM party_proposals WHERE id = $1", proposal_id)
        if row is None:
            raise NotFound(f"party proposal {proposal_id} does not exist")
        return _proposal(row)

    async def list_party_proposals(
        self, *, case_ids: Sequence[CaseId] | None = None, statuses: Sequence[ProposalStatus] | None = None
    ) -> list[PartyProposal]:
        clauses: list[str] = []
        args: list[Any] = []
        if case_ids is not None:
            args.append(list(case_ids))
            clauses.append(f"case_id = ANY(${len(args)})")
        if statuses is not None:
            args.append([s.value for s in statuses])
            clauses.append(f"status = ANY(${len(args)})")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self.database.fetch(f"SELECT * FROM party_proposals {where} ORDER BY id", *args)
        return [_proposal(r) for r in rows]

    async def decide_party_proposal(
        self, proposal_id: ProposalId, *, approve: bool, decided_by: UserId, at_ms: int, note: str
    ) -> PartyProposal | None:
        async with self.database.transaction() as conn:
            row = await conn.fetchrow(
                "SELECT * FROM party_proposals WHERE id = $1 AND status = $2 FOR UPDATE",
                proposal_id, ProposalStatus.AWAITING_APPROVAL.value,
            )  # fmt: skip
            if row is None:
                return None
            party_id: int | None = None
            if approve:
                await conn.execute(
                    "INSERT INTO case_parties (case_id, kind, name, identifier) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (case_id, identifier) DO NOTHING",
                    row["case_id"], row["kind"], row["name"], row["identifier"],
                )  # fmt: skip
                party_id = await conn.fetchval(
                    "SELECT id FROM case_parties WHERE case_id = $1 AND identifier = $2",
                    row["case_id"], row["identifier"],
                )  # fmt: skip
            status = ProposalStatus.APPROVED if approve else ProposalStatus.REJECTED
            updated = await conn.fetchrow(
                "UPDATE party_proposals SET status = $1, decided_by = $2, decided_ms = $3, note = $4,"
                " party_id = $5 WHERE id = $6 RETURNING *",
                status.value, decided_by, at_ms, note, party_id, proposal_id,
            )  # fmt: skip
        assert updated is not None
        return _proposal(updated)
