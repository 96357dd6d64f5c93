"""The storage of the case source: finding and updating cases by number, the case-management system's
credentials, and parties proposed by hand awaiting a supervisor's approval.

Part of the ``Store`` port. A proposal is decided through a compare-and-set, so two supervisors deciding
at once cannot both win, and an approved party is added in the same transaction as the decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from core.ids import CaseId, CourtId, ProposalId, SystemClientId, UserId
from persistence.query_models import Case, CaseStatus, PartyKind, PartyProposal, ProposalStatus, SystemClient


class CaseSourceStore(Protocol):
    async def find_case(self, case_number: str) -> Case | None: ...

    async def update_case(self, case_id: CaseId, *, title: str, status: CaseStatus) -> None: ...

    # system clients ------------------------------------------------------------------------------------
    async def add_system_client(
        self, *, name: str, court_id: CourtId, secret_hash: str, created_ms: int
    ) -> SystemClient:
        """Conflict when the name is taken."""

    async def get_system_client(self, client_id: SystemClientId) -> SystemClient: ...

    async def find_system_client_by_name(self, name: str) -> SystemClient | None: ...

    async def find_system_client_by_secret(self, secret_hash: str) -> SystemClient | None: ...

    async def list_system_clients(self) -> list[SystemClient]:
        """Oldest first."""

    async def revoke_system_client(self, client_id: SystemClientId, at_ms: int) -> SystemClient:
        """Revoke (idempotent: the first revocation time is kept)."""

    # party proposals -----------------------------------------------------------------------------------
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
    ) -> PartyProposal: ...

    async def get_party_proposal(self, proposal_id: ProposalId) -> PartyProposal: ...

    async def list_party_proposals(
        self, *, case_ids: Sequence[CaseId] | None = None, statuses: Sequence[ProposalStatus] | None = None
    ) -> list[PartyProposal]:
        """Oldest first."""

    async def decide_party_proposal(
        self, proposal_id: ProposalId, *, approve: bool, decided_by: UserId, at_ms: int, note: str
    ) -> PartyProposal | None:
        """Approve (the party joins the case, or is linked when already on it) or reject a proposal still
        awaiting approval, in one transaction; None (and no change) when it was already decided."""
