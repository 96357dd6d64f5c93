"""The agency port: what the broker and the follow-up dispatcher ask of any agency adapter.

Adapters raise ``TransientAgencyError`` for what a retry may fix (connection refused or reset, timeout,
429, 5xx) and ``PermanentAgencyError`` for what it will not (refused credentials, a malformed reply, a
refusal of the request itself). Each request carries the job's or follow-up's id as ``Idempotency-Key``, so
a retry or a resumed call is recognised by the agency and never acted on twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from persistence.query_models import AssetDraft, FollowUpAction, PartyKind
from query_control.agencies import AgencyConfig, AgencyKind


class AgencyError(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientAgencyError(AgencyError):
    """Worth retrying (the agency did not act on the request, or may answer a replay)."""


class AgencyThrottled(TransientAgencyError):
    """429: the agency is alive but busy (often still working on requests we gave up on); retried, but not
    counted against its circuit breaker."""


class PermanentAgencyError(AgencyError):
    """Not worth retrying: the answer would be the same."""


class MalformedReply(PermanentAgencyError):
    """The agency answered something that is not its protocol."""


@dataclass(frozen=True, slots=True)
class Subject:
    kind: PartyKind
    name: str
    identifier: str


@dataclass(frozen=True, slots=True)
class FollowUpOrder:
    action: FollowUpAction
    asset_ref: str
    amount_cents: int | None
    subject: Subject
    case_number: str


@dataclass(frozen=True, slots=True)
class FollowUpReceipt:
    agency_ref: str
    status: str  # confirmed
    replayed: bool


class AgencyAdapter(Protocol):
    kind: AgencyKind

    async def query(self, agency: AgencyConfig, subject: Subject, key: str) -> list[AssetDraft]:
        """The party's assets at this agency (empty: none)."""

    async def followup(self, agency: AgencyConfig, order: FollowUpOrder, key: str) -> FollowUpReceipt:
        """Send a freeze / renew / unfreeze / deduct; the receipt once the agency confirms it."""
