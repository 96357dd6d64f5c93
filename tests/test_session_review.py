"""What an attacker's look at this session's additions found (issue 12's bar), each against a real server or
a real store: a trickle PATCH refused by its size before its body is read or forwarded, list parameters
that stay values through the SQLite translation of the one SQL text (``sqlite_spelling``), and a NUL
character refused at the edge rather than a 500 or a cut text."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest

from command_center.bootstrap import import_courts
from config.settings import StoreSettings
from core.errors import ValidationFailed
from core.ids import CourtId, UnitId
from gb28181.media.live import LiveStream
from media.trickle import MAX_BYTES
from persistence.models import Unit, UnitKind
from persistence.port import Store
from simulators.gb28181.sender import rtp_packets
from tests.conftest import COURTS_FILE, POSTGRES_DSN, AppFactory, World, fresh_pg_schema

FRAGMENT = "application/trickle-ice-sdpfrag"


async def test_an_oversized_trickle_fragment_is_refused_before_it_is_read(world: World) -> None:
    """A viewer's PATCH larger than any fragment of ICE candidates gets 413 at once, whatever the session:
    before, the whole body (up to server.max_body_bytes) was read, forwarded to the process holding the
    unit in a cluster, and only then refused, or not at all when the session id was made up."""
    huge = b"a=candidate:" + b"x" * (MAX_BYTES + 1)
    for path in ("/api/whep/HLJ0102-U01/made-up", "/api/talk/HLJ0102-U01/made-up"):
        answer = await world.client.patch(path, data=huge, headers=world.auth("operator") | {
            "Content-Type": FRAGMENT, "If-Match": "*"})  # fmt: skip
        assert answer.status == 413, await answer.text()
        assert (await answer.json())["error"]["message"] == f"SDP fragment larger than {MAX_BYTES} bytes"
    answer = await world.client.patch("/api/whip/made-up", data=huge, headers=world.auth("device") | {
        "Content-Type": FRAGMENT, "If-Match": "*"})  # fmt: skip
    assert answer.status == 413, await answer.text()


async def test_list_parameters_stay_values_through_the_sqlite_translation(store: Store) -> None:
    """``= ANY($n)`` becomes ``IN (SELECT value FROM json_each(?n))`` on SQLite: a list item that looks
    like SQL is one value, compared whole, on both databases."""
    await import_courts(store, COURTS_FILE)
    await store.add_unit(unit_id="HLJ0102-U01", name="道里一号", kind=UnitKind.BODY_CAMERA,  # type: ignore[arg-type]
                         court_id=CourtId("HLJ0102"), secret_hash="h")  # fmt: skip
    for hostile in ("x') OR 1=1 --", 'x"]) OR 1=1 --', "HLJ0102' OR '1'='1", "%", "HLJ0102 "):
        assert await store.list_units([CourtId(hostile)]) == []
        assert await store.latest_positions([hostile]) == {}  # type: ignore[list-item]
    with pytest.raises(ValidationFailed, match="NUL"):  # SQLite's json_each read "HLJ0102\0x" as "HLJ0102"
        await store.list_units([CourtId("HLJ0102\x00x")])
    assert [u.id for u in await store.list_units([CourtId("HLJ0102")])] == ["HLJ0102-U01"]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def any_world(request: pytest.FixtureRequest, make_world: AppFactory) -> AsyncIterator[World]:
    if request.param == "sqlite":
        yield await make_world()
        return
    async with fresh_pg_schema() as schema:
        yield await make_world(store=StoreSettings(url=POSTGRES_DSN), schema=schema)


async def test_a_nul_character_in_a_path_query_or_body_is_refused_not_a_500(any_world: World) -> None:
    """On PostgreSQL a NUL in an id was a driver error (500); on SQLite ``HLJ0102%00x`` named ``HLJ0102``
    wherever ids are compared as a list. Both now get the same 400 before any handler."""
    world = any_world
    for path in ("/api/entrustments/x%00y", "/api/operations/x%00y", "/api/units/HLJ0102-U01%00x",
                 "/api/entrustments?all=1%00"):  # fmt: skip
        answer = await world.client.get(path, headers=world.auth("operator"))
        assert answer.status == 400, (path, await answer.text())
        assert "NUL" in (await answer.json())["error"]["message"]
    plan = {"kind": "search", "title": "搜查\u0000", "onsite_commander": "王警官",
            "target": {"lat": 45.7, "lon": 126.6}}  # fmt: skip
    for raw in (json.dumps(plan), json.dumps(plan).replace("\\u0000", "\\\\\\u0000")):
        answer = await world.client.post("/api/operations", data=raw, headers=world.auth("operator") | {
            "Content-Type": "application/json"})  # fmt: skip
        assert answer.status == 400, await answer.text()
    literal = json.dumps(plan).replace("\\u0000", "\\\\u0000")  # a backslash and "u0000": plain text
    answer = await world.client.post("/api/operations", data=literal, headers=world.auth("operator") | {
        "Content-Type": "application/json"})  # fmt: skip
    assert answer.status == 201, await answer.text()
    assert (await answer.json())["operation"]["title"] == "搜查\\u0000"


def test_rtp_from_an_uninvited_address_or_ssrc_never_reaches_the_viewers() -> None:
    """GB/T 28181 RTP ports take packets only from the invited device's address with the invited SSRC; a flood
    from elsewhere (or with another SSRC, as a spoofer guessing the port would send) is counted and dropped,
    never demultiplexed: the device's own pictures still come through whole, in order."""
    unit = Unit(UnitId("HLJ0102-U01"), "道里一号", UnitKind.BODY_CAMERA, CourtId("HLJ0102"), None, datetime.now(UTC))
    stream = LiveStream(unit, "34020000001320000001", "34020000001320000001", 15060, 1100, {"10.0.0.7"}, {1100})
    shown: list[bytes] = []
    stream.sink = lambda mime, data, pts, rate: shown.append(data)
    pictures = [(b"\x00\x00\x00\x01\x65" + bytes([n]) * 3000, True) for n in range(3)]
    for packet in (p for picture in rtp_packets(pictures, 1100) for p in picture):
        stream.datagram(packet, ("10.0.0.66", 40000))  # right SSRC, wrong address
    for packet in (p for picture in rtp_packets(pictures, 2200) for p in picture):
        stream.datagram(packet, ("10.0.0.7", 40000))  # right address, wrong SSRC
    assert shown == [] and stream.foreign_packets == 2 * sum(len(p) for p in rtp_packets(pictures, 1100))
    for packet in (p for picture in rtp_packets(pictures, 1100) for p in picture):
        stream.datagram(packet, ("10.0.0.7", 40000))
    assert shown == [data for data, _ in pictures]
