"""Follow-ups (freeze, renew, unfreeze, deduct) with the second approval, against the real agency simulator:
nothing is sent before a supervisor approves, and a freeze retried after a crash is applied once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    from query_control.simulator.data import holdings

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
        assert deduct["error"]["code"] == "validation_failed"
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
        assert fleet[bank].stats.new_requests["freeze-crash-1"] == 1
        stored = await _status_in_file(tmp_path)
        assert stored == "sending"
        async with query_app(tmp_path, pointed, tokens=tokens) as second:
            confirmed = await _until(second, "freeze-crash-1", "confirmed")
            assert confirmed["attempts"] == 2  # sent again after the restart, with the same key
        stats = fleet[bank].stats
        assert stats.new_requests["freeze-crash-1"] == 1 and stats.replays["freeze-crash-1"] == 1
        assert [a for a in stats.followups_applied if a[0] == "freeze-crash-1"] == [
            ("freeze-crash-1", "freeze", asset["ref"])
        ]


async def _status_in_file(tmp_path: Path) -> str:
    import aiosqlite

    async with aiosqlite.connect(tmp_path / "queries.db") as db:
        cursor = await db.execute("SELECT status FROM followups WHERE id = 'freeze-crash-1'")
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
