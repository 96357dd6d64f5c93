"""The case source (立案): cases, parties and judges come from the court's case-management system (or an
import, or a supervisor by hand), never from the judge who queries; only the judge on a case may query it.

Each test runs the real app with the real agency simulator, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from command_center.bootstrap import import_courts
from command_center.case_import import import_cases
from command_center.keys import BUS
from config.settings import StoreSettings
from core.errors import NotFound
from core.ids import CaseId, CourtId, QueryId
from persistence.factory import build_store
from persistence.models import Role
from persistence.query_models import PartyKind
from query_control.audit import verify
from query_control.identifiers import make_credit_code, make_id_number
from query_control.views import query_topic
from tests.conftest import COURTS_FILE, POSTGRES_DSN, World, fresh_pg_schema, store_settings
from tests.query_support import ORG, PERSON, open_case, open_query_screen, query_app, running_fleet, test_agencies

ROOT = Path(__file__).resolve().parent.parent
CASE = "(2026)黑01执77号"
SECOND = ("李四", make_id_number("230102", date(1985, 3, 9), 456))
THIRD = ("某某物流有限公司", make_credit_code("91230102MA1B2C3D4"))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[World]:
    """The query app (judge, judge2, supervisor, admin… at HLJ01) on each store, agencies running."""
    async with running_fleet(test_agencies()) as (_, pointed):
        if request.param == "sqlite":
            async with query_app(tmp_path, pointed) as app:
                yield app
        else:
            async with (
                fresh_pg_schema() as schema,
                query_app(tmp_path, pointed, store=StoreSettings(url=POSTGRES_DSN), schema=schema) as app,
            ):
                yield app


async def _system_client(world: World, name: str = "哈尔滨中院立案系统", court: str = "HLJ01") -> tuple[int, str]:
    created = await world.client.post(
        "/api/system-clients", json={"name": name, "court_id": court}, headers=world.auth("admin")
    )
    assert created.status == 201, await created.text()
    body = await created.json()
    assert body["secret"].startswith("cc_y_")
    return body["client"]["id"], body["secret"]


def _case(judges: list[str], status: str = "active", **extra: Any) -> dict[str, Any]:
    return {
        "case_number": CASE,
        "title": "借款合同纠纷执行",
        "status": status,
        "parties": [
            {"kind": "person", "name": PERSON[0], "identifier": PERSON[1]},
            {"kind": "organisation", "name": ORG[0], "identifier": ORG[1]},
        ],
        "judges": judges,
        **extra,
    }


async def _sync(world: World, secret: str, case: dict[str, Any], expect: int = 200) -> dict[str, Any]:
    response = await world.client.post(
        "/api/integration/cases", json=case, headers={"Authorization": f"Bearer {secret}"}
    )
    body: dict[str, Any] = await response.json()
    assert response.status == expect, body
    return body


async def _query(world: World, case_id: int, who: str = "judge", **selection: Any) -> tuple[int, dict[str, Any]]:
    response = await world.client.post(
        "/api/queries",
        json={"case_id": case_id, "reason": "申请执行人申请查控被执行人财产", "agency_ids": ["icbc"], **selection},
        headers=world.auth(who),
    )
    body: dict[str, Any] = await response.json()
    return response.status, body


async def test_a_judge_cannot_open_a_case_or_put_a_party_on_one(world: World) -> None:
    refused = await world.client.post(
        "/api/cases", json={"case_number": CASE, "title": "t", "parties": []}, headers=world.auth("judge")
    )
    assert refused.status == 403 and (await refused.json())["error"]["code"] == "forbidden"
    assert await world.store.list_cases() == []

    case = await open_case(world)  # a supervisor registers it by hand, for the judge
    assert case["source"] == "manual" and case["status"] == "active" and case["status_label"] == "执行中"
    party = {"kind": "person", "name": SECOND[0], "identifier": SECOND[1], "reason": "申请执行人提供线索"}
    stranger = await world.client.post(f"/api/cases/{case['id']}/parties", json=party, headers=world.auth("judge2"))
    assert stranger.status == 403
    wrong = {**party, "identifier": SECOND[1][:-1] + ("0" if SECOND[1][-1] != "0" else "1")}
    refused = await world.client.post(f"/api/cases/{case['id']}/parties", json=wrong, headers=world.auth("judge"))
    assert refused.status == 422 and (await refused.json())["error"]["message"].startswith("identifier: ")
    proposed = await world.client.post(f"/api/cases/{case['id']}/parties", json=party, headers=world.auth("judge"))
    assert proposed.status == 202 and (await proposed.json())["status"] == "awaiting_approval"
    stored = await world.store.get_case(case["id"])
    assert [p.identifier for p in stored.parties] == [PERSON[1], ORG[1]]  # not on the case until approved
    actions = [e.action for e in await world.store.audit_entries()]
    assert actions == ["case.create", "party.propose"]


async def test_the_system_upserts_a_case_idempotently_and_the_judge_on_it_queries(world: World) -> None:
    _, secret = await _system_client(world)
    created = await _sync(world, secret, _case(["judge"]), expect=201)
    assert created["outcome"] == "created" and created["court_id"] == "HLJ01"
    again = await _sync(world, secret, _case(["judge"]))
    assert again == {**created, "outcome": "unchanged", "changes": {}}
    [case] = await world.store.list_cases()
    assert case.source.value == "system" and case.created_by is None and len(case.parties) == 2
    upserts = [e for e in await world.store.audit_entries() if e.action == "case.upsert"]
    assert [e.details["outcome"] for e in upserts] == ["created", "unchanged"]
    assert upserts[0].details["client_name"] == "哈尔滨中院立案系统"

    listed = await (await world.client.get("/api/cases", headers=world.auth("judge"))).json()
    assert [c["case_number"] for c in listed["cases"]] == [CASE]
    status, query = await _query(world, case.id)
    assert status == 202, query
    assert (await _query(world, case.id, "judge2"))[0] == 403

    # judges named that do not exist or belong elsewhere: refused, naming each; nothing changes
    bad = await world.client.post(
        "/api/integration/cases",
        json=_case(["judge", "nobody", "basic_supervisor", "supervisor"]),
        headers={"Authorization": f"Bearer {secret}"},
    )
    message = (await bad.json())["error"]["message"]
    assert bad.status == 422, message
    assert "no such user: nobody" in message
    assert "basic_supervisor (supervisor of HLJ0102)" in message and "supervisor (supervisor of HLJ01)" in message
    wrong_id = _case(["judge"])
    wrong_id["parties"][0]["identifier"] = PERSON[1][:-1] + "1"
    bad_id = await world.client.post(
        "/api/integration/cases", json=wrong_id, headers={"Authorization": f"Bearer {secret}"}
    )
    assert bad_id.status == 422 and "parties.0.identifier" in (await bad_id.json())["error"]["message"]
    outside = await world.client.post(
        "/api/integration/cases",
        json={**_case([]), "case_number": "(2026)黑11执1号", "court_id": "HLJ11"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert outside.status == 403
    below = await _sync(world, secret, {**_case([]), "case_number": "(2026)黑0102执5号", "court_id": "HLJ0102"}, 201)
    assert below["court_id"] == "HLJ0102"
    # the system credential reaches nothing but its route
    assert (await world.client.get("/api/cases", headers={"Authorization": f"Bearer {secret}"})).status == 403
    assert (await verify(world.store)).ok


async def test_a_judge_taken_off_the_case_loses_it_its_queries_and_their_results(world: World) -> None:
    _, secret = await _system_client(world)
    case_id = (await _sync(world, secret, _case(["judge", "judge2"]), expect=201))["case_id"]
    status, query = await _query(world, case_id)
    assert status == 202, query
    screen = await open_query_screen(world, query["id"])  # open while the judge is taken off the case
    await screen.pump(lambda s: s.complete, within=10)

    changed = await _sync(world, secret, _case(["judge2"]))
    assert changed["outcome"] == "updated" and changed["changes"]["judges_removed"]
    await screen.pump(lambda s: s.messages[-1].get("event") == "access_revoked", within=5)

    judge = world.auth("judge")
    assert (await world.client.get(f"/api/cases/{case_id}", headers=judge)).status == 403
    assert (await (await world.client.get("/api/cases", headers=judge)).json())["cases"] == []
    assert (await (await world.client.get("/api/queries", headers=judge)).json())["queries"] == []
    assert (await world.client.get(f"/api/queries/{query['id']}", headers=judge)).status == 403
    assert (await world.client.get(f"/api/reports/cases/{case_id}", headers=judge)).status == 403
    assert (await _query(world, case_id))[0] == 403
    again = await open_query_screen(world, query["id"])
    await again.pump(lambda s: bool(s.messages) and s.messages[-1]["type"] == "error", within=5)
    assert again.messages[-1]["code"] == "forbidden"
    await again.ws.close()
    # nothing more of the query reaches the screen that was open (a follow-up's news would have)
    await world.client.app[BUS].publish(query_topic(query["id"]), {"event": "complete", "completed_ms": 1})
    await screen.ws.send_json({"type": "ping"})
    await screen.pump(lambda s: s.messages[-1]["type"] == "pong", within=5)
    assert [m for m in screen.messages if m.get("completed_ms") == 1] == []
    await screen.ws.close()
    # the judge still on it sees the query and its results
    assert (await world.client.get(f"/api/queries/{query['id']}", headers=world.auth("judge2"))).status == 200


async def test_a_terminated_or_closed_case_is_not_queried(world: World) -> None:
    _, secret = await _system_client(world)
    case_id = (await _sync(world, secret, _case(["judge"], status="终本"), expect=201))["case_id"]
    status, body = await _query(world, case_id)
    assert status == 409 and body["error"]["code"] == "case_not_under_way", body
    assert "终本" in body["error"]["message"] and "terminated" in body["error"]["message"]
    assert (await _sync(world, secret, _case(["judge"], status="closed")))["changes"] == {"status": "closed"}
    assert (await _query(world, case_id))[0] == 409
    assert await world.store.list_queries(case_id=case_id) == []
    await _sync(world, secret, _case(["judge"], status="active"))  # the case is taken up again (恢复执行)
    assert (await _query(world, case_id))[0] == 202


async def test_a_proposed_party_is_queried_only_after_another_supervisor_approves(world: World) -> None:
    await world.add_user("supervisor2", Role.SUPERVISOR, "HLJ01")
    world.tokens["supervisor2"] = await world.login("supervisor2")
    case = await open_case(world)
    party = {"kind": "person", "name": SECOND[0], "identifier": SECOND[1], "reason": "申请执行人提供线索"}
    proposal = await (
        await world.client.post(f"/api/cases/{case['id']}/parties", json=party, headers=world.auth("supervisor"))
    ).json()
    decision = {"reason": "线索核实无误"}
    approve = f"/api/party-proposals/{proposal['id']}/approve"
    mine = await world.client.post(approve, json=decision, headers=world.auth("supervisor"))
    assert mine.status == 403 and "proposer" in (await mine.json())["error"]["message"]
    below = await world.client.post(approve, json=decision, headers=world.auth("basic_supervisor"))
    assert below.status == 403  # a basic court's supervisor does not approve for the court above
    assert (await world.client.post(approve, json={"reason": ""}, headers=world.auth("supervisor2"))).status == 422
    waiting = await (await world.client.get("/api/party-proposals", headers=world.auth("judge"))).json()
    assert [p["status"] for p in waiting["proposals"]] == ["awaiting_approval"]
    assert SECOND[1] not in [p.identifier for p in (await world.store.get_case(case["id"])).parties]

    approved = await world.client.post(approve, json=decision, headers=world.auth("supervisor2"))
    body = await approved.json()
    assert approved.status == 200 and body["status"] == "approved" and body["party_id"], body
    assert (await world.client.post(approve, json=decision, headers=world.auth("supervisor2"))).status == 409
    status, query = await _query(world, case["id"], party_ids=[body["party_id"]])
    assert status == 202 and {j["party_id"] for j in query["jobs"]} == {body["party_id"]}

    # the judge on the case proposes another; it is rejected with a reason and never joins the case
    third = {"kind": "organisation", "name": THIRD[0], "identifier": THIRD[1]}
    proposal = await (
        await world.client.post(
            f"/api/cases/{case['id']}/parties", json={**third, "reason": "关联企业"}, headers=world.auth("judge")
        )
    ).json()
    rejected = await world.client.post(
        f"/api/party-proposals/{proposal['id']}/reject", json={"reason": "无证据"}, headers=world.auth("supervisor")
    )
    assert (await rejected.json())["status"] == "rejected"
    assert third["identifier"] not in [p.identifier for p in (await world.store.get_case(case["id"])).parties]
    actions = [e.action for e in await world.store.audit_entries() if e.action.startswith("party.")]
    assert actions == ["party.propose", "party.approve", "party.propose", "party.reject"]


async def test_a_revoked_system_client_gets_401(world: World) -> None:
    client_id, secret = await _system_client(world)
    await _sync(world, secret, _case(["judge"]), expect=201)
    listed = await (await world.client.get("/api/system-clients", headers=world.auth("admin"))).json()
    assert [c["name"] for c in listed["clients"]] == ["哈尔滨中院立案系统"] and "secret" not in listed["clients"][0]
    revoked = await world.client.post(f"/api/system-clients/{client_id}/revoke", headers=world.auth("admin"))
    assert revoked.status == 200 and (await revoked.json())["revoked_ms"] is not None
    refused = await world.client.post(
        "/api/integration/cases", json=_case([]), headers={"Authorization": f"Bearer {secret}"}
    )
    assert refused.status == 401 and "revoked" in (await refused.json())["error"]["message"]
    actions = [e.action for e in await world.store.audit_entries() if e.action.startswith("system_client.")]
    assert actions == ["system_client.create", "system_client.revoke"]


# the import file --------------------------------------------------------------------------------------
def _csv(rows: list[str]) -> str:
    return "case_number,court_id,title,status,parties,judges\n" + "\n".join(rows) + "\n"


IMPORT_ROWS = [
    f"(2026)黑01执1号,HLJ01,买卖合同纠纷执行,执行中,person|{PERSON[0]}|{PERSON[1]};organisation|{ORG[0]}|{ORG[1]},judge",
    f"(2026)黑01执2号,HLJ01,借款合同纠纷执行,active,person|{PERSON[0]}|{PERSON[1][:-1]}1,judge",
    "(2026)黑01执3号,HLJ01,租赁合同纠纷执行,terminated,,nobody",
    f"(2026)黑01执4号,HLJ01,劳动争议执行,closed,person|{SECOND[0]}|{SECOND[1]},judge;judge2",
]


async def test_case_import_reports_bad_rows_and_imports_the_good_ones(
    world: World, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cases.csv"
    path.write_text(_csv(IMPORT_ROWS), encoding="utf-8")
    assert await import_cases(world.store, path) == 1
    out, err = capsys.readouterr()
    assert "row 3: refused: parties.0.identifier: resident ID number" in err
    assert "row 4: refused: judges: no such user: nobody" in err
    assert "row 2: (2026)黑01执1号 created" in out and "row 5: (2026)黑01执4号 created" in out
    cases = {c.case_number: c for c in await world.store.list_cases()}
    assert sorted(cases) == ["(2026)黑01执1号", "(2026)黑01执4号"]
    assert cases["(2026)黑01执4号"].status.value == "closed" and len(cases["(2026)黑01执4号"].judge_ids) == 2

    assert await import_cases(world.store, path) == 1  # again: the same rows refused, nothing changed
    assert "2 unchanged" in capsys.readouterr()[0]
    assert len(await world.store.list_cases()) == 2

    document = tmp_path / "cases.json"
    document.write_text(
        json.dumps(
            {
                "cases": [
                    {
                        "case_number": "(2026)黑01执1号",
                        "court_id": "HLJ01",
                        "title": "买卖合同纠纷执行",
                        "status": "terminated",
                        "judges": ["judge2"],
                    },
                    "not a case",
                ]
            }
        ),
        encoding="utf-8",
    )
    assert await import_cases(world.store, document) == 1
    out, err = capsys.readouterr()
    assert "row 1: (2026)黑01执1号 updated" in out and "row 2: refused: a case must be a JSON object" in err
    updated = await world.store.find_case("(2026)黑01执1号")
    assert updated is not None and updated.status.value == "terminated" and len(updated.parties) == 2


def test_the_command_line_registers_a_system_client_and_imports_cases(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CC_")}
    env.update(CC_DATA_DIR=str(tmp_path), CC_STORE__URL=f"sqlite:///{tmp_path / 'cli.db'}")

    def cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "command_center", *args], cwd=ROOT, env=env, input=stdin,
                              capture_output=True, text=True, timeout=60)  # fmt: skip

    assert cli("init").returncode == 0
    added = cli("user", "add", "--username", "judge", "--display-name", "法官", "--role", "judge", "--court",
                "HLJ01", stdin="correct horse 1\n")  # fmt: skip
    assert added.returncode == 0, added.stderr
    client = cli("system-client", "add", "--name", "立案系统", "--court", "HLJ01")
    assert client.returncode == 0 and "cc_y_" in client.stdout, client.stderr
    path = tmp_path / "cases.csv"
    path.write_text(_csv(IMPORT_ROWS[:2]), encoding="utf-8")
    imported = cli("case", "import", str(path))
    assert imported.returncode == 1
    assert "row 2: (2026)黑01执1号 created" in imported.stdout
    assert "row 3: refused: parties.0.identifier" in imported.stderr
    assert cli("system-client", "revoke", "--name", "立案系统").returncode == 0
    assert cli("audit", "verify").returncode == 0


# the migration ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_migration_009_keeps_the_cases_queries_and_parties_of_a_running_centre(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite rebuilds the cases table (to let created_by be empty): the rows other tables point at stay."""
    import persistence.core_sql
    from persistence.migrations import load_migrations

    module = persistence.core_sql  # where both stores read their migrations
    async with AsyncExitStack() as stack:
        schema = await stack.enter_async_context(fresh_pg_schema()) if kind == "postgres" else None
        store = build_store(store_settings(kind, tmp_path), schema=schema)
        await store.open()
        stack.push_async_callback(store.close)
        with monkeypatch.context() as before:
            before.setattr(module, "load_migrations", lambda dialect: load_migrations(dialect)[:8])
            assert await store.migrate() == [1, 2, 3, 4, 5, 6, 7, 8]
        await import_courts(store, COURTS_FILE)
        judge = await store.add_user(
            username="judge", display_name="j", password_hash="x", role=Role.JUDGE, court_id=CourtId("HLJ01")
        )
        for sql in (
            "INSERT INTO cases (case_number, court_id, title, created_by, created_ms)"
            f" VALUES ('{CASE}', 'HLJ01', 't', {judge.id}, 5)",
            f"INSERT INTO case_parties (case_id, kind, name, identifier) VALUES (1, 'person', '张三', '{PERSON[1]}')",
            f"INSERT INTO case_judges (case_id, user_id) VALUES (1, {judge.id})",
            f"INSERT INTO queries (id, case_id, judge_id, reason, created_ms, deadline_ms) VALUES ('q1', 1, {judge.id},"
            " 'r', 1, 2)",
        ):
            await store.database.execute(sql)  # type: ignore[attr-defined]
        assert (await store.migrate())[0] == 9  # and every later migration
        case = await store.get_case(CaseId(1))
        assert (case.case_number, case.created_by, case.status.value, case.source.value) == (
            CASE, judge.id, "active", "manual",
        )  # fmt: skip
        assert [p.identifier for p in case.parties] == [PERSON[1]] and case.judge_ids == (judge.id,)
        assert (await store.get_query(QueryId("q1"))).case_id == 1
        added = await store.add_case(case_number="(2026)黑01执2号", court_id=CourtId("HLJ01"), title="t",
                                     created_by=None, created_ms=0)  # fmt: skip
        assert added.id == 2 and added.created_by is None
        with pytest.raises(NotFound):
            await store.add_party(CaseId(99), PartyKind.PERSON, "x", PERSON[1])  # foreign keys still hold
