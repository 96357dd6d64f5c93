"""The reference field unit's media side against the real server: a synthetic 640x480 pattern over WHIP that
a viewer receives, positions over the data channel from the outbox (none lost across a dropped link),
talkback played, and the session re-established after the link fails."""

from __future__ import annotations

import time

import pytest

from command_center.keys import MEDIA
from core.ids import UnitId
from field_device.media_unit import MediaUnit
from tests.conftest import World
from tests.media_support import UNIT, ViewerPeer, eventually, loopback  # noqa: F401 (fixture)
from tests.test_field_client import base
from tests.test_media_talkback import Operator

pytestmark = pytest.mark.usefixtures("loopback")


def position(lat: float) -> dict[str, float | int]:
    return {"fix_time_ms": int(time.time() * 1000), "lat": lat, "lon": 126.62, "accuracy_m": 5.0}


async def test_the_reference_unit_streams_reports_hears_and_comes_back(world: World) -> None:
    unit = MediaUnit(base(world), world.device_secret, label=UNIT, backoff=(0.1, 0.5))
    await unit.start()
    hub = world.client.app[MEDIA]
    try:
        await eventually(lambda: unit.connected, within=15, what="published")
        viewer = ViewerPeer(world)
        await viewer.watch()
        frames = await viewer.frames("video", 5)
        assert (frames[-1].width, frames[-1].height) == (640, 480)
        await viewer.close()

        for i in range(3):
            unit.record(position(45.75 + i / 1000))
        await eventually(lambda: unit.acked == 3 and not len(unit.outbox), what="positions acknowledged")

        operator = Operator(world)
        assert (await operator.talk())[0] == 201
        await eventually(lambda: unit.talk_frames >= 10, what="talkback played")
        assert await operator.release() == 200

        first = hub.publisher(UnitId(UNIT))
        await unit.drop_link()  # the link fails: positions recorded meanwhile wait in the outbox
        for i in range(5):
            unit.record(position(45.76 + i / 1000))
        await eventually(lambda: unit.reconnects >= 1 and unit.connected, within=20, what="reconnected")
        await eventually(lambda: unit.acked == 8 and not len(unit.outbox), what="the backlog delivered")
        assert hub.publisher(UnitId(UNIT)) is not first  # a new session replaced the old one
        assert await world.store.count_positions(UnitId(UNIT)) == 8  # none lost, none twice
    finally:
        await unit.close()
    await eventually(lambda: hub.publisher(UnitId(UNIT)) is None, what="ended on close")


async def test_the_reference_unit_moves_to_a_new_address_without_a_new_session(world: World) -> None:
    """A 4G handover: the unit's address changes mid-stream; it restarts ICE on its WHIP session, so the
    server's session, its recording and a viewer's connection all carry on."""
    unit = MediaUnit(base(world), world.device_secret, label=UNIT, backoff=(0.1, 0.5))
    await unit.start()
    hub = world.client.app[MEDIA]
    try:
        await eventually(lambda: unit.connected, within=15, what="published")
        viewer = ViewerPeer(world)
        await viewer.watch()
        await viewer.frames("video", 3)
        publisher = hub.publisher(UnitId(UNIT))
        assert publisher is not None and publisher.recorder is not None
        recorder, etag = publisher.recorder, unit.etag

        await unit.handover("127.0.0.2")

        assert unit.etag != etag and unit.reconnects == 0
        heard = publisher.last_media
        await eventually(lambda: publisher.last_media > heard + 0.5, what="media from the new address")
        assert len(await viewer.frames("video", 10)) == 10 and viewer.pc.connectionState == "connected"
        assert hub.publisher(UnitId(UNIT)) is publisher and publisher.recorder is recorder
        await viewer.close()
    finally:
        await unit.close()
