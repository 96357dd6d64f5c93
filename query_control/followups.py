"""Follow-ups on an asset a query found: freeze (冻结), renew (续冻), unfreeze (解冻), deduct (扣划).

A judge on the case asks; a supervisor of the case's court or a court above approves (二次审批) — only then
is anything sent. The follow-up id is the agency's Idempotency-Key, and each send is recorded
(``sending``, attempt counted) before it goes out, so a retry or a restart after a crash re-sends the
same key and the agency replays its confirmation: a freeze is never applied twice. Status is tracked to
the agency's confirmation (``confirmed`` with its reference) or refusal. With several processes the send
runs under the lease ``followup:<id>`` and each write carries its grant's epoch, so a sender paused past its
lease is refused (FencedOut) before it sends again (docs/scale-out.md, "Fencing").
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from cluster.port import Coordinator, fence_of
from core.errors import Conflict, FencedOut, Forbidden, NotFound, ValidationFailed
from core.fencing import Fence
from core.ids import AgencyId, AssetId, FollowUpId
from event_bus.port import EventBus
from persistence.models import User
from persistence.port import Store
from persistence.query_models import FollowUp, FollowUpAction, FollowUpStatus
from query_control.adapters.port import FollowUpOrder, PermanentAgencyError, Subject, TransientAgencyError
from query_control.audit import AuditLog
from query_control.breaker import backoff_delay
from query_control.broker import now_ms
from query_control.case_access import require_followup_allowed, require_on_case
from query_control.gateway import AgencyGateway
from query_control.views import query_topic

log = logging.getLogger(__name__)

MAX_SEND_ATTEMPTS = 8
SEND_BACKOFF_CAP_SECONDS = 30.0
OPEN_STATUSES = (FollowUpStatus.APPROVED, FollowUpStatus.SENDING)


def followup_view(f: FollowUp) -> dict[str, Any]:
    return {
        "id": f.id,
        "asset_id": f.asset_id,
        "query_id": f.query_id,
        "case_id": f.case_id,
        "agency_id": f.agency_id,
        "action": f.action.value,
        "amount_cents": f.amount_cents,
        "reason": f.reason,
        "requested_by": f.requested_by,
        "requested_ms": f.requested_ms,
        "status": f.status.value,
        "attempts": f.attempts,
        "approved_by": f.approved_by,
        "decided_ms": f.decided_ms,
        "agency_ref": f.agency_ref,
        "error": f.error,
        "updated_ms": f.updated_ms,
    }


IN_FLIGHT = (FollowUpStatus.AWAITING_APPROVAL, FollowUpStatus.APPROVED, FollowUpStatus.SENDING)


@dataclass(frozen=True, slots=True)
class AssetHold:
    """What the confirmed follow-ups of one asset add up to (pure; ``asset_hold``)."""

    frozen: bool = False
    unfrozen: bool = False  # an unfreeze was confirmed after the last freeze
    frozen_cents: int | None = None  # the freeze's cap, or the asset's known value; None: not known
    deducted_cents: int = 0  # confirmed deductions since the last freeze


def asset_hold(asset_value_cents: int | None, history: Sequence[FollowUp]) -> AssetHold:
    """Fold the asset's confirmed follow-ups, in the order the agency confirmed them."""
    hold = AssetHold()
    for f in sorted((f for f in history if f.status is FollowUpStatus.CONFIRMED), key=lambda f: f.updated_ms):
        if f.action is FollowUpAction.FREEZE:
            caps = [c for c in (f.amount_cents, asset_value_cents) if c is not None]
            hold = AssetHold(frozen=True, frozen_cents=min(caps) if caps else None)
        elif f.action is FollowUpAction.UNFREEZE:
            hold = AssetHold(unfrozen=True)
        elif f.action is FollowUpAction.DEDUCT and hold.frozen:
            hold = replace(hold, deducted_cents=hold.deducted_cents + (f.amount_cents or 0))
    return hold


def check_followup(
    action: FollowUpAction, amount_cents: int | None, asset_value_cents: int | None, history: Sequence[FollowUp]
) -> None:
    """The per-asset rules a new follow-up request must keep, given every earlier follow-up of that asset
    (any status): Conflict (409) saying which one it breaks. Pure, called when the judge asks.

    - renew, unfreeze and deduct need a confirmed freeze; after a confirmed unfreeze only a new freeze;
    - a frozen asset is not frozen again (renew it), and one freeze or unfreeze at a time is in flight;
    - deductions (confirmed, and those awaiting approval or being sent) never exceed what is frozen: the
      freeze's amount, or the asset's value the agency reported, whichever is smaller; with neither known
      nothing may be deducted.
    """
    hold = asset_hold(asset_value_cents, history)
    in_flight = [f for f in history if f.status in IN_FLIGHT]
    if action is FollowUpAction.FREEZE:
        if hold.frozen:
            raise Conflict("this asset is frozen already; renew the freeze instead")
        if any(f.action is FollowUpAction.FREEZE for f in in_flight):
            raise Conflict("a freeze of this asset is already awaiting approval or being sent")
        return
    if hold.unfrozen:
        raise Conflict(f"this asset was unfrozen: nothing but a new freeze may follow, not {action.value}")
    if not hold.frozen:
        raise Conflict(f"{action.value} needs a confirmed freeze of this asset first")
    if action is FollowUpAction.UNFREEZE and any(f.action is FollowUpAction.UNFREEZE for f in in_flight):
        raise Conflict("an unfreeze of this asset is already awaiting approval or being sent")
    if action is FollowUpAction.DEDUCT:
        if hold.frozen_cents is None:
            raise Conflict("the frozen amount of this asset is not known; a deduction needs a freeze with an amount")
        pending = sum(f.amount_cents or 0 for f in in_flight if f.action is FollowUpAction.DEDUCT)
        left = hold.frozen_cents - hold.deducted_cents - pending
        if amount_cents is None or amount_cents > left:
            raise Conflict(
                f"amount_cents: {amount_cents} is more than remains frozen on this asset ({left} of"
                f" {hold.frozen_cents}; {hold.deducted_cents} deducted, {pending} awaiting approval or being sent)"
            )


def followup_lease(followup_id: FollowUpId) -> str:
    return f"followup:{followup_id}"


class FollowUps:
    def __init__(
        self,
        store: Store,
        bus: EventBus,
        gateway: AgencyGateway,
        audit: AuditLog,
        *,
        cluster: Coordinator | None = None,
    ) -> None:
        self._cluster = cluster  # with several processes, a follow-up is sent by the holder of its lease
        self._store = store
        self._bus = bus
        self._gateway = gateway
        self._audit = audit
        self._sends: dict[FollowUpId, asyncio.Task[None]] = {}
        self._random = random.Random()
        self._closed = False

    async def close(self) -> None:
        self._closed = True
        sends = list(self._sends.values())
        for task in sends:
            task.cancel()
        for task in sends:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._sends.clear()

    async def wait(self, followup_id: FollowUpId) -> None:
        task = self._sends.get(followup_id)
        if task is not None:
            await asyncio.shield(task)

    async def request(
        self,
        judge: User,
        *,
        asset_id: AssetId,
        action: FollowUpAction,
        amount_cents: int | None,
        reason: str,
        key: str | None = None,
    ) -> tuple[FollowUp, bool]:
        """Record the request (awaiting approval); with a key already used, the earlier one (and False)."""
        if key is not None:
            try:
                existing = await self._store.get_followup(FollowUpId(key))
            except NotFound:
                pass
            else:
                if existing.asset_id != asset_id or existing.action is not action or existing.requested_by != judge.id:
                    raise Conflict("this Idempotency-Key was used for another follow-up")
                if judge.id not in (await self._store.get_case(existing.case_id)).judge_ids:
                    raise Forbidden("you are not assigned to this case")  # taken off it: not even a replay
                return existing, False
        asset = await self._store.get_asset(asset_id)
        query = await self._store.get_query(asset.query_id)
        case = await self._store.get_case(query.case_id)
        require_on_case(case, judge.id)
        require_followup_allowed(case, action)
        agency = self._gateway.agency(asset.agency_id)
        if action not in agency.followups:
            raise ValidationFailed(f"{agency.name} does not accept {action.value}")
        if action is FollowUpAction.DEDUCT and amount_cents is None:
            raise ValidationFailed("amount_cents: required for a deduction")
        history = [f for f in await self._store.list_followups(query_id=query.id) if f.asset_id == asset.id]
        check_followup(action, amount_cents, asset.value_cents, history)
        at = now_ms()
        followup = FollowUp(
            FollowUpId(key or uuid.uuid4().hex),
            asset.id,
            query.id,
            case.id,
            AgencyId(agency.id),
            action,
            amount_cents,
            reason,
            judge.id,
            at,
            FollowUpStatus.AWAITING_APPROVAL,
            updated_ms=at,
        )
        # checked again with the asset's history in the store's transaction: requests sent at once are serialised
        stored = await self._store.add_followup(
            followup, check=lambda history: check_followup(action, amount_cents, asset.value_cents, history)
        )
        await self._audit.record(
            "followup.request",
            judge.id,
            reason=reason,
            case_id=case.id,
            query_id=query.id,
            details={
                "followup_id": stored.id,
                "asset_id": asset.id,
                "action": action.value,
                "amount_cents": amount_cents,
                "agency_id": agency.id,
            },
        )
        await self._publish(stored)
        return stored, True

    async def decide(self, supervisor: User, followup_id: FollowUpId, *, approve: bool, note: str) -> FollowUp:
        """二次审批: a supervisor of the case's court or a court above approves (then it is sent) or rejects."""
        followup = await self._store.get_followup(followup_id)
        case = await self._store.get_case(followup.case_id)
        if case.court_id not in await self._store.court_subtree(supervisor.court_id):
            raise Forbidden("this follow-up's case is outside your jurisdiction")
        if supervisor.id == followup.requested_by:
            raise Forbidden("the second approval must come from another person")
        if approve:
            require_followup_allowed(case, followup.action)  # the case may have closed since it was asked
        status = FollowUpStatus.APPROVED if approve else FollowUpStatus.REJECTED
        decided = await self._store.update_followup(
            followup_id,
            expect=[FollowUpStatus.AWAITING_APPROVAL],
            status=status,
            at_ms=now_ms(),
            approved_by=supervisor.id,
        )
        if decided is None:
            raise Conflict(f"follow-up is already {followup.status.value}")
        await self._audit.record(
            f"followup.{'approve' if approve else 'reject'}",
            supervisor.id,
            reason=note,
            case_id=case.id,
            query_id=followup.query_id,
            details={"followup_id": followup_id, "action": followup.action.value},
        )
        await self._publish(decided)
        if approve:
            if self._cluster is not None:
                try:
                    await self._cluster.claim(followup_lease(decided.id))
                except Exception as exc:  # Redis is away: send it anyway (the follow-up id is its key)
                    log.warning("follow-up %s: lease not taken (%s); sending it here", decided.id, exc)
            self._spawn(decided, fence_of(self._cluster, followup_lease(decided.id)))
        return decided

    async def resume_pending(self) -> int:
        """Send again (same key) every approved follow-up not yet confirmed or refused that no process is
        sending (this one stopped, or its process died); returns how many were taken up."""
        resumed = 0
        for followup in await self._store.list_followups(statuses=list(OPEN_STATUSES)):
            if followup.id in self._sends or self._closed:
                continue
            if self._cluster is not None and not await self._cluster.claim(followup_lease(followup.id)):
                continue  # a live process sends it
            log.info("follow-up %s: resuming (%s, %d attempts so far)", followup.id, followup.status, followup.attempts)
            self._spawn(followup, fence_of(self._cluster, followup_lease(followup.id)))
            resumed += 1
        return resumed

    def _spawn(self, followup: FollowUp, fence: Fence | None) -> None:
        if self._closed:
            return
        task = asyncio.create_task(self._send(followup, fence), name=f"followup:{followup.id}")
        self._sends[followup.id] = task
        task.add_done_callback(functools.partial(self._ended, followup.id))

    def _ended(self, followup_id: FollowUpId, task: asyncio.Task[None]) -> None:
        if self._sends.get(followup_id) is task:
            del self._sends[followup_id]
        if not task.cancelled() and task.exception() is not None:
            log.error("follow-up %s: send failed", followup_id, exc_info=task.exception())

    async def _send(self, followup: FollowUp, fence: Fence | None) -> None:
        """Send until settled, every write under ``fence``: a sender whose lease was taken over while it
        was paused stops at its next write (FencedOut), before sending again."""
        try:
            await self._send_until_settled(followup, fence)
        except FencedOut as exc:  # another process sends it now
            log.warning("follow-up %s: stopped: %s", followup.id, exc.message)
        finally:
            if self._cluster is not None:
                with contextlib.suppress(Exception):  # unreleased, it lapses
                    await self._cluster.release(followup_lease(followup.id))

    async def _send_until_settled(self, followup: FollowUp, fence: Fence | None) -> None:
        agency = self._gateway.agency(followup.agency_id)
        adapter = self._gateway.adapter(agency.kind)
        asset = await self._store.get_asset(followup.asset_id)
        case = await self._store.get_case(followup.case_id)
        party = next(p for p in case.parties if p.id == asset.party_id)
        order = FollowUpOrder(
            followup.action,
            asset.ref,
            followup.amount_cents,
            Subject(party.kind, party.name, party.identifier),
            case.case_number,
        )
        tries = 0
        while True:
            async with self._gateway.limits[agency.id]:
                sending = await self._store.update_followup(
                    followup.id,
                    expect=list(OPEN_STATUSES),
                    status=FollowUpStatus.SENDING,
                    at_ms=now_ms(),
                    count_attempt=True,
                    fence=fence,  # the claim before the send (see the broker's jobs)
                )
                if sending is None:
                    return  # already settled
                tries += 1
                try:
                    receipt = await adapter.followup(agency, order, followup.id)
                except TransientAgencyError as exc:
                    error = exc.reason
                except PermanentAgencyError as exc:
                    await self._settle(followup, FollowUpStatus.REFUSED, fence, error=exc.reason)
                    return
                else:
                    await self._settle(followup, FollowUpStatus.CONFIRMED, fence, agency_ref=receipt.agency_ref)
                    return
            if tries >= MAX_SEND_ATTEMPTS:
                why = f"{error} (gave up after {tries} attempts)"
                await self._settle(followup, FollowUpStatus.FAILED, fence, error=why)
                return
            delay = backoff_delay(tries, agency.backoff_ms / 1000, SEND_BACKOFF_CAP_SECONDS, self._random.random())
            log.info("follow-up %s at %s: %s; retry in %.2f s", followup.id, agency.id, error, delay)
            await asyncio.sleep(delay)

    async def _settle(
        self,
        followup: FollowUp,
        status: FollowUpStatus,
        fence: Fence | None,
        *,
        error: str | None = None,
        agency_ref: str | None = None,
    ) -> None:
        settled = await self._store.update_followup(
            followup.id,
            expect=[FollowUpStatus.SENDING],
            status=status,
            at_ms=now_ms(),
            agency_ref=agency_ref,
            error=error,
            fence=fence,
        )
        if settled is None:
            return
        await self._audit.record(
            f"followup.{status.value}",
            None,
            case_id=followup.case_id,
            query_id=followup.query_id,
            details={"followup_id": followup.id, "agency_ref": agency_ref, "error": error},
        )
        await self._publish(settled)

    async def _publish(self, followup: FollowUp) -> None:
        try:
            await self._bus.publish(
                query_topic(followup.query_id), {"event": "followup", "followup": followup_view(followup)}
            )
        except Exception:
            log.warning("follow-up %s: could not publish an update", followup.id, exc_info=True)
