"""The media session table without a loop: caps, a unit's current and waiting sessions, supervision."""

from __future__ import annotations

import pytest

from config.settings import Settings
from core.errors import NotFound, ServiceUnavailable, TooManyRequests
from core.ids import CourtId, UnitId, UserId
from media.table import Close, Connected, Removal, Role, Session, SessionId, SessionTable, Viewer

UNIT = UnitId("HLJ0102-U01")
ALICE = Viewer(UserId(1), "alice", court_id=CourtId("HLJ0102"))
BOB = Viewer(UserId(2), "bob", court_id=CourtId("HLJ0102"))


def table(**changes: object) -> SessionTable[Session, Session]:
    return SessionTable(Settings().media.model_copy(update=changes))


def source(name: str, created: float = 0.0, unit: UnitId = UNIT) -> Session:
    return Session(SessionId(name), Role.PUBLISHER, unit, created)


def test_places_are_capped_per_process_user_and_court_and_come_back_on_release() -> None:
    sessions = table(max_sessions=4, max_sessions_per_user=2, max_sessions_per_court=3, ice_timeout_seconds=15)
    sessions.hold(SessionId("unit"))
    sessions.hold(SessionId("a1"), ALICE)
    sessions.hold(SessionId("a2"), ALICE)
    with pytest.raises(TooManyRequests, match="alice has 2 media sessions") as mine:
        sessions.hold(SessionId("a3"), ALICE)
    assert mine.value.retry_after == 15
    sessions.hold(SessionId("b1"), BOB)
    with pytest.raises(ServiceUnavailable, match="full"):
        sessions.hold(SessionId("b2"), BOB)
    sessions.release(SessionId("unit"))
    with pytest.raises(TooManyRequests, match="court HLJ0102 has 3"):
        sessions.hold(SessionId("b2"), BOB)
    sessions.release(SessionId("a1"))
    sessions.hold(SessionId("b2"), BOB)
    assert sessions.places == 3


def test_a_units_new_source_replaces_a_connecting_one_at_once_but_waits_for_a_working_one() -> None:
    sessions = table()
    first, second, third, fourth = source("1"), source("2"), source("3"), source("4")
    assert sessions.publish(first).now and sessions.current(UNIT) is first
    plan = sessions.publish(second)  # the first never connected: replaced at once
    assert plan.now and plan.replaced is first and sessions.current(UNIT) is second
    second.connected_at = 1.0
    plan = sessions.publish(third)
    assert not plan.now and plan.replaced is None and sessions.current(UNIT) is second
    plan = sessions.publish(fourth)  # a newer offer supersedes the waiting one
    assert not plan.now and plan.replaced is third and sessions.waiting(UNIT) is fourth
    assert sessions.promote(third) == (False, None)
    assert sessions.promote(fourth) == (True, second) and sessions.current(UNIT) is fourth
    assert sessions.waiting(UNIT) is None


def test_a_unit_streaming_on_another_process_keeps_it_until_the_new_source_connects() -> None:
    sessions = table()
    plan = sessions.publish(source("1"), streams_elsewhere=True)
    assert not plan.now and sessions.current(UNIT) is None and sessions.streaming_units() == set()


def test_removing_the_current_source_hands_over_to_the_waiting_one_or_releases_the_lease() -> None:
    sessions = table()
    working, newer = source("1"), source("2")
    sessions.publish(working)
    working.connected_at = 1.0
    sessions.publish(newer)
    assert sessions.remove(working) == Removal(promoted=newer) and sessions.current(UNIT) is newer
    assert sessions.remove(newer) == Removal(release=UNIT) and sessions.current(UNIT) is None
    assert sessions.remove(newer) == Removal()  # twice: nothing more


def test_only_the_owner_finds_their_view_and_others_get_404() -> None:
    sessions = table()
    view = Session(SessionId("v"), Role.VIEWER, UNIT, 0.0, owner=ALICE)
    sessions.add(view)
    assert sessions.owned(Role.VIEWER, SessionId("v"), ALICE.user_id, UNIT) is view
    for role, user, unit in [(Role.VIEWER, BOB.user_id, UNIT), (Role.TALKER, ALICE.user_id, UNIT),
                             (Role.VIEWER, ALICE.user_id, UnitId("other"))]:  # fmt: skip
        with pytest.raises(NotFound):
            sessions.owned(role, SessionId("v"), user, unit)
    with pytest.raises(NotFound, match="no WHIP session v"):
        sessions.publisher_of(SessionId("v"), UNIT)


def test_supervision_closes_the_failed_the_never_connected_and_the_silent() -> None:
    sessions = table(ice_timeout_seconds=15, silence_timeout_seconds=10)
    fresh, stuck, failed, live = source("fresh", 100.0, UnitId("a")), source("stuck", 0.0, UnitId("b")), \
        source("failed", 100.0, UnitId("c")), source("live", 0.0, UnitId("d"))  # fmt: skip
    view = Session(SessionId("view"), Role.VIEWER, UnitId("a"), 100.0, owner=ALICE)
    for publisher in (fresh, stuck, failed, live):
        sessions.publish(publisher)
    sessions.add(view)
    states = {"fresh": "connected", "stuck": "connecting", "failed": "failed", "live": "connected", "view": "new"}
    actions = sessions.supervise(101.0, lambda s: states[s.id])
    assert Connected(fresh) in actions and Connected(live) in actions
    assert Close(stuck, "not connected after 15 s") in actions and Close(failed, "connection failed") in actions
    assert fresh.connected_at == 101.0 and fresh.last_media == 101.0
    live.last_media = 95.0
    fresh.last_media = 105.0
    actions = sessions.supervise(106.0, lambda s: states[s.id])
    assert Close(live, "no media for 10 s") in actions
    assert all(a.session not in (fresh, view) for a in actions)  # a viewer is never "silent"
