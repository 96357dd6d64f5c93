"""Screen feeds are removed when no screen watches them (after a grace), so topics watched once do not pile up:
counted in objects (feeds, bus subscriptions, tasks), with real screens over the running app's socket."""

from __future__ import annotations

import asyncio
from typing import Any

from command_center.keys import BUS, HUB
from command_center.screens.hub import ScreenHub
from config.settings import TrackingSettings
from core.ids import CourtId, UnitId
from field_units.views import units_topic
from persistence.models import UnitKind
from tests.conftest import AppFactory, World
from tests.media_support import eventually
from tests.test_live_tracking import fix, open_screen, open_unit, send

UNIT = "HLJ0102-U01"
TOPIC = f"unit:{UNIT}"


def hub(world: World) -> ScreenHub:
    return world.client.app[HUB]


async def published_after(world: World, seq: int) -> None:
    async with asyncio.timeout(10):
        while await world.client.app[BUS].last_seq(units_topic(CourtId("HLJ0102"))) <= seq:  # noqa: ASYNC110
            await asyncio.sleep(0.05)


def counts(world: World) -> tuple[int, int, int]:
    """Feeds held, bus subscriptions (the memory bus's table) and feed tasks running."""
    table: dict[str, set[object]] = world.client.app[BUS]._subscribers  # type: ignore[attr-defined]
    subscribed = sum(len(subscriptions) for subscriptions in table.values())
    tasks = sum(1 for t in asyncio.all_tasks() if t.get_name().startswith("feed:"))
    return hub(world).feeds, subscribed, tasks


async def test_ten_thousand_topics_watched_and_left_leave_nothing_behind(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(screen_feed_grace_seconds=0.5, screen_queue_frames=1024))
    many = 10_000
    for i in range(many):
        await world.store.add_unit(unit_id=UnitId(f"HLJ0102-T{i:05}"), name=f"T{i}", kind=UnitKind.BODY_CAMERA,
                                   court_id=CourtId("HLJ0102"), secret_hash=f"not-a-secret-{i}")  # fmt: skip
    before = counts(world)
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth("operator"))
    for start in range(0, many, 64):
        topics = [f"unit:HLJ0102-T{i:05}" for i in range(start, min(start + 64, many))]
        await ws.send_json({"type": "subscribe", "topics": topics})
        while True:
            message: dict[str, Any] = await ws.receive_json(timeout=30)
            assert message["type"] in ("snapshot", "subscribed", "heartbeat"), message
            if message["type"] == "subscribed":
                assert len(message["topics"]) == len(topics)
                break
    watching = counts(world)
    assert watching == (before[0] + many, before[1] + many, before[2] + many)
    await hub(world).sweep()
    assert counts(world) == watching  # watched: nothing is removed
    await ws.close()
    await eventually(lambda: counts(world) == before, within=30, what="every feed of the screen removed")


async def test_a_screen_back_within_the_grace_resumes_from_the_same_feed(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(screen_feed_grace_seconds=60))
    unit = await open_unit(world)
    screen = await open_screen(world, "operator", TOPIC)
    await screen.next("snapshot", topic=TOPIC)
    await send(unit, fix(1))
    last = (await screen.next("frame", topic=TOPIC))["seq"]
    feed_count = hub(world).feeds
    await screen.ws.close()
    await eventually(lambda: hub(world).screens == 0)
    await send(unit, fix(2, lat=45.76))
    await published_after(world, last)  # the tracker's next tick: the frame this screen missed
    assert await hub(world).sweep() == 0 and hub(world).feeds == feed_count  # within the grace: kept
    back = await open_screen(world, "operator", TOPIC, resume={TOPIC: last})
    missed = await back.next("frame", topic=TOPIC)
    assert missed["seq"] > last and missed["units"][0]["position"]["seq"] == 2
    assert not [m for m in back.messages if m["type"] == "snapshot"]
    await back.ws.close()
    await unit.close()


async def test_a_feed_removed_after_the_grace_is_rebuilt_and_still_resumes(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(screen_feed_grace_seconds=0))
    unit = await open_unit(world)  # its socket follows its tasks on the bus: counted in the base
    await send(unit, fix(1))
    base = counts(world)
    screen = await open_screen(world, "operator", TOPIC)
    await screen.next("snapshot", topic=TOPIC)
    await send(unit, fix(2, lat=45.751))
    last = (await screen.next("frame", topic=TOPIC))["seq"]
    assert counts(world) == (base[0] + 1, base[1] + 1, base[2] + 1)
    await screen.ws.close()
    await eventually(lambda: counts(world) == base, what="the feed removed")
    await send(unit, fix(3, lat=45.76))
    await published_after(world, last)
    back = await open_screen(world, "operator", TOPIC, resume={TOPIC: last})  # from the bus's history
    missed = await back.next("frame", topic=TOPIC)
    assert missed["seq"] > last and missed["units"][0]["position"]["seq"] == 3
    assert not [m for m in back.messages if m["type"] == "snapshot"]
    await back.ws.close()
    await unit.close()


async def test_feeds_of_a_refused_subscription_are_not_kept(make_world: AppFactory) -> None:
    world = await make_world(tracking=TrackingSettings(screen_feed_grace_seconds=0))
    base = counts(world)
    ws = await world.client.ws_connect("/api/screen/ws", headers=world.auth("operator"))
    await ws.send_json({"type": "subscribe", "topics": [TOPIC, "unit:NO-SUCH-UNIT"]})
    error = await ws.receive_json(timeout=5)
    assert error["type"] == "error" and error["code"] == "not_found"
    await eventually(lambda: counts(world) == base, what="the feed started for the refused subscription removed")
    await ws.close()
