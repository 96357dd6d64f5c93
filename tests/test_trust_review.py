"""A second look at issue 12 ("Trust"), as an outside tester: holes found after the first fixes were merged.

Each test drives the running app over HTTP as a caller of another court (or with a credential where it does
not belong) and checks what it can reach and what an error tells it.
"""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from core.ids import CourtId
from persistence.models import Role
from query_control.identifiers import make_id_number
from tests.conftest import AppFactory, World

FAR_CASE = "(2026)黑0103执5号"  # a case of Nangang court (HLJ0103), outside Daoli's (HLJ0102) and not the judge's
PARTY = ("张三", make_id_number("230103", date(1980, 1, 2), 123))
OTHER = ("李四", make_id_number("230103", date(1985, 3, 9), 456))


async def _system_client(world: World, court: str) -> str:
    created = await world.client.post(
        "/api/system-clients", json={"name": f"{court} 立案系统", "court_id": court}, headers=world.auth("admin")
    )
    assert created.status == 201, await created.text()
    secret: str = (await created.json())["secret"]
    return secret


async def _sync(world: World, secret: str, case: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    response = await world.client.post(
        "/api/integration/cases", json=case, headers={"Authorization": f"Bearer {secret}"}
    )
    return response.status, await response.json()


async def _far_court(world: World) -> dict[str, Any]:
    """Nangang's judge, supervisor and case (registered by its own system), and a Daoli supervisor."""
    for username, role, court in (
        ("far_judge", Role.JUDGE, "HLJ0103"),
        ("far_supervisor", Role.SUPERVISOR, "HLJ0103"),
        ("near_supervisor", Role.SUPERVISOR, "HLJ0102"),
    ):
        await world.add_user(username, role, court)
        world.tokens[username] = await world.login(username)
    far_system = await _system_client(world, "HLJ0103")
    status, synced = await _sync(world, far_system, {
        "case_number": FAR_CASE, "title": "借款合同纠纷执行", "judges": ["far_judge"],
        "parties": [{"kind": "person", "name": PARTY[0], "identifier": PARTY[1]}],
    })  # fmt: skip
    assert status == 201, synced
    return synced


def _discloses_nothing_of_the_far_court(error: dict[str, Any]) -> None:
    text = str(error)
    assert FAR_CASE not in text and "HLJ0103" not in text and "far_" not in text, text


async def test_case_report_refusals_name_no_case_or_court_of_another_court(make_world: AppFactory) -> None:
    """The map report said "you are not a judge of case (2026)黑0103执5号" to any judge, and a supervisor of
    another court learnt which court holds the case id they tried."""
    world = await make_world()
    case = await _far_court(world)
    for who, message in (
        ("judge", "you are not assigned to this case"),
        ("near_supervisor", "this case is outside your jurisdiction"),
    ):
        refused = await world.client.get(f"/api/reports/cases/{case['case_id']}", headers=world.auth(who))
        error = (await refused.json())["error"]
        assert refused.status == 403 and error["message"] == message, error
        _discloses_nothing_of_the_far_court(error)
    shown = await world.client.get(f"/api/reports/cases/{case['case_id']}", headers=world.auth("far_judge"))
    assert shown.status == 200 and FAR_CASE in await shown.text()


async def test_a_party_approval_from_another_court_names_no_case(make_world: AppFactory) -> None:
    world = await make_world()
    case = await _far_court(world)
    proposal = {"kind": "person", "name": OTHER[0], "identifier": OTHER[1], "reason": "申请执行人提供线索"}
    proposed = await world.client.post(
        f"/api/cases/{case['case_id']}/parties", json=proposal, headers=world.auth("far_judge")
    )
    assert proposed.status == 202, await proposed.text()
    proposal_id = (await proposed.json())["id"]
    decision = {"reason": "核实无误"}
    refused = await world.client.post(
        f"/api/party-proposals/{proposal_id}/approve", json=decision, headers=world.auth("near_supervisor")
    )
    error = (await refused.json())["error"]
    assert refused.status == 403 and error["message"] == "this case is outside your jurisdiction", error
    _discloses_nothing_of_the_far_court(error)
    approved = await world.client.post(
        f"/api/party-proposals/{proposal_id}/approve", json=decision, headers=world.auth("far_supervisor")
    )
    assert approved.status == 200 and (await approved.json())["status"] == "approved"


async def test_a_system_client_learns_no_case_court_or_staff_of_another_court(make_world: AppFactory) -> None:
    """Daoli's case-management system sent Nangang's case number and staff usernames: the 409 named the court
    holding the case and the 422 each user's role and court ("far_judge (judge of HLJ0103)")."""
    world = await make_world()
    await _far_court(world)
    near_system = await _system_client(world, "HLJ0102")
    status, body = await _sync(world, near_system, {"case_number": FAR_CASE, "title": "x"})
    assert status == 409, body
    assert body["error"]["message"] == f"case {FAR_CASE} is registered to a court outside your jurisdiction"
    assert "HLJ0103" not in str(body)
    status, body = await _sync(world, near_system, {
        "case_number": "(2026)黑0102执9号", "title": "x", "judges": ["far_judge", "far_supervisor", "nobody"],
    })  # fmt: skip
    assert status == 422, body
    # told exactly like a user who does not exist: nothing learnt of who works where
    assert body["error"]["message"] == "judges: no such user: far_judge, far_supervisor, nobody", body
    assert "HLJ0103" not in str(body) and "supervisor of" not in str(body) and "judge of" not in str(body)
    # staff within its jurisdiction are still named precisely, so an integrator can fix its data
    await world.add_user("near_operator", Role.OPERATOR, "HLJ0102")
    status, body = await _sync(world, near_system, {"case_number": "(2026)黑0102执9号", "title": "x",
                                                    "judges": ["near_operator"]})  # fmt: skip
    assert status == 422 and "near_operator (operator of HLJ0102)" in body["error"]["message"], body
    assert await world.store.list_cases(court_ids=[CourtId("HLJ0102")]) == []


async def test_a_ticket_opens_only_a_websocket_route(make_world: AppFactory) -> None:
    """A ticket travels in a URL, so it must open nothing but the socket it was made for: with a forged
    ``Upgrade: websocket`` header it answered a plain GET of /api/cases (and a case's map report) as HTTP."""
    world = await make_world()
    ticket = await world.ticket("supervisor")
    for path in ("/api/cases", "/api/me", "/api/units"):
        plain = await world.client.get(
            f"{path}?ticket={ticket}", headers={"Upgrade": "websocket", "Connection": "Upgrade"}
        )
        assert plain.status == 401, (path, await plain.text())
        assert "a ticket only opens a WebSocket" in (await plain.json())["error"]["message"]
    # refused before it was redeemed, so it still opens the screen socket it was made for, once
    socket = await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
    try:
        hello = await socket.receive_json(timeout=5)
        assert "type" in hello, hello  # the screen socket is open and speaking
    finally:
        await socket.close()
    try:
        await world.client.ws_connect(f"/api/screen/ws?ticket={ticket}")
        raise AssertionError("a used ticket opened a second socket")
    except aiohttp.WSServerHandshakeError as refused:
        assert refused.status == 401


async def test_a_judge_taken_off_a_case_gets_no_replay_of_a_follow_up(tmp_path: Path) -> None:
    """Sending a follow-up again with its Idempotency-Key answered with the follow-up (asset, amount, status)
    before the judge was checked to be still on the case: a judge taken off it could still read it."""
    from tests.query_support import query_app, running_fleet, test_agencies
    from tests.test_followups import _an_asset, _bank_with_assets, _request

    async with running_fleet(test_agencies()) as (_, pointed), query_app(tmp_path, pointed) as world:
        case, _, asset = await _an_asset(world, [_bank_with_assets()])
        amount = min(asset["value_cents"], 10_000)
        first = await _request(world, asset, "freeze", key="freeze-1", amount_cents=amount)
        assert first.status == 201, await first.text()
        again = await _request(world, asset, "freeze", key="freeze-1", amount_cents=amount)
        assert again.status == 200  # a double click while on the case: the same follow-up
        judge2 = await world.store.find_user("judge2")
        assert judge2 is not None
        moved = await world.client.put(
            f"/api/cases/{case['id']}/judges", json={"judge_ids": [judge2.id]}, headers=world.auth("supervisor")
        )
        assert moved.status == 200, await moved.text()
        replay = await _request(world, asset, "freeze", key="freeze-1", amount_cents=amount)
        error = (await replay.json())["error"]
        assert replay.status == 403 and error["message"] == "you are not assigned to this case", error


async def test_registering_a_case_by_hand_tells_nothing_of_another_courts_judges(make_world: AppFactory) -> None:
    """``POST /api/cases`` checked the judges before the court: for another court, a judge's id got 403 and any
    other id 422, so a supervisor could find out who the judges of every court are."""
    world = await make_world()
    await _far_court(world)
    far_judge = await world.store.find_user("far_judge")
    far_supervisor = await world.store.find_user("far_supervisor")
    assert far_judge is not None and far_supervisor is not None
    answers = set()
    for user_id in (far_judge.id, far_supervisor.id, 999_999):
        refused = await world.client.post(
            "/api/cases",
            json={"case_number": "(2026)黑0103执77号", "title": "x", "court_id": "HLJ0103", "judge_ids": [user_id]},
            headers=world.auth("near_supervisor"),
        )
        answers.add((refused.status, (await refused.json())["error"]["message"]))
    assert answers == {(403, "court HLJ0103 is outside your jurisdiction")}, answers


def test_audit_verify_reports_a_value_of_the_wrong_type_instead_of_crashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """SQLite keeps whatever is written into a column: a BLOB put in ``reason`` made ``audit verify`` end in a
    TypeError traceback (``bytes is not JSON serializable``) instead of naming the entry."""
    from command_center.cli import main
    from tests.test_audit_tampering import Centre

    database = tmp_path / "centre.db"
    url = f"sqlite:///{database}"
    for name in [k for k in os.environ if k.startswith("CC_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("CC_STORE__URL", url)
    monkeypatch.setenv("CC_DATA_DIR", str(tmp_path / "data"))
    centre = Centre("sqlite", tmp_path, url, capsys)
    centre.record(4)
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_log SET reason = X'FF00' WHERE seq = 3")
    capsys.readouterr()
    code = main(["audit", "verify"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "TAMPERED at entry 3: the stored row is damaged" in err and "Traceback" not in err, err
    # and a checkpoint row with a field of another type is a forged checkpoint, not a crash
    with sqlite3.connect(database) as db:
        db.execute("UPDATE audit_log SET reason = ? WHERE seq = 3", ("查看 3",))
    assert main(["audit", "checkpoint"]) == 0 and main(["audit", "verify"]) == 0
    for damage in ("head = X'00'", "at_ms = 'x'", "sig = X'00'"):
        with sqlite3.connect(database) as db:
            kept = db.execute("SELECT head, at_ms, sig FROM audit_checkpoints").fetchone()
            db.execute(f"UPDATE audit_checkpoints SET {damage}")
        capsys.readouterr()
        code = main(["audit", "verify"])
        err = capsys.readouterr().err
        assert code == 1 and "database: FORGED checkpoint at seq 4" in err, (damage, err)
        with sqlite3.connect(database) as db:
            db.execute("UPDATE audit_checkpoints SET head = ?, at_ms = ?, sig = ?", kept)


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_parallel_queries_do_not_get_past_the_per_judge_limit(tmp_path: Path, kind: str) -> None:
    """The limit was counted, then the query made: requests sent at once all saw the same count."""
    import asyncio

    from tests.query_support import open_case
    from tests.test_query_abuse import REASON, _post, apps

    async with apps(tmp_path, kind, 2, max_per_judge_hour=3) as (one, two):
        case = await open_case(one)
        body = {"case_id": case["id"], "reason": REASON, "agency_ids": ["icbc"]}
        answers = await asyncio.gather(*(_post((one, two)[i % 2], body, key=f"k{i}") for i in range(12)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [202] * 3 + [429] * 9, statuses


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_deductions_sent_at_once_do_not_exceed_the_frozen_amount(tmp_path: Path, kind: str) -> None:
    """Each deduction was checked against the asset's history, then recorded: several sent at once all passed
    the same check, together exceeding what was frozen."""
    import asyncio

    from config.settings import StoreSettings
    from tests.conftest import POSTGRES_DSN, fresh_pg_schema
    from tests.query_support import query_app, running_fleet, test_agencies
    from tests.test_followups import _an_asset, _bank_with_assets, _decide, _request, _until

    async with (
        running_fleet(test_agencies()) as (_, pointed),
        fresh_pg_schema() as schema,
        query_app(
            tmp_path,
            pointed,
            store=StoreSettings(url=POSTGRES_DSN) if kind == "postgres" else None,
            schema=schema if kind == "postgres" else None,
        ) as world,
    ):
        _, _, asset = await _an_asset(world, [_bank_with_assets()])
        frozen = min(asset["value_cents"], 10_000)
        freeze = await (await _request(world, asset, "freeze", amount_cents=frozen)).json()
        assert (await _decide(world, freeze["id"])).status == 200
        await _until(world, freeze["id"], "confirmed")
        answers = await asyncio.gather(*(_request(world, asset, "deduct", amount_cents=frozen) for _ in range(6)))
        statuses = sorted(a.status for a in answers)
        assert statuses == [201] + [409] * 5, statuses
