"""Follow-ups (freeze, renew, unfreeze, deduct) with the second approval, against the real agency simulator:
nothing is sent before a supervisor approves, and a freeze retried after a crash is applied once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.errors import Conflict
from core.ids import AgencyId, AssetId, CaseId, FollowUpId, QueryId, UserId
from persistence.query_models import FollowUp, FollowUpAction, FollowUpStatus
from query_control.followups import asset_hold, check_followup
from tests.conftest import World
from tests.query_support import (
    PERSON,
    open_case,
    query_app,
    running_fleet,
    submit,
    test_agencies,
    wait_complete,
)

ROOT = Path(__file__).resolve().parent.parent


async def _an_asset(world: World, agency_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A case, a completed query of the person at these agencies, and one deposit it found."""
    case = await open_case(world)
    query = await submit(world, case["id"], agency_ids=agency_ids, party_ids=[case["parties"][0]["id"]])
    done = await wait_complete(world, query["id"])
    assets = [a for j in done["jobs"] for a in j["assets"]]
    assert assets, "the simulator's data gives this person assets at these agencies"
    return case, done, assets[0]


async def _request(
    world: World, asset: dict[str, Any], action: str, key: str | None = None, who: str = "judge", **extra: Any
) -> Any:
    headers = world.auth(who) | ({"Idempotency-Key": key} if key else {})
    return await world.client.post(
        "/api/followups",
        json={"asset_id": asset["id"], "action": action, "reason": "保全申请执行人权益", **extra},
        headers=headers,
    )


async def _decide(world: World, followup_id: str, verdict: str = "approve", who: str = "supervisor") -> Any:
    return await world.client.post(
        f"/api/followups/{followup_id}/{verdict}", json={"note": "同意"}, headers=world.auth(who)
    )


async def _until(world: World, followup_id: str, status: str, within: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            response = await world.client.get("/api/followups", headers=world.auth("judge"))
            found = {f["id"]: f for f in (await response.json())["followups"]}
            if found[followup_id]["status"] == status:
                result: dict[str, Any] = found[followup_id]
                return result
            await asyncio.sleep(0.05)


def _bank_with_assets() -> str:
    from simulators.agencies.data import holdings

    return next(a.id for a in test_agencies() if a.kind.value == "bank" and holdings(a, PERSON[1]))


async def test_a_freeze_waits_for_a_second_approval_and_is_tracked_to_confirmation(tmp_path: Path) -> None:
    bank = _bank_with_assets()
    async with running_fleet(test_agencies()) as (fleet, pointed), query_app(tmp_path, pointed) as world:
        _, _, asset = await _an_asset(world, [bank])
        first = await _request(world, asset, "freeze", key="freeze-0001")
        assert first.status == 201, await first.text()
        followup = await first.json()
        assert followup["status"] == "awaiting_approval"
        again = await _request(world, asset, "freeze", key="freeze-0001")  # a retried request: the same one
        assert again.status == 200 and (await again.json())["id"] == followup["id"]
        await asyncio.sleep(0.2)
        assert fleet[bank].stats.followups_applied == []  # nothing is sent before approval

        assert (await _decide(world, followup["id"], who="far_supervisor")).status == 403  # another city's court
        approved = await _decide(world, followup["id"])
        assert approved.status == 200 and (await approved.json())["status"] in ("approved", "sending", "confirmed")
        assert (await _decide(world, followup["id"])).status == 409  # approved once only
        confirmed = await _until(world, followup["id"], "confirmed")
        assert confirmed["agency_ref"].startswith(bank.upper()) and confirmed["approved_by"] is not None
        assert fleet[bank].stats.followups_applied == [(followup["id"], "freeze", asset["ref"])]
        assert fleet[bank].asset_state(asset["ref"]).frozen

        unfrozen_first = await _request(world, asset, "unfreeze")
        unfreeze = await unfrozen_first.json()
        rejected = await _decide(world, unfreeze["id"], "reject")
        assert (await rejected.json())["status"] == "rejected"
        await asyncio.sleep(0.2)
        assert fleet[bank].asset_state(asset["ref"]).frozen  # a rejected follow-up is never sent

        deduct = await (await _request(world, asset, "deduct", amount_cents=asset["value_cents"] + 1)).json()
        assert deduct["error"]["code"] == "conflict"  # more than is frozen (the asset's whole value)
        actions = [e.action for e in await world.store.audit_entries()]
        for action in ("followup.request", "followup.approve", "followup.confirmed", "followup.reject"):
            assert action in actions


async def test_renew_unfreeze_and_deduct_need_a_confirmed_freeze(tmp_path: Path) -> None:
    bank = _bank_with_assets()
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        _, _, asset = await _an_asset(world, [bank])
        for action in ("renew", "unfreeze"):
            response = await _request(world, asset, action)
            assert response.status == 409 and "confirmed freeze" in (await response.json())["error"]["message"]
        refused = await _request(world, asset, "freeze", who="judge2")
        assert refused.status == 403


async def test_a_freeze_retried_after_a_crash_is_applied_once(tmp_path: Path) -> None:
    bank = _bank_with_assets()
    agencies = test_agencies()
    async with running_fleet(agencies) as (fleet, pointed):
        async with query_app(tmp_path, pointed) as first:
            tokens = first.tokens
            _, _, asset = await _an_asset(first, [bank])
            followup = await (await _request(first, asset, "freeze", key="freeze-crash-1")).json()
            fleet[bank].profile = fleet[bank].profile.model_copy(update={"latency_median_ms": 800, "latency_sigma": 0})
            await _decide(first, followup["id"])
            await asyncio.sleep(0.3)  # the freeze is at the bank; the server dies before the confirmation
        assert fleet[bank].stats.new_requests[followup["id"]] == 1
        sent = followup["id"]  # the agency's Idempotency-Key
        stored = await _status_in_file(tmp_path, sent)
        assert stored == "sending"
        async with query_app(tmp_path, pointed, tokens=tokens) as second:
            confirmed = await _until(second, sent, "confirmed")
            assert confirmed["attempts"] == 2  # sent again after the restart, with the same key
        stats = fleet[bank].stats
        assert stats.new_requests[sent] == 1 and stats.replays[sent] == 1
        assert [a for a in stats.followups_applied if a[0] == sent] == [(sent, "freeze", asset["ref"])]


async def _status_in_file(tmp_path: Path, followup_id: str) -> str:
    import aiosqlite

    async with aiosqlite.connect(tmp_path / "queries.db") as db:
        cursor = await db.execute("SELECT status FROM followups WHERE id = ?", (followup_id,))
        row = await cursor.fetchone()
    assert row is not None
    return str(row[0])


def test_audit_verify_command_detects_tampering(tmp_path: Path) -> None:
    import asyncio as aio
    import sqlite3

    from config.settings import StoreSettings
    from persistence.factory import build_store
    from persistence.query_models import AuditDraft

    db = tmp_path / "audit.db"

    async def fill() -> None:
        store = build_store(StoreSettings(url=f"sqlite:///{db}"))
        await store.open()
        await store.migrate()
        for i in range(5):
            await store.append_audit(AuditDraft("query.view", None, i, reason="查看"))
        await store.close()

    aio.run(fill())
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")} | {
        "CC_STORE__URL": f"sqlite:///{db}",
        "CC_DATA_DIR": str(tmp_path),
    }

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "command_center", "audit", "verify"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    ok = run()
    assert ok.returncode == 0 and "intact: 5 entries" in ok.stdout, ok.stderr
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE audit_log SET actor_id = 99 WHERE seq = 3")
    bad = run()
    assert bad.returncode == 1 and "TAMPERED at entry 3" in bad.stderr


# the per-asset rules, pure ------------------------------------------------------------------------------
def _f(action: str, status: str = "confirmed", amount: int | None = None, at: int = 0) -> FollowUp:
    kind, state = FollowUpAction(action), FollowUpStatus(status)
    ids = (FollowUpId(f"{action}-{at}"), AssetId(1), QueryId("q"), CaseId(1), AgencyId("icbc"))
    return FollowUp(*ids, kind, amount, "r", UserId(1), at, state, updated_ms=at)


def _refused(action: str, amount: int | None, value: int | None, history: list[FollowUp]) -> str:
    with pytest.raises(Conflict) as caught:
        check_followup(FollowUpAction(action), amount, value, history)
    return caught.value.message


def test_a_deduction_never_exceeds_what_is_frozen() -> None:
    frozen = [_f("freeze", amount=10_000, at=1)]
    assert asset_hold(50_000, frozen).frozen_cents == 10_000  # the freeze's cap, below the value
    assert asset_hold(5_000, frozen).frozen_cents == 5_000  # the value, below the cap
    check_followup(FollowUpAction.DEDUCT, 10_000, 50_000, frozen)
    assert _refused("deduct", 10_001, 50_000, frozen) == (
        "amount_cents: 10001 is more than remains frozen on this asset (10000 of 10000; 0 deducted, 0 awaiting"
        " approval or being sent)"
    )
    after = [*frozen, _f("deduct", amount=6_000, at=2), _f("deduct", "awaiting_approval", 3_000, at=3)]
    check_followup(FollowUpAction.DEDUCT, 1_000, 50_000, after)
    assert "(1000 of 10000; 6000 deducted, 3000 awaiting" in _refused("deduct", 1_001, 50_000, after)
    rejected = [*frozen, _f("deduct", "rejected", 9_000, at=2)]
    check_followup(FollowUpAction.DEDUCT, 10_000, 50_000, rejected)  # a refused deduction holds nothing
    unknown = [_f("freeze", at=1)]
    assert "not known" in _refused("deduct", 1, None, unknown)
    assert "confirmed freeze" in _refused("deduct", 1, 50_000, [_f("freeze", "awaiting_approval", at=1)])


def test_after_an_unfreeze_nothing_but_a_new_freeze() -> None:
    unfrozen = [_f("freeze", amount=10_000, at=1), _f("deduct", amount=2_000, at=2), _f("unfreeze", at=3)]
    for action in ("renew", "unfreeze", "deduct"):
        assert "unfrozen: nothing but a new freeze may follow" in _refused(action, 1, 50_000, unfrozen)
    check_followup(FollowUpAction.FREEZE, None, 50_000, unfrozen)
    refrozen = [*unfrozen, _f("freeze", at=4)]
    assert asset_hold(50_000, refrozen).deducted_cents == 0  # a new freeze starts a new account
    check_followup(FollowUpAction.DEDUCT, 50_000, 50_000, refrozen)
    assert _refused("freeze", None, 50_000, refrozen) == "this asset is frozen already; renew the freeze instead"
    check_followup(FollowUpAction.RENEW, None, 50_000, refrozen)
    twice = [*refrozen, _f("unfreeze", "approved", at=5)]
    assert "already awaiting approval" in _refused("unfreeze", None, 50_000, twice)
    assert "already awaiting approval" in _refused("freeze", None, 50_000, [_f("freeze", "sending", at=1)])


async def test_the_api_refuses_what_the_asset_does_not_allow_with_409(tmp_path: Path) -> None:
    bank = _bank_with_assets()
    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        _, _, asset = await _an_asset(world, [bank])
        cap = min(asset["value_cents"], 10_000)
        for bad in ("冻结-1", "a b", "x" * 129):
            refused = await _request(world, asset, "freeze", key=bad, amount_cents=cap)
            assert refused.status == 422 and "Idempotency-Key:" in (await refused.json())["error"]["message"]
        first = await _request(world, asset, "freeze", key="freeze/01?#", amount_cents=cap)
        assert first.status == 201, await first.text()
        freeze = await first.json()
        assert freeze["id"].startswith("k-")  # usable in a path; the same key finds it again
        again = await _request(world, asset, "freeze", key="freeze/01?#", amount_cents=cap)
        assert again.status == 200 and (await again.json())["id"] == freeze["id"]
        assert (await _request(world, asset, "freeze")).status == 409  # one freeze in flight
        assert (await _decide(world, freeze["id"])).status == 200
        await _until(world, freeze["id"], "confirmed")

        over = await _request(world, asset, "deduct", amount_cents=cap + 1)
        assert over.status == 409
        assert (await over.json())["error"]["message"].startswith(f"amount_cents: {cap + 1} is more than remains")
        assert (await _request(world, asset, "deduct", amount_cents=cap - 1)).status == 201
        pending = await _request(world, asset, "deduct", amount_cents=2)  # the one awaiting approval counts
        assert pending.status == 409, await pending.text()

        unfreeze = await (await _request(world, asset, "unfreeze")).json()
        assert (await _decide(world, unfreeze["id"])).status == 200
        await _until(world, unfreeze["id"], "confirmed")
        for action, amount in (("renew", None), ("deduct", 1), ("unfreeze", None)):
            after = await _request(world, asset, action, amount_cents=amount)
            assert after.status == 409
            assert "unfrozen: nothing but a new freeze" in (await after.json())["error"]["message"]
        assert (await _request(world, asset, "freeze")).status == 201


async def test_a_case_no_longer_under_way_takes_only_unfreezes(tmp_path: Path) -> None:
    """终本/结案: nothing more is frozen, renewed or deducted (asked or approved); releasing an asset still is."""
    from persistence.query_models import CaseStatus

    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        case, _, asset = await _an_asset(world, [_bank_with_assets()])
        freeze = await (await _request(world, asset, "freeze", amount_cents=100)).json()
        assert (await _decide(world, freeze["id"])).status == 200
        await _until(world, freeze["id"], "confirmed")
        asked = await _request(world, asset, "deduct", amount_cents=50)  # asked while the case is under way
        assert asked.status == 201, await asked.text()
        stored = await world.store.get_case(CaseId(case["id"]))
        await world.store.update_case(stored.id, title=stored.title, status=CaseStatus.TERMINATED)
        for action, amount in (("renew", None), ("deduct", 10)):
            refused = await _request(world, asset, action, amount_cents=amount)
            assert refused.status == 409, await refused.text()
            error = (await refused.json())["error"]
            assert error["code"] == "case_not_under_way" and "only an unfreeze" in error["message"], error
        late = await _decide(world, (await asked.json())["id"])  # not approved once the case has ended
        assert late.status == 409 and (await late.json())["error"]["code"] == "case_not_under_way"
        unfreeze = await _request(world, asset, "unfreeze")
        assert unfreeze.status == 201, await unfreeze.text()
        unfreeze_id = (await unfreeze.json())["id"]
        assert (await _decide(world, unfreeze_id)).status == 200
        await _until(world, unfreeze_id, "confirmed")


def test_a_follow_up_key_is_the_judges_own() -> None:
    """Two judges choosing the same key get two follow-ups (neither learns the other's exists); one judge's
    retry finds its own again; whatever the key holds, the id is URL-safe."""
    from query_control.guard import followup_id_for

    assert followup_id_for("freeze-1", 7) == followup_id_for("freeze-1", 7)
    assert followup_id_for("freeze-1", 7) != followup_id_for("freeze-1", 8)
    assert followup_id_for("冻结/1?#", 7).startswith("k-") and followup_id_for("冻结/1?#", 7).isascii()
