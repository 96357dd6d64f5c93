"""The store contract, run against SQLite and real PostgreSQL alike."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from command_center.bootstrap import import_courts
from core.errors import Conflict, NotFound
from core.ids import CourtId, UnitId, UserId
from persistence.migrations import load_migrations
from persistence.models import Court, CourtLevel, Duty, Position, Role, UnitKind, UnitState
from persistence.port import Store

COURTS = Path(__file__).resolve().parent.parent / "config" / "courts.toml"


async def test_migrations_are_recorded_and_not_reapplied(store: Store) -> None:
    versions = [m.version for m in load_migrations(store.dialect)]
    assert await store.applied_migrations() == versions
    assert await store.migrate() == []
    health = await store.health()
    assert health["migrations"] == versions


async def test_the_cluster_secret_is_made_once_and_kept(store: Store) -> None:
    """Every process asking (those starting together too) gets the one secret the first one made."""
    secret = await store.cluster_secret()
    assert len(secret) == 64
    assert {await store.cluster_secret() for _ in range(3)} == {secret}


async def test_court_hierarchy_subtree(store: Store) -> None:
    await import_courts(store, COURTS)
    assert await store.court_subtree(CourtId("HLJ01")) == [
        "HLJ01",
        "HLJ0102",
        "HLJ0103",
        "HLJ0104",
        "HLJ0109",
    ]
    high = await store.court_subtree(CourtId("HLJ"))
    assert high[0] == "HLJ" and set(high) == {c.id for c in await store.list_courts()}
    assert await store.court_subtree(CourtId("HLJ0102")) == ["HLJ0102"]
    assert await store.court_subtree(CourtId("nowhere")) == []


async def test_court_upsert_updates_and_rejects_unknown_parent(store: Store) -> None:
    await store.upsert_court(Court(CourtId("A"), "甲", CourtLevel.HIGH, None))
    await store.upsert_court(Court(CourtId("A"), "甲法院", CourtLevel.HIGH, None))
    assert (await store.get_court(CourtId("A"))).name == "甲法院"
    with pytest.raises(NotFound):
        await store.upsert_court(Court(CourtId("B"), "乙", CourtLevel.BASIC, CourtId("missing")))
    with pytest.raises(NotFound):
        await store.get_court(CourtId("B"))


async def test_users_unique_and_scoped_by_court(store: Store) -> None:
    await import_courts(store, COURTS)
    judge = await store.add_user(
        username="zhang",
        display_name="张法官",
        password_hash="h",
        role=Role.JUDGE,
        court_id=CourtId("HLJ0102"),
    )
    assert judge.role is Role.JUDGE and judge.court_id == "HLJ0102" and not judge.disabled
    assert (await store.get_user(judge.id)).username == "zhang"
    assert await store.find_user("zhang") == judge
    assert await store.find_user("nobody") is None
    with pytest.raises(Conflict):
        await store.add_user(
            username="zhang", display_name="x", password_hash="h", role=Role.ADMIN, court_id=CourtId("HLJ")
        )
    with pytest.raises(NotFound):
        await store.add_user(
            username="li", display_name="x", password_hash="h", role=Role.ADMIN, court_id=CourtId("nowhere")
        )
    await store.add_user(
        username="wang", display_name="王", password_hash="h", role=Role.OPERATOR, court_id=CourtId("HLJ11")
    )
    assert [u.username for u in await store.list_users([CourtId("HLJ0102"), CourtId("HLJ01")])] == ["zhang"]
    assert [u.username for u in await store.list_users([])] == []
    assert await store.count_users() == 2
    await store.set_password(judge.id, "h2")
    assert (await store.get_user(judge.id)).password_hash == "h2"
    with pytest.raises(NotFound):
        await store.set_password(UserId(999_999), "h")


async def test_sessions_expire_and_revoke(store: Store) -> None:
    await import_courts(store, COURTS)
    user = await store.add_user(
        username="op", display_name="op", password_hash="h", role=Role.OPERATOR, court_id=CourtId("HLJ")
    )
    expires = datetime.now(UTC) + timedelta(hours=1)
    await store.add_session(token_hash="t1", user_id=user.id, expires_at=expires)
    await store.add_session(token_hash="t2", user_id=user.id, expires_at=expires)
    found = await store.find_session("t1")
    assert found is not None
    session, owner = found
    assert owner.id == user.id and session.revoked_at is None
    assert abs((session.expires_at - expires).total_seconds()) < 0.01
    assert await store.revoke_session("t1") is True
    assert await store.revoke_session("t1") is False
    revoked = await store.find_session("t1")
    assert revoked is not None and revoked[0].revoked_at is not None
    assert await store.revoke_user_sessions(user.id) == 1
    assert await store.find_session("missing") is None


async def test_units_secret_lookup_listing_and_revocation(store: Store) -> None:
    await import_courts(store, COURTS)
    unit = await store.add_unit(
        unit_id=UnitId("U1"),
        name="单兵一",
        kind=UnitKind.VEHICLE,
        court_id=CourtId("HLJ0103"),
        secret_hash="s1",
    )
    assert unit.kind is UnitKind.VEHICLE and unit.revoked_at is None
    assert await store.find_unit_by_secret("s1") == unit
    assert await store.find_unit_by_secret("s2") is None
    with pytest.raises(Conflict):
        await store.add_unit(
            unit_id=UnitId("U1"),
            name="x",
            kind=UnitKind.VEHICLE,
            court_id=CourtId("HLJ0103"),
            secret_hash="s9",
        )
    with pytest.raises(Conflict):
        await store.add_unit(
            unit_id=UnitId("U2"),
            name="x",
            kind=UnitKind.HANDHELD,
            court_id=CourtId("HLJ0103"),
            secret_hash="s1",
        )
    await store.add_unit(
        unit_id=UnitId("U3"), name="x", kind=UnitKind.HANDHELD, court_id=CourtId("HLJ11"), secret_hash="s3"
    )
    subtree = await store.court_subtree(CourtId("HLJ01"))
    assert [u.id for u in await store.list_units(subtree)] == ["U1"]
    assert [u.id for u in await store.list_units()] == ["U1", "U3"]
    await store.revoke_unit(UnitId("U1"))
    first = (await store.get_unit(UnitId("U1"))).revoked_at
    assert first is not None
    await store.revoke_unit(UnitId("U1"))  # revoking twice keeps the first time
    assert (await store.get_unit(UnitId("U1"))).revoked_at == first
    with pytest.raises(NotFound):
        await store.revoke_unit(UnitId("nope"))
    with pytest.raises(NotFound):
        await store.get_unit(UnitId("nope"))


def _pos(unit: str, seq: int, t: int, lat: float = 45.75, sos: bool = False) -> Position:
    return Position(UnitId(unit), seq, t, lat, 126.64, 5.0, 1.2, 90.0, 140.0, 80.0, sos, t + 5)


async def _units(store: Store) -> None:
    await import_courts(store, COURTS)
    for n, court in (("U1", "HLJ0102"), ("U2", "HLJ0103")):
        await store.add_unit(
            unit_id=UnitId(n), name=n, kind=UnitKind.HANDHELD, court_id=CourtId(court), secret_hash=f"s-{n}"
        )


async def test_positions_deduplicate_by_unit_and_sequence(store: Store) -> None:
    await _units(store)
    first = await store.insert_positions([_pos("U1", 1, 1000), _pos("U1", 2, 2000), _pos("U2", 1, 1500)])
    assert first == {("U1", 1), ("U1", 2), ("U2", 1)}
    replay = await store.insert_positions([_pos("U1", 2, 2000), _pos("U1", 3, 3000), _pos("U1", 3, 3000)])
    assert replay == {("U1", 3)}
    assert await store.count_positions(UnitId("U1")) == 3
    assert await store.insert_positions([]) == set()
    with pytest.raises(NotFound):
        await store.insert_positions([_pos("ghost", 1, 1000)])
    with pytest.raises(NotFound):  # beside a known unit: the batch is refused whole
        await store.insert_positions([_pos("U1", 4, 4000), _pos("ghost", 2, 2000)])
    assert await store.count_positions(UnitId("U1")) == 3 and await store.count_positions(UnitId("ghost")) == 0


async def test_a_mixed_batch_names_exactly_its_new_keys_and_stores_fixes_exactly(store: Store) -> None:
    await _units(store)
    assert await store.insert_positions([_pos("U1", 1, 1000), _pos("U2", 7, 1500)]) == {("U1", 1), ("U2", 7)}
    odd = Position(UnitId("U2"), 8, 2000, -0.1 + 45.2, 126.123456789012345, None, 0.0, None, -12.5, None, True, 2001)
    batch = [_pos("U1", 1, 1000), _pos("U1", 2, 2000), _pos("U2", 7, 1500), odd, _pos("U1", 2, 2000), odd]
    assert await store.insert_positions(batch) == {("U1", 2), ("U2", 8)}
    assert await store.insert_positions(batch) == set()  # the same batch again: every key a duplicate
    assert await store.count_positions(UnitId("U1")) == 2 and await store.count_positions(UnitId("U2")) == 2
    assert (await store.track(UnitId("U2"), since_ms=2000, until_ms=2001)) == [odd]  # every value as sent
    assert (await store.latest_positions([UnitId("U2")]))[UnitId("U2")] == odd


async def test_concurrent_overlapping_batches_name_each_key_new_exactly_once(store: Store) -> None:
    """The writer commits several batches at once; a key in two of them is new in one, a duplicate in the
    other (committed by then), whatever order the batches hold it in."""
    await _units(store)
    for seq0 in (1, 100):
        batch = [_pos(unit, seq0 + s, 1000 * (seq0 + s)) for s in range(40) for unit in ("U1", "U2")]
        orders = (batch, batch[::-1], batch[30:] + batch[:30], batch[::-1])
        answers = await asyncio.gather(*(store.insert_positions(order) for order in orders))
        assert sorted(key for answer in answers for key in answer) == sorted((p.unit_id, p.seq) for p in batch)
    assert await store.count_positions(UnitId("U1")) == 80


async def test_latest_position_moves_forward_only(store: Store) -> None:
    await _units(store)
    await store.insert_positions([_pos("U1", 10, 10_000, lat=45.0), _pos("U1", 11, 11_000, lat=45.1)])
    latest = await store.latest_positions()
    assert latest[UnitId("U1")].seq == 11 and latest[UnitId("U1")].lat == 45.1
    # a backlog of older fixes arriving later does not move the latest position back
    await store.insert_positions([_pos("U1", 5, 5_000, lat=44.0)])
    assert (await store.latest_positions([UnitId("U1")]))[UnitId("U1")].seq == 11
    await store.insert_positions([_pos("U1", 12, 12_000, lat=45.2, sos=True)])
    newest = await store.latest_positions([UnitId("U1"), UnitId("U2")])
    assert list(newest) == [UnitId("U1")] and newest[UnitId("U1")].sos is True


async def test_track_returns_a_time_window_in_order(store: Store) -> None:
    await _units(store)
    await store.insert_positions([_pos("U1", s, 1000 * s) for s in (5, 1, 3, 2, 4)])
    track = await store.track(UnitId("U1"), since_ms=2000, until_ms=5000)
    assert [p.seq for p in track] == [2, 3, 4]
    assert track[0] == _pos("U1", 2, 2000)
    assert [p.seq for p in await store.track(UnitId("U1"), since_ms=0, until_ms=10_000, limit=2)] == [1, 2]


async def test_unit_state_round_trips(store: Store) -> None:
    await _units(store)
    state = UnitState(Duty.ON_SITE, sos=True, online=False, last_seen_ms=123)
    await store.save_unit_state(UnitId("U1"), state)
    await store.save_unit_state(UnitId("U2"), UnitState())
    assert (await store.unit_states())[UnitId("U1")] == state
    assert await store.unit_states([UnitId("U2")]) == {UnitId("U2"): UnitState()}
    await store.save_unit_state(UnitId("U1"), UnitState(Duty.AVAILABLE, online=True, last_seen_ms=456))
    assert (await store.unit_states([UnitId("U1")]))[UnitId("U1")].last_seen_ms == 456
