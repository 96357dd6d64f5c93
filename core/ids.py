"""Distinct id types, so a unit id is never passed where a court id is expected."""

from typing import NewType

CourtId = NewType("CourtId", str)
UserId = NewType("UserId", int)
UnitId = NewType("UnitId", str)
CaseId = NewType("CaseId", int)
PartyId = NewType("PartyId", int)
QueryId = NewType("QueryId", str)
JobId = NewType("JobId", str)  # also the Idempotency-Key the agency sees
AssetId = NewType("AssetId", int)
FollowUpId = NewType("FollowUpId", str)  # also the follow-up's Idempotency-Key
AgencyId = NewType("AgencyId", str)
SystemClientId = NewType("SystemClientId", int)  # a case-management system's credential
ProposalId = NewType("ProposalId", int)  # a proposed party awaiting a supervisor's approval
