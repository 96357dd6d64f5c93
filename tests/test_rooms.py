"""Consultation rooms (执行会商) across real courts of the tree, on SQLite and PostgreSQL: a basic court opens a
room on its case and the centres above it confer; a cross-court operation's room admits the lower courts whose
units take part; only the invited and authorised join, only the host mutes and closes, every step is audited."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from command_center.credentials import lookup_hash, new_device_secret
from config.settings import StoreSettings
from consultations.models import Room, RoomStatus, authorised_for
from core.ids import CaseId, CourtId, UnitId, UserId
from persistence.models import Role, UnitKind
from query_control.audit import verify
from tests.conftest import POSTGRES_DSN, AppFactory, World, fresh_pg_schema

DAOLI_UNIT, NANGANG_UNIT = "HLJ0102-U01", "HLJ0103-U01"
PEOPLE = {"high": (Role.SUPERVISOR, "HLJ"), "daoli": (Role.OPERATOR, "HLJ0102"),
          "nangang": (Role.OPERATOR, "HLJ0103"), "aihui": (Role.OPERATOR, "HLJ1102")}  # fmt: skip
TARGET = {"lat": 45.7612, "lon": 126.6201, "address": "道里区经纬街 88 号", "radius_m": 150}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def world(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    """The app on each store, with the high court's duty supervisor and operators of three basic courts."""
    if request.param == "sqlite":
        built = await make_world()
        await _people(built)
        yield built
        return
    async with fresh_pg_schema() as schema:
        built = await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=schema)
        await _people(built)
        yield built


async def _people(world: World) -> None:
    for name, (role, court) in PEOPLE.items():
        await world.add_user(name, role, court)
        world.tokens[name] = await world.login(name)
    await world.store.add_unit(unit_id=UnitId(NANGANG_UNIT), name="南岗一号", kind=UnitKind.BODY_CAMERA,
                               court_id=CourtId("HLJ0103"), secret_hash=lookup_hash(new_device_secret()))  # fmt: skip


def test_a_person_is_authorised_when_they_see_one_court_involved() -> None:
    room = Room("r", "t", CourtId("HLJ0102"), (CourtId("HLJ0102"), CourtId("HLJ0103")), "op", None, None,
                UserId(1), RoomStatus.OPEN, 0, None)  # fmt: skip
    assert authorised_for(None, room)  # an admin sees every court
    assert authorised_for([CourtId("HLJ0103")], room)  # a court whose units take part
    assert authorised_for([CourtId("HLJ"), CourtId("HLJ01"), CourtId("HLJ0102")], room)  # a court above
    assert not authorised_for([CourtId("HLJ1102")], room) and not authorised_for([], room)


async def _id(world: World, username: str) -> int:
    user = await world.store.find_user(username)
    assert user is not None
    return user.id


async def _json(response: Any, status: int) -> Any:
    assert response.status == status, await response.text()
    return await response.json()


async def _post(world: World, who: str, path: str, status: int, json: Any = None) -> Any:
    return await _json(await world.client.post(path, json=json, headers=world.auth(who)), status)


async def _daoli_case(world: World) -> int:
    case = await world.store.add_case(case_number="(2026)黑0102执88号", court_id=CourtId("HLJ0102"),
                                      title="张某拒不履行案", created_by=None, created_ms=0)  # fmt: skip
    return case.id


def _members(room: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["display_name"]: m for m in room["members"]}


async def test_centres_of_three_levels_confer_on_a_basic_courts_case(world: World) -> None:
    case_id = await _daoli_case(world)
    invited = [await _id(world, "high"), await _id(world, "operator")]  # the high court's and the city's centres
    opened = await _post(world, "daoli", "/api/rooms", 201, {"title": "张某案执行会商", "case_id": case_id,
                                                             "unit_id": DAOLI_UNIT, "invited": invited})  # fmt: skip
    room = opened["room"]
    path = f"/api/rooms/{room['id']}"
    assert opened["host"] and room["court_ids"] == ["HLJ0102"] and room["unit_id"] == DAOLI_UNIT
    assert {n: m["present"] for n, m in _members(room).items()} == {"daoli": True, "high": False, "operator": False}

    for who in ("high", "operator"):
        listed = await _json(await world.client.get("/api/rooms", headers=world.auth(who)), 200)
        assert [r["id"] for r in listed["rooms"]] == [room["id"]]
        joined = await _post(world, who, f"{path}/join", 200)
        assert _members(joined["room"])[who]["present"] and not joined["host"]
    assert (await _json(await world.client.get("/api/rooms", headers=world.auth("nangang")), 200))["rooms"] == []
    assert (await world.client.get(path, headers=world.auth("nangang"))).status == 403  # not invited

    muted = await _post(world, "daoli", f"{path}/mute", 200, {"user_id": await _id(world, "operator")})
    assert _members(muted["room"])["operator"]["muted"]
    refused = await world.client.post(f"{path}/mute", json={"user_id": invited[0]}, headers=world.auth("operator"))
    assert refused.status == 403 and "host" in await refused.text()
    left = await _post(world, "operator", f"{path}/leave", 200)
    assert not _members(left["room"])["operator"]["present"]
    closed = await _post(world, "daoli", f"{path}/close", 200)
    assert closed["room"]["status"] == "closed" and not any(m["present"] for m in closed["room"]["members"])
    again = await world.client.post(f"{path}/join", headers=world.auth("high"))
    assert again.status == 409 and "closed" in await again.text()

    steps = [(a.action, a.actor_id) for a in await world.store.audit_entries() if a.action.startswith("room.")]
    daoli, high, operator = await _id(world, "daoli"), invited[0], invited[1]
    assert steps == [("room.opened", daoli), ("room.joined", high), ("room.joined", operator),
                     ("room.muted", daoli), ("room.left", operator), ("room.closed", daoli)]  # fmt: skip
    assert (await verify(world.store)).ok
    log = await _json(await world.client.get("/api/duty/log", headers=world.auth("daoli")), 200)
    notes = [e["text"] for e in log["entries"] if e["kind"] == "note" and e["court_id"] == "HLJ0102"]
    assert notes == ["执行会商「张某案执行会商」开始", "执行会商「张某案执行会商」结束"]


async def test_only_people_authorised_for_the_courts_involved_are_invited(world: World) -> None:
    case_id = await _daoli_case(world)
    base = {"title": "会商", "case_id": case_id}
    for who in ("aihui", "nangang", "judge"):  # another city, a sibling court, and a judge: not centres of it
        bad = await world.client.post("/api/rooms", json=base | {"invited": [await _id(world, who)]},
                                      headers=world.auth("daoli"))  # fmt: skip
        assert bad.status == 422 and "not authorised for the courts of this room" in await bad.text()
    unknown = await world.client.post("/api/rooms", json=base | {"invited": [99_999]}, headers=world.auth("daoli"))
    assert unknown.status == 422 and "user 99999 is not authorised" in await unknown.text()
    outside = await world.client.post("/api/rooms", json=base, headers=world.auth("nangang"))
    assert outside.status == 403 and "HLJ0102" in await outside.text()

    offered = await _json(await world.client.get(f"/api/rooms/candidates?case_id={case_id}",
                                                 headers=world.auth("daoli")), 200)  # fmt: skip
    assert offered["court_ids"] == ["HLJ0102"]  # the centres above the case's court; not the judge, not a sibling
    assert {c["display_name"] for c in offered["candidates"]} == {"high", "operator", "supervisor", "admin"}
    queries = ("", 422), ("?case_id=x", 422), ("?case_id=99999999999999999999", 422), ("?case_id=424242", 404), \
        ("?operation_id=no", 404)  # fmt: skip
    for query, status in queries:
        response = await world.client.get(f"/api/rooms/candidates{query}", headers=world.auth("daoli"))
        assert response.status == status, (query, await response.text())
    sibling = await world.client.get(f"/api/rooms/candidates?case_id={case_id}", headers=world.auth("nangang"))
    assert sibling.status == 403

    room = (await _post(world, "daoli", "/api/rooms", 201, base))["room"]
    refused = await world.client.post(f"/api/rooms/{room['id']}/invite", json={"user_ids": [await _id(world, "aihui")]},
                                      headers=world.auth("daoli"))  # fmt: skip
    assert refused.status == 422
    added = await _post(
        world, "daoli", f"/api/rooms/{room['id']}/invite", 200, {"user_ids": [await _id(world, "high")]}
    )
    assert set(_members(added["room"])) == {"daoli", "high"}
    more = {"user_ids": [await _id(world, "operator")]}
    not_host = await world.client.post(f"/api/rooms/{room['id']}/invite", json=more, headers=world.auth("high"))
    assert not_host.status == 403
    assert [a.action for a in await world.store.audit_entries() if a.action.startswith("room.")] == [
        "room.opened", "room.invited"
    ]  # fmt: skip


async def test_a_cross_court_operations_room_admits_the_courts_whose_units_take_part(world: World) -> None:
    plan = {"kind": "search", "title": "联合搜查被执行人住所", "court_id": "HLJ01", "onsite_commander": "王警官",
            "target": TARGET, "unit_ids": [DAOLI_UNIT, NANGANG_UNIT]}  # fmt: skip
    op = (await _post(world, "operator", "/api/operations", 201, plan))["operation"]
    ask = {"title": "联合搜查会商", "operation_id": op["id"], "unit_id": NANGANG_UNIT,
           "invited": [await _id(world, "nangang"), await _id(world, "daoli"), await _id(world, "high")]}  # fmt: skip
    room = (await _post(world, "operator", "/api/rooms", 201, ask))["room"]
    assert room["court_ids"] == ["HLJ01", "HLJ0102", "HLJ0103"] and room["operation_id"] == op["id"]
    joined = await _post(world, "nangang", f"/api/rooms/{room['id']}/join", 200)
    assert _members(joined["room"])["nangang"]["present"]

    async def watch_pinned() -> int:  # the pinned unit is Nangang's: outside Daoli's court
        sdp = {**world.auth("daoli"), "Content-Type": "application/sdp"}
        return (await world.client.post(f"/api/whep/{NANGANG_UNIT}", data="v=0\r\n", headers=sdp)).status

    assert await watch_pinned() == 403
    await _post(world, "daoli", f"/api/rooms/{room['id']}/join", 200)
    assert await watch_pinned() == 409  # admitted while present in the room; the unit is not streaming now
    await _post(world, "daoli", f"/api/rooms/{room['id']}/leave", 200)
    assert await watch_pinned() == 403
    aihui = await world.client.post("/api/rooms", json=ask | {"invited": [await _id(world, "aihui")]},
                                    headers=world.auth("operator"))  # fmt: skip
    assert aihui.status == 422


async def test_a_room_pins_only_a_unit_of_its_courts(world: World) -> None:
    """The intermediate court's operator sees Nangang's unit, but a room on a Daoli case involves Daoli alone:
    pinning Nangang's unit there is refused (422); and a room that pins another court's unit anyway (stored so
    before this rule) opens no view of it to a member outside that court."""
    case_id = await _daoli_case(world)
    ask = {"title": "道里会商", "case_id": case_id, "unit_id": NANGANG_UNIT}
    refused = await world.client.post("/api/rooms", json=ask, headers=world.auth("operator"))
    assert refused.status == 422
    assert "unit_id: HLJ0103-U01 is not a unit of the room's courts (HLJ0102)" in await refused.text()
    daoli = UserId(await _id(world, "daoli"))
    await world.store.add_room(Room("old", "旧会商", CourtId("HLJ0102"), (CourtId("HLJ0102"),), None, CaseId(case_id),
                                    UnitId(NANGANG_UNIT), daoli, RoomStatus.OPEN, 0, None))  # fmt: skip
    await world.store.invite_to_room("old", [daoli], invited_by=daoli, at_ms=0)
    await _post(world, "daoli", "/api/rooms/old/join", 200)
    sdp = {**world.auth("daoli"), "Content-Type": "application/sdp"}
    watched = await world.client.post(f"/api/whep/{NANGANG_UNIT}", data="v=0\r\n", headers=sdp)
    assert watched.status == 403


async def test_bad_requests_get_precise_answers(world: World) -> None:
    case_id = await _daoli_case(world)
    cases = [
        ({"title": "x"}, 422, "give operation_id or case_id"),
        ({"title": "x", "case_id": case_id, "operation_id": "op"}, 422, "give operation_id or case_id"),
        ({"title": " ", "case_id": case_id}, 422, "title"),
        ({"title": "x", "case_id": 424242}, 404, "case 424242"),
        ({"title": "x", "case_id": 2**64}, 422, "case_id"),
        ({"title": "x", "case_id": case_id, "invited": [2**64]}, 422, "invited"),
        ({"title": "x", "operation_id": "nope"}, 404, "operation nope"),
        ({"title": "x", "case_id": case_id, "unit_id": "HLJ0103-U01"}, 422, "unit_id: HLJ0103-U01 is not a unit"),
        ({"title": "x", "case_id": case_id, "unit_id": "NOPE"}, 422, "unit_id: NOPE is not a unit"),
        ({"title": "x", "case_id": case_id, "extra": 1}, 422, "extra"),
    ]
    for payload, status, words in cases:
        response = await world.client.post("/api/rooms", json=payload, headers=world.auth("daoli"))
        text = await response.text()
        assert response.status == status and words in text, (payload, text)
    assert (await world.client.get("/api/rooms/nope", headers=world.auth("daoli"))).status == 404
    room = (await _post(world, "daoli", "/api/rooms", 201, {"title": "x", "case_id": case_id}))["room"]
    stranger = await world.client.post(f"/api/rooms/{room['id']}/mute", json={"user_id": UserId(99_999)},
                                       headers=world.auth("daoli"))  # fmt: skip
    assert stranger.status == 404 and "not invited" in await stranger.text()
    await _post(world, "daoli", f"/api/rooms/{room['id']}/close", 200)
    twice = await world.client.post(f"/api/rooms/{room['id']}/close", headers=world.auth("daoli"))
    assert twice.status == 409
    assert (await _json(await world.client.get("/api/rooms", headers=world.auth("daoli")), 200))["rooms"] == []
    every = await _json(await world.client.get("/api/rooms?all=true", headers=world.auth("daoli")), 200)
    assert [r["status"] for r in every["rooms"]] == ["closed"]
