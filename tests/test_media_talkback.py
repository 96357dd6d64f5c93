"""Talkback (push-to-talk): an operator's microphone reaches the unit that offered to play audio, forwarded as
encoded (no transcoding); one talker at a time; who talked to which unit and when is in the audit log."""

from __future__ import annotations

import pytest
from aiortc import AudioStreamTrack, RTCSessionDescription

from tests.conftest import World
from tests.media_support import SDP_HEADERS, UNIT, UnitPeer, connected, eventually, loopback, new_pc  # noqa: F401

pytestmark = pytest.mark.usefixtures("loopback")


class Operator:
    """A console's push-to-talk: a microphone (aiortc's test tone source) sent to /api/talk/<unit>."""

    def __init__(self, world: World, role: str = "operator") -> None:
        self.world, self.role = world, role
        self.pc = new_pc()
        self.pc.addTransceiver(AudioStreamTrack(), direction="sendonly")
        self.location = ""

    async def talk(self, unit: str = UNIT) -> tuple[int, str]:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        response = await self.world.client.post(f"/api/talk/{unit}", data=self.pc.localDescription.sdp,
                                                headers={**self.world.auth(self.role), **SDP_HEADERS})  # fmt: skip
        text = await response.text()
        if response.status == 201:
            self.location = response.headers["Location"]
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
            await connected(self.pc)
        return response.status, text

    async def release(self) -> int:
        response = await self.world.client.delete(self.location, headers=self.world.auth(self.role))
        await self.pc.close()
        return response.status


async def test_an_operator_talks_and_the_unit_plays_it(world: World) -> None:
    unit = UnitPeer(world, video="video/VP8", audio=True, talkback=True)
    await unit.publish()
    operator = Operator(world)
    try:
        garbage = await world.client.post(f"/api/talk/{UNIT}", data="v=0\nnonsense",
                                          headers={**world.auth("operator"), **SDP_HEADERS})  # fmt: skip
        assert garbage.status == 400, await garbage.text()
        video_only = new_pc()
        video_only.addTransceiver("video", direction="sendonly")
        await video_only.setLocalDescription(await video_only.createOffer())
        no_mic = await world.client.post(f"/api/talk/{UNIT}", data=video_only.localDescription.sdp,
                                         headers={**world.auth("operator"), **SDP_HEADERS})  # fmt: skip
        assert no_mic.status == 422 and "exactly one audio section" in await no_mic.text()
        await video_only.close()
        status, _ = await operator.talk()
        assert status == 201
        await eventually(lambda: len(unit.heard) >= 25, within=10, what="the unit hears half a second of talkback")
        assert unit.heard[0].sample_rate == 48_000  # Opus, decoded by the unit's own stack

        other = Operator(world, role="supervisor")
        busy, why = await other.talk()
        assert busy == 409 and "operator is talking to unit" in why
        await other.pc.close()
        assert await operator.release() == 200
        free = Operator(world, role="supervisor")  # released: the next one may talk
        assert (await free.talk())[0] == 201
        assert await free.release() == 200
    finally:
        await unit.close()
    talks = [e for e in await world.store.audit_entries() if e.action.startswith("media.talk")]
    assert [e.action for e in talks] == ["media.talk.start", "media.talk.end", "media.talk.start", "media.talk.end"]
    assert talks[0].details["unit_id"] == UNIT and talks[1].details["frames"] > 0


async def test_talkback_is_refused_precisely(world: World) -> None:
    operator = Operator(world)
    status, why = await operator.talk()
    assert status == 409 and "is not streaming" in why
    await operator.pc.close()
    deaf = UnitPeer(world, video="video/VP8", audio=True)  # a unit whose audio only sends
    await deaf.publish()
    try:
        refused = Operator(world)
        status, why = await refused.talk()
        assert status == 409 and "cannot play talkback" in why
        await refused.pc.close()
        judge = Operator(world, role="judge")
        assert (await judge.talk())[0] == 403
        await judge.pc.close()
    finally:
        await deaf.close()
