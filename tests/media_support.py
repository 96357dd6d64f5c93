"""Real aiortc peers for the media tests: a field unit publishing over WHIP and a viewer over WHEP.

Everything runs in this process on loopback: ``loopback`` makes aioice offer only 127.0.0.1 (it leaves
loopback out by default; docs in /work/shared/notes/webrtc-interop.md), and no STUN server is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
from collections.abc import Callable, Iterator
from typing import Any

import aioice.ice
import av
import numpy as np
import pytest
from aiortc import (
    AudioStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from field_device import ice_restart
from tests.conftest import World

UNIT = "HLJ0102-U01"
WIDTH, HEIGHT = 320, 240
SDP_HEADERS = {"Content-Type": "application/sdp"}


@pytest.fixture
def loopback(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """aioice gathers a single host candidate, 127.0.0.1 (it looks the function up at gather time)."""
    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
    _forget_mdns()
    yield
    _forget_mdns()


def _forget_mdns() -> None:
    """aioice keeps its mDNS resolver and an ``asyncio.Lock`` in module state, made on the first event loop
    that resolves a ``.local`` candidate (Chromium offers them) and possibly left locked when that loop ends;
    each test has its own loop, so each starts without them (one server process has one loop: not an issue)."""
    for name in ("lock", "protocol", "subscribers"):
        if hasattr(aioice.ice._mdns, name):
            delattr(aioice.ice._mdns, name)


class ColourCamera(VideoStreamTrack):
    """A 320×240 camera that films one solid colour at 30 fps (aiortc paces and encodes it)."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self.image = np.full((HEIGHT, WIDTH, 3), rgb, dtype=np.uint8)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame.from_ndarray(self.image, format="rgb24")
        frame.pts, frame.time_base = pts, fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def connected(pc: RTCPeerConnection, within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while pc.connectionState != "connected":
            assert pc.connectionState not in ("failed", "closed"), pc.connectionState
            await asyncio.sleep(0.05)


def prefer(sender_or_transceiver: Any, kind: str, mime: str) -> None:
    codecs = [c for c in RTCRtpSender.getCapabilities(kind).codecs if c.mimeType.lower() == mime.lower()]
    sender_or_transceiver.setCodecPreferences(codecs)


class UnitPeer:
    """A field unit: camera (and microphone), a ``telemetry`` data channel, its WHIP session."""

    def __init__(self, world: World, *, video: str | None = "video/VP8", audio: bool = False,
                 channel: bool = True, rgb: tuple[int, int, int] = (200, 40, 40),
                 talkback: bool = False, configuration: RTCConfiguration | None = None) -> None:  # fmt: skip
        self.world = world
        self.pc = new_pc() if configuration is None else RTCPeerConnection(configuration)
        self.location = ""
        self.etag = ""
        self.answer = ""
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.camera: MediaStreamTrack | None = None
        if video is not None:
            self.camera = ColourCamera(rgb)
            prefer(self.pc.addTransceiver(self.camera, direction="sendonly"), "video", video)
        if audio:  # with talkback the unit also plays what the centre says (sendrecv)
            self.pc.addTransceiver(AudioStreamTrack(), direction="sendrecv" if talkback else "sendonly")
        self.heard: list[Any] = []  # talkback audio frames the unit played

        def on_track(track: MediaStreamTrack) -> None:
            async def play() -> None:
                with contextlib.suppress(MediaStreamError):
                    while True:
                        self.heard.append(await track.recv())

            self._player = asyncio.ensure_future(play())

        self.pc.on("track", on_track)
        self.channel: RTCDataChannel | None = None
        if channel:
            self.channel = self.pc.createDataChannel("telemetry")
            self.channel.on("message", lambda m: self.replies.put_nowait(json.loads(m)))

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def publish(self, headers: dict[str, str] | None = None) -> None:
        """POST the offer, apply the answer, wait until connected (and the channel is open)."""
        response = await self.world.client.post(
            "/api/whip", data=await self.offer(), headers={**(headers or self.world.auth("device")), **SDP_HEADERS}
        )
        assert response.status == 201, await response.text()
        assert response.content_type == "application/sdp"
        self.location = response.headers["Location"]
        self.etag = response.headers["ETag"]
        self.answer = await response.text()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=self.answer, type="answer"))
        await connected(self.pc)
        channel = self.channel
        if channel is not None:
            await eventually(lambda: channel.readyState == "open", what="data channel open")

    async def send(self, payload: Any) -> dict[str, Any]:
        assert self.channel is not None
        self.channel.send(payload if isinstance(payload, str) else json.dumps(payload))
        return await asyncio.wait_for(self.replies.get(), 10)

    async def close(self) -> None:
        await self.pc.close()


class ViewerPeer:
    """A command-centre screen watching a unit over WHEP."""

    def __init__(self, world: World, *, kinds: tuple[str, ...] = ("video",)) -> None:
        self.world = world
        self.pc = new_pc()
        self.tracks: dict[str, MediaStreamTrack] = {}
        self.arrived = asyncio.Event()
        for kind in kinds:
            self.pc.addTransceiver(kind, direction="recvonly")

        def on_track(track: MediaStreamTrack) -> None:
            self.tracks[track.kind] = track
            self.arrived.set()

        self.pc.on("track", on_track)
        self.location = ""

    async def offer(self) -> str:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def watch(self, unit: str = UNIT, role: str = "operator") -> None:
        response = await self.world.client.post(
            f"/api/whep/{unit}", data=await self.offer(), headers={**self.world.auth(role), **SDP_HEADERS}
        )
        assert response.status == 201, await response.text()
        self.location = response.headers["Location"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=await response.text(), type="answer"))
        await connected(self.pc)

    async def frames(self, kind: str, count: int, within: float = 15.0) -> list[Any]:
        """The next ``count`` decoded frames of one kind."""
        async with asyncio.timeout(within):
            while kind not in self.tracks:
                await self.arrived.wait()
                self.arrived.clear()
            return [await self.tracks[kind].recv() for _ in range(count)]

    async def close(self) -> None:
        await self.pc.close()


def mean_rgb(frame: av.VideoFrame) -> tuple[float, float, float]:
    pixels = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    return (float(pixels[0]), float(pixels[1]), float(pixels[2]))


async def eventually(predicate: Callable[[], bool], within: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 50 ms until it holds; fail after ``within`` seconds."""
    for _ in range(int(within / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    assert predicate(), f"{what}: not within {within} s"


async def handover(world: World, unit: UnitPeer, address: str) -> str:
    """What a unit does when its network changes (4G handover): a new local address, an ICE restart over
    PATCH (RFC 9725 §4.3.2) with the reference unit's own code (``field_device.ice_restart``), the old path
    dropped. Returns the session's new ETag."""
    restart = await ice_restart.begin(unit.pc, address)
    response = await world.client.patch(unit.location, data=restart.fragment, headers={
        **world.auth("device"), "Content-Type": ice_restart.MEDIA_TYPE, "If-Match": unit.etag})  # fmt: skip
    answer = await response.text()
    assert response.status == 200, answer
    await ice_restart.finish(restart, answer)
    return response.headers["ETag"]
