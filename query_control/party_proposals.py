"""Parties added to an existing case by hand: proposed, then approved by a second person (二次审批).

The case-management system adds parties directly (it is the source of truth). By hand, the judge on the
case or a supervisor proposes a party with a reason; a supervisor of the case's court or a court above,
not the proposer, approves or rejects it with a reason. Only an approved party is on the case, so only
an approved party can be queried. The proposal and the decision are audited.
"""

from __future__ import annotations

from core.errors import Conflict, Forbidden
from core.ids import ProposalId
from persistence.models import User
from persistence.port import Store
from persistence.query_models import Case, PartyKind, PartyProposal, ProposalStatus
from query_control.audit import AuditLog
from query_control.broker import now_ms


class PartyProposals:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self._store = store
        self._audit = audit

    async def propose(
        self, proposer: User, case: Case, kind: PartyKind, name: str, identifier: str, reason: str
    ) -> PartyProposal:
        """``case`` is one the proposer may reach (checked by the caller); ``identifier`` is canonical."""
        if any(p.identifier == identifier for p in case.parties):
            raise Conflict(f"{identifier} is already a party of case {case.case_number}")
        waiting = await self._store.list_party_proposals(
            case_ids=[case.id], statuses=[ProposalStatus.AWAITING_APPROVAL]
        )
        if any(p.identifier == identifier for p in waiting):
            raise Conflict(f"{identifier} is already proposed for case {case.case_number} and awaits approval")
        proposal = await self._store.add_party_proposal(
            case_id=case.id,
            kind=kind,
            name=name,
            identifier=identifier,
            reason=reason,
            proposed_by=proposer.id,
            proposed_ms=now_ms(),
        )
        await self._audit.record(
            "party.propose",
            proposer.id,
            reason=reason,
            case_id=case.id,
            details={"proposal_id": proposal.id, "kind": kind.value, "identifier": identifier},
        )
        return proposal

    async def decide(self, supervisor: User, proposal_id: ProposalId, *, approve: bool, reason: str) -> PartyProposal:
        proposal = await self._store.get_party_proposal(proposal_id)
        case = await self._store.get_case(proposal.case_id)
        if case.court_id not in await self._store.court_subtree(supervisor.court_id):
            raise Forbidden("this case is outside your jurisdiction")  # not even its number
        if supervisor.id == proposal.proposed_by:
            raise Forbidden("the second approval must come from another person than the proposer")
        decided = await self._store.decide_party_proposal(
            proposal_id, approve=approve, decided_by=supervisor.id, at_ms=now_ms(), note=reason
        )
        if decided is None:
            raise Conflict(f"party proposal {proposal_id} is already {proposal.status.value}")
        await self._audit.record(
            f"party.{'approve' if approve else 'reject'}",
            supervisor.id,
            reason=reason,
            case_id=case.id,
            details={"proposal_id": proposal_id, "party_id": decided.party_id, "identifier": proposal.identifier},
        )
        return decided
